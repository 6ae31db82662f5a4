"""Kind-specific settings (keys of a `[targets.NAME]` table), next to the kinds that read them.

Frozen stdlib dataclasses, collected by `lbctl.config.schema`'s `Target`. This module
imports no kind (and no pydantic): `lbctl.toml`'s cached settings are built from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NginxSettings:
    """`kind = "nginx"`: how nginx runs on the LB host, and what a deploy takes with the main file."""

    # the `-p` prefix nginx runs with (relative paths in its config resolve against it),
    # and the access log the balance check counts ($upstream_addr), if not the config's first such log
    prefix: str | None = None
    access_log: str | None = None
    # deploy the store files the config includes with it (a tree); false = the main file alone
    follow_includes: bool = True


@dataclass(frozen=True)
class HaproxySettings:
    """`kind = "haproxy"`: the sockets lbctl reloads, confirms and reads counters through."""

    master_socket: str | None = None  # the master CLI (-S): `reload`, `show proc`
    stats_socket: str | None = None  # the runtime API: `show info`, `show stat`
