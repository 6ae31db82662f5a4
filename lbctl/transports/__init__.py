"""Transports by name. Each module is imported only when a target uses it."""

from __future__ import annotations

import importlib

from lbctl.config import Target
from lbctl.errors import ConfigError
from lbctl.transports.base import Transport

REGISTRY: dict[str, tuple[str, str]] = {
    "local": ("lbctl.transports.local", "LocalTransport"),
    "ssh": ("lbctl.transports.ssh", "SshTransport"),
    "http": ("lbctl.transports.http", "HttpTransport"),
}


def transport_for(target: Target) -> Transport:
    try:
        module_name, class_name = REGISTRY[target.transport]
    except KeyError:
        raise ConfigError(
            f"targets.{target.name}.transport: {target.transport!r} is not available yet",
            hint=f"available: {', '.join(sorted(REGISTRY))}",
        ) from None
    cls: type[Transport] = getattr(importlib.import_module(module_name), class_name)
    return cls(target)
