"""Each transport's settings (keys of a `[targets.NAME]` table), next to the transports that read them.

Frozen stdlib dataclasses whose string annotations carry pydantic's constraints, as in
`lbctl.config.schema`, whose `Target` collects them. This module imports no transport
(and no pydantic): `lbctl.toml`'s cached settings are built from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

if TYPE_CHECKING:  # resolved by pydantic at validation time (see `lbctl.config.loader`)
    from pydantic import Field


@dataclass(frozen=True)
class SshSettings:
    """`transport = "ssh"`: the LB host, reached as OpenSSH would (its ~/.ssh/config applies)."""

    host: str | None = None
    port: Annotated[int | None, Field(ge=1, le=65535)] = None
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    proxy_jump: str | None = None  # `[user@]host[:port][,...]` as OpenSSH's ProxyJump


@dataclass(frozen=True)
class HttpSettings:
    """`transport = "http"`: Caddy's admin API."""

    api: str | None = None
