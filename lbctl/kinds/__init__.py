"""Kinds of load balancer by name. Each module is imported only when a target uses it.

`REGISTRY` is the one list of kinds: `lbctl.toml`'s schema, the CLI and the semantic
parsers read their names from it. Importing this package imports no kind module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lbctl.registry import load

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.kinds.base import Kind

REGISTRY: dict[str, tuple[str, str]] = {
    "haproxy": ("lbctl.kinds.haproxy", "HaproxyKind"),
    "nginx": ("lbctl.kinds.nginx", "NginxKind"),
    "caddy": ("lbctl.kinds.caddy", "CaddyKind"),
}


def kind_for(target: Target) -> Kind:
    cls: type[Kind] = load(REGISTRY, target.kind, key=f"targets.{target.name}.kind")
    return cls(target)
