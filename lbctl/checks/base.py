"""Health checks: how lbctl judges a target after a reload.

Contract for a check type:
- `baseline()` runs before the swap (a check that compares before/after, such as a
  traffic-spread check reading the LB's counters, takes its reference here).
- `observe()` runs one round and returns an `Observation`; `hard=True` on a failed
  observation ends the verification window at once (fail fast).
- `result(observations)` turns the window's rounds into a `CheckResult` with figures
  that go into the deploy event, `lbctl log` and `--json`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lbctl.config import Target
from lbctl.transports.base import Transport


@dataclass(frozen=True)
class Observation:
    ok: bool
    detail: str
    hard: bool = False
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    summary: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "summary": self.summary, "figures": self.figures}


class HealthCheck(ABC):
    type: str = ""

    def __init__(self, spec: Any, target: Target, transport: Transport) -> None:
        self.spec = spec
        self.target = target
        self.transport = transport

    @property
    def name(self) -> str:
        return self.type

    def baseline(self) -> None:
        """Take a reference before the change (most checks need none)."""

    def restart(self) -> None:
        """Forget what the failed change's window taught, before the restore is verified
        (the reference taken by `baseline` stays)."""

    @abstractmethod
    def observe(self) -> Observation: ...

    def result(self, observations: Sequence[Observation]) -> CheckResult:
        failed = [o for o in observations if not o.ok]
        rounds = len(observations)
        if failed:
            return CheckResult(self.name, False, f"{len(failed)}/{rounds} rounds failed: {failed[-1].detail}")
        last = observations[-1].detail if observations else "no rounds ran"
        return CheckResult(self.name, True, f"{rounds} round(s) ok: {last}")
