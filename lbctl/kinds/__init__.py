"""Kinds of load balancer by name. Each module is imported only when a target uses it."""

from __future__ import annotations

import importlib

from lbctl.config import Target
from lbctl.errors import ConfigError
from lbctl.kinds.base import Kind

REGISTRY: dict[str, tuple[str, str]] = {
    "haproxy": ("lbctl.kinds.haproxy", "HaproxyKind"),
    "nginx": ("lbctl.kinds.nginx", "NginxKind"),
    "caddy": ("lbctl.kinds.caddy", "CaddyKind"),
}


def kind_for(target: Target) -> Kind:
    try:
        module_name, class_name = REGISTRY[target.kind]
    except KeyError:
        raise ConfigError(
            f"targets.{target.name}.kind: {target.kind!r} is not available yet",
            hint=f"available: {', '.join(sorted(REGISTRY))}",
        ) from None
    cls: type[Kind] = getattr(importlib.import_module(module_name), class_name)
    return cls(target)
