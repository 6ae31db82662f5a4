"""Check types by name (the `type` of a `[[targets.X.checks]]` table).

`REGISTRY` is the one list of check types: for each, the module and class that run it, and
its settings class in `lbctl.checks.settings`, which `lbctl.toml`'s schema collects. Importing
this package imports no check module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lbctl.checks import settings
from lbctl.registry import load

if TYPE_CHECKING:
    from lbctl.checks.base import HealthCheck
    from lbctl.config import Target
    from lbctl.transports.base import Transport

REGISTRY: dict[str, tuple[str, str, str]] = {
    "http": ("lbctl.checks.simple", "HttpHealthCheck", "HttpCheck"),
    "tcp": ("lbctl.checks.simple", "TcpHealthCheck", "TcpCheck"),
    "command": ("lbctl.checks.simple", "CommandHealthCheck", "CommandCheck"),
    "balance": ("lbctl.checks.balance", "BalanceHealthCheck", "BalanceCheck"),
}
# Each type's settings class, by name (what pydantic's discriminated union is built from).
SETTINGS: dict[str, type[settings.CheckSettings]] = {
    name: getattr(settings, entry[2]) for name, entry in REGISTRY.items()
}


def checks_for(target: Target, transport: Transport) -> list[HealthCheck]:
    built: list[HealthCheck] = []
    for spec in target.checks:
        cls: type[HealthCheck] = load(REGISTRY, spec.type, key=f"targets.{target.name}.checks")
        built.append(cls(spec, target, transport))
    return built


def modules_for(target: Target) -> list[str]:
    """The modules `checks_for(target)` will import (to load them ahead of time)."""
    return sorted({REGISTRY[spec.type][0] for spec in target.checks if spec.type in REGISTRY})
