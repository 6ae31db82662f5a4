"""Judging a candidate config before anything is pushed: its traffic-share preview.

A target's `balance` check is also its policy: a candidate whose preview already
breaks it (one server above `max_share`, a pool with no usable server, a route to a
missing or empty backend) is refused at the plan stage, unless `--force`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lbctl.config import BalanceCheck, Target
from lbctl.errors import ParseError

BLOCKING = frozenset({"above-max-share", "no-usable-server", "route-to-missing-pool", "route-to-empty-pool"})


@dataclass(frozen=True)
class Preflight:
    blocking: tuple[str, ...]  # findings that refuse the deploy
    notes: tuple[str, ...]  # findings worth showing that do not

    @property
    def ok(self) -> bool:
        return not self.blocking


def balance_policy(target: Target) -> BalanceCheck | None:
    return next((c for c in target.checks if isinstance(c, BalanceCheck)), None)


def preflight(target: Target, old: bytes | None, new: bytes) -> Preflight:
    """The candidate's preview findings against the target's balance policy."""
    from lbctl.semantic import parse_config, traffic_preview

    policy = balance_policy(target)
    filename = target.path or target.source
    try:
        model = parse_config(target.kind, new.decode("utf-8", "replace"), filename=filename)
        baseline = parse_config(target.kind, old.decode("utf-8", "replace"), filename=filename) if old else None
    except ParseError as exc:
        # The LB's own validator is the authority on syntax; it runs next.
        return Preflight((), (f"no traffic preview: {exc}",))
    preview = traffic_preview(model, max_share=policy.max_share if policy else None, baseline=baseline)
    blocking: list[str] = []
    notes: list[str] = []
    for finding in preview.findings:
        line = f"{finding.message}" + (f" ({filename}:{finding.line})" if finding.line else "")
        (blocking if policy is not None and finding.code in BLOCKING else notes).append(line)
    return Preflight(tuple(blocking), tuple(notes))
