"""Transports by name. Each module is imported only when a target uses it.

`REGISTRY` is the one list of transports: `lbctl.toml`'s schema reads their names from it.
Importing this package imports no transport module.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from lbctl.registry import load

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.transports.base import Transport

REGISTRY: dict[str, tuple[str, str]] = {
    "local": ("lbctl.transports.local", "LocalTransport"),
    "ssh": ("lbctl.transports.ssh", "SshTransport"),
    "http": ("lbctl.transports.http", "HttpTransport"),
}


def transport_for(target: Target) -> Transport:
    cls: type[Transport] = load(REGISTRY, target.transport, key=f"targets.{target.name}.transport")
    return cls(target)


def connect_ahead(target: Target) -> None:
    """Let `target`'s transport start connecting while the caller does local work."""
    cls: type[Transport] = load(REGISTRY, target.transport, key=f"targets.{target.name}.transport")
    cls.connect_ahead(target)


def release_ahead() -> None:
    """Close connections started ahead for an operation that ended before using them."""
    ssh = sys.modules.get("lbctl.transports.ssh")
    if ssh is not None:
        ssh.SshTransport.release_ahead()
