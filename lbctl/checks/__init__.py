"""Check types by name (the `type` of a `[[targets.X.checks]]` table)."""

from __future__ import annotations

from lbctl.checks.base import HealthCheck
from lbctl.config import Target
from lbctl.registry import load
from lbctl.transports.base import Transport

REGISTRY: dict[str, tuple[str, str]] = {
    "http": ("lbctl.checks.simple", "HttpHealthCheck"),
    "tcp": ("lbctl.checks.simple", "TcpHealthCheck"),
    "command": ("lbctl.checks.simple", "CommandHealthCheck"),
    "balance": ("lbctl.checks.balance", "BalanceHealthCheck"),
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
