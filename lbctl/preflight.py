"""What a change means before anything is pushed: semantic diff, traffic preview, policy.

One parse of each version serves the plan's diff, the event's record and the policy
gate. A target's `balance` check is also its policy: a candidate whose preview already
breaks it (a server above `max_share`, a pool with no usable server, a route to a
missing or empty backend), or that lbctl cannot parse, is refused unless `--force`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lbctl.config import BalanceCheck, Target
from lbctl.errors import ParseError

if TYPE_CHECKING:
    from lbctl.semantic import SemanticDiff

BLOCKING = frozenset({"above-max-share", "no-usable-server", "route-to-missing-pool", "route-to-empty-pool"})


@dataclass(frozen=True)
class Analysis:
    text: str  # the change as a person reads it ("" when nothing changes)
    semantic: SemanticDiff | None  # None when a version could not be parsed (then `text` is a unified diff)
    blocking: tuple[str, ...] = ()  # why the deploy is refused
    notes: tuple[str, ...] = ()  # worth showing, not refusing

    def to_json(self) -> dict[str, Any] | None:
        return self.semantic.to_json() if self.semantic is not None else None


def balance_policy(target: Target) -> BalanceCheck | None:
    return next((c for c in target.checks if isinstance(c, BalanceCheck)), None)


def analyze(target: Target, old: bytes | None, new: bytes) -> Analysis:
    """The semantic diff of live `old` → candidate `new`, judged against the target's policy."""
    from lbctl.diffing import unified
    from lbctl.semantic import diff_texts, parse_config, semantic_diff

    policy = balance_policy(target)
    max_share = policy.max_share if policy else None
    filename = target.path or target.source
    try:
        new_model = parse_config(target.kind, new.decode("utf-8", "replace"), filename=filename)
    except ParseError as exc:
        return Analysis(
            unified(old or b"", new, "live", "candidate"),
            None,
            blocking=(f"lbctl cannot parse the candidate, so it cannot preview its traffic: {exc}",),
        )
    notes: list[str] = []
    try:
        if old is None:
            raise ParseError("there is no live config")
        diff = diff_texts(
            target.kind,
            old.decode("utf-8", "replace"),
            new.decode("utf-8", "replace"),
            filename=filename,
            max_share=max_share,
        )
    except ParseError as exc:
        notes.append(f"the live config could not be compared ({exc}); the preview covers the candidate only")
        empty = parse_config(target.kind, "", filename=filename)
        diff = semantic_diff(empty, new_model, max_share=max_share)
    blocking: list[str] = []
    for finding in diff.findings:
        line = finding.message + (f" ({filename}:{finding.line})" if finding.line else "")
        (blocking if policy is not None and finding.code in BLOCKING else notes).append(line)
    text = "" if old == new else "\n".join(c.text for c in diff.changes) or "(only cosmetic changes)"
    return Analysis(text, diff, tuple(blocking), tuple(notes))
