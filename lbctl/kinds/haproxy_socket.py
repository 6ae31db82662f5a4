"""HAProxy's UNIX sockets (the master CLI and the runtime API), reached through a transport.

A file transport that can reach a UNIX socket on the LB host (local: connect; ssh: socat
there) has `unix_request(socket, command, timeout=)`: one line sent, the whole answer back,
`SocketUnavailable` (a `TransientError`) when nothing answers at that path. It is HAProxy's
need, not every transport's, so the transport contract does not carry it: a transport
without it (http) is a `ConfigError` naming the target.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from lbctl.errors import ConfigError
from lbctl.transports.base import Transport


@runtime_checkable
class ReachesSockets(Protocol):
    def unix_request(self, socket_path: str, command: str, *, timeout: float = 5.0) -> str: ...


def unix_request(transport: Transport, socket_path: str, command: str, *, timeout: float = 5.0) -> str:
    """Send `command` to the UNIX stream socket `socket_path` on the LB host; return the full answer."""
    if not isinstance(transport, ReachesSockets):
        raise ConfigError(f"targets.{transport.target.name}: the {transport.name} transport has no UNIX sockets")
    return transport.unix_request(socket_path, command, timeout=timeout)
