"""Kinds of load balancer by name. Each module is imported only when a target uses it."""

from __future__ import annotations

from lbctl.config import Target
from lbctl.kinds.base import Kind
from lbctl.registry import load

REGISTRY: dict[str, tuple[str, str]] = {
    "haproxy": ("lbctl.kinds.haproxy", "HaproxyKind"),
    "nginx": ("lbctl.kinds.nginx", "NginxKind"),
    "caddy": ("lbctl.kinds.caddy", "CaddyKind"),
}


def kind_for(target: Target) -> Kind:
    cls: type[Kind] = load(REGISTRY, target.kind, key=f"targets.{target.name}.kind")
    return cls(target)
