"""Where and how to reach an ssh target, resolved as OpenSSH would.

A target's own keys (`host`, `port`, `user`, `identity_file`, `known_hosts`, `proxy_jump`) win;
then `~/.ssh/config` for that host (Host aliases, HostName, User, Port, IdentityFile,
ProxyJump, UserKnownHostsFile, IdentitiesOnly); then OpenSSH's defaults. Pure logic: no I/O
beyond reading the config file, so it is unit-testable without an sshd.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from typing import Any

from lbctl.errors import ConfigError

MAX_JUMPS = 8


@dataclass(frozen=True)
class Endpoint:
    """One host to log in to: the target itself or a ProxyJump hop."""

    alias: str  # what the user wrote (`edge1`, `bastion`), for messages
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    identities_only: bool
    known_hosts: str

    @property
    def where(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name a known_hosts line uses for this host (`[host]:port` off port 22)."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


@dataclass(frozen=True)
class Route:
    """The target's endpoint and the hops (first hop first) to reach it."""

    target: Endpoint
    jumps: tuple[Endpoint, ...]

    @property
    def where(self) -> str:
        via = f" via {' → '.join(j.where for j in self.jumps)}" if self.jumps else ""
        return self.target.where + via


def ssh_config_path() -> str:
    return os.path.expanduser("~/.ssh/config")


def load_ssh_config(path: str | None = None) -> Any:
    """paramiko's `SSHConfig` of `path` (default `~/.ssh/config`), empty when there is none."""
    path = path or ssh_config_path()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read ssh config: {exc}", file=path) from None
    paramiko = import_paramiko(needs_match_exec="exec" in text.lower())
    try:
        return paramiko.SSHConfig.from_text(text)
    except (ValueError, paramiko.ssh_exception.ConfigParseError) as exc:
        raise ConfigError(f"cannot read ssh config: {exc}", file=path) from None


def import_paramiko(*, needs_match_exec: bool = False) -> Any:
    """Import paramiko, without the `invoke` package unless a `Match exec` needs it.

    paramiko imports invoke (~90 ms, a third of its own import time) only to run `Match exec`
    lines of ssh configs; a None entry in sys.modules makes that optional import fail fast.
    """
    if "paramiko" in sys.modules or needs_match_exec or "invoke" in sys.modules:
        import paramiko

        return paramiko
    sys.modules["invoke"] = None  # type: ignore[assignment]
    try:
        import paramiko
    finally:
        del sys.modules["invoke"]
    return paramiko


def resolve(
    host: str,
    *,
    port: int | None = None,
    user: str | None = None,
    identity_file: str | None = None,
    known_hosts: str | None = None,
    proxy_jump: str | None = None,
    config: Any = None,
) -> Route:
    """The route to `host` (an address or a `~/.ssh/config` alias), explicit values first."""
    config = config if config is not None else load_ssh_config()
    target = _endpoint(host, port, user, identity_file, known_hosts, config)
    jump_spec = proxy_jump if proxy_jump is not None else config.lookup(host).get("proxyjump")
    jumps: list[Endpoint] = []
    seen = {host}
    while jump_spec and jump_spec.lower() != "none":
        hops = [_parse_jump(spec.strip()) for spec in jump_spec.split(",") if spec.strip()]
        # The first hop's own ProxyJump comes before it (OpenSSH resolves hops recursively).
        first_alias = hops[0][1]
        resolved = [_endpoint(h, p, u, None, known_hosts, config) for u, h, p in hops]
        jumps[:0] = resolved
        if len(jumps) > MAX_JUMPS or first_alias in seen:
            raise ConfigError(f"ProxyJump for {host!r} loops or has more than {MAX_JUMPS} hops: {jump_spec}")
        seen.add(first_alias)
        jump_spec = config.lookup(first_alias).get("proxyjump")
    return Route(target, tuple(jumps))


def _endpoint(
    alias: str,
    port: int | None,
    user: str | None,
    identity_file: str | None,
    known_hosts: str | None,
    config: Any,
) -> Endpoint:
    entry = config.lookup(alias)
    try:
        resolved_port = port or int(entry.get("port", 22))
    except ValueError:
        raise ConfigError(f"ssh config: Port for {alias!r} is not a number: {entry.get('port')!r}") from None
    identities = [os.path.expanduser(identity_file)] if identity_file else []
    identities += [os.path.expanduser(p) for p in entry.get("identityfile", [])]
    user_known = (entry.get("userknownhostsfile") or "~/.ssh/known_hosts").split()[0]
    return Endpoint(
        alias=alias,
        hostname=entry.get("hostname", alias),
        port=resolved_port,
        user=user or entry.get("user") or getpass.getuser(),
        identity_files=tuple(dict.fromkeys(identities)),
        identities_only=entry.get("identitiesonly", "no").lower() == "yes",
        known_hosts=os.path.expanduser(known_hosts or user_known),
    )


def _parse_jump(spec: str) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]` (or `ssh://[user@]host[:port]`) → (user, host, port)."""
    spec = spec.removeprefix("ssh://")
    user, _, hostport = spec.rpartition("@")
    host, port = hostport, None
    if hostport.startswith("["):  # [v6addr]:port
        host, _, rest = hostport[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
        if not port_text.isdigit():
            raise ConfigError(f"ProxyJump: bad port in {spec!r}")
        port = int(port_text)
    if not host:
        raise ConfigError(f"ProxyJump: no host in {spec!r}")
    return user or None, host, port
