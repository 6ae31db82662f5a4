"""The verification window: rounds of every check, ended early by a hard failure."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lbctl.checks.base import CheckResult, HealthCheck, Observation


@dataclass(frozen=True)
class Verification:
    ok: bool
    results: tuple[CheckResult, ...]
    seconds: float
    rounds: int
    ended_early: bool

    @property
    def summary(self) -> str:
        if not self.results:
            return "no health checks configured: only the reload was confirmed"
        failed = [r for r in self.results if not r.ok]
        if failed:
            early = " (ended early on a hard failure)" if self.ended_early else ""
            return "; ".join(f"{r.name}: {r.summary}" for r in failed) + early
        return f"{len(self.results)} check(s) passed over {self.rounds} round(s) in {self.seconds:.1f} s"


def verify(
    checks: Sequence[HealthCheck],
    *,
    window: float,
    interval: float,
    on_round: Callable[[int, Sequence[Observation]], None] | None = None,
) -> Verification:
    """Run rounds of all checks for `window` seconds (0 = one round)."""
    start = time.monotonic()
    seen: list[list[Observation]] = [[] for _ in checks]
    rounds = 0
    ended_early = False
    while checks:
        rounds += 1
        current: list[Observation] = []
        for check, bucket in zip(checks, seen, strict=True):
            try:
                observation = check.observe()
            except Exception as exc:  # a check that cannot see counts as failing: the LB changed
                observation = Observation(False, f"{check.name} could not observe: {exc}", hard=True)
            bucket.append(observation)
            current.append(observation)
        if on_round is not None:
            on_round(rounds, current)
        if any(o.hard and not o.ok for o in current):
            ended_early = True
            break
        elapsed = time.monotonic() - start
        if elapsed + interval > window:
            break
        time.sleep(interval)
    results = tuple(check.result(bucket) for check, bucket in zip(checks, seen, strict=True))
    return Verification(
        ok=all(r.ok for r in results),
        results=results,
        seconds=time.monotonic() - start,
        rounds=rounds,
        ended_early=ended_early,
    )
