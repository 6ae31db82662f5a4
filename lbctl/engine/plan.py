"""The plan: what a deploy or rollback would do, and every reason it may not.

A plan is a value: computed from the live config and the candidate, shown, tied to a
checksum a reviewer can approve (`--dry-run`, then `--checksum`), and judged. A deploy
is refused for policy (exit 3), blast radius, staging-first or drift (exit 4); `--force`
overrides, and over the staging gate it wants a `--reason` that the event records. A
rollback is the way back, so only drift (a hand edit it would erase) stops it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lbctl.engine.gates import Problem, checksum, drift, staging_gate
from lbctl.errors import ExitCode, Refused, UsageError, ValidationFailed
from lbctl.store.bundle import recorded_blob
from lbctl.store.journal import TargetState

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.engine.preflight import Analysis, CounterReader
    from lbctl.engine.replay import ReplayResult
    from lbctl.kinds.base import Kind
    from lbctl.store.bundle import Bundle
    from lbctl.store.workspace import Workspace


@dataclass(frozen=True)
class Plan:
    target: str
    op: str
    from_rev: str | None
    candidate_rev: str | None
    diff: str
    live_missing: bool
    unchanged: bool
    checksum: str
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    analysis: Analysis | None = field(default=None, compare=False)
    replay: ReplayResult | None = field(default=None, compare=False)  # when the routing gate replayed requests

    @property
    def refusals(self) -> tuple[str, ...]:
        return tuple(p.text for p in self.problems)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "op": self.op,
            "from_rev": self.from_rev,
            "candidate_rev": self.candidate_rev,
            "checksum": self.checksum,
            "unchanged": self.unchanged,
            "live_missing": self.live_missing,
            "diff": self.diff,
            "refusals": [p.to_json() for p in self.problems],
            "notes": list(self.notes),
            "semantic": self.analysis.to_json() if self.analysis else None,
            "replay": self.replay.to_json() if self.replay else None,
        }


def make_plan(
    ws: Workspace,
    target: Target,
    kind: Kind,
    state: TargetState,
    op: str,
    live: Bundle | None,
    pushed: Bundle,
    candidate_rev: str | None,
    *,
    explain: bool = True,
    counters: CounterReader | None = None,
) -> Plan:
    """The plan; a rollback nobody is shown (`--yes`) skips the semantic analysis.

    A rollback is judged only for drift, and its diff is between two store revisions
    (`lbctl diff TARGET A B` recomputes it), so the runbook's command does not pay for
    parsing both configs and loading the differ (~0.13 s) on its way back to last-good.
    """
    from lbctl.engine.preflight import Analysis, analyze

    policy, safety = ws.config.policy_for(target), ws.config.safety_for(target)
    if explain or op == "deploy":
        analysis = analyze(target, policy, safety, live, pushed, counters=counters)
    else:
        hint = f"`lbctl diff {target.name} {(state.live or '')[:10]} {(candidate_rev or 'HEAD')[:10]}` shows it"
        analysis = Analysis(f"restores {candidate_rev[:10] if candidate_rev else 'a previous revision'}; {hint}", None)
    live_blob = live.blob(kind) if live is not None else None
    candidate_blob = pushed.blob(kind)
    problems: list[Problem] = list(analysis.problems) if op == "deploy" else []
    notes = list(analysis.notes) + ([p.text for p in analysis.problems] if op != "deploy" else [])
    recorded = recorded_blob(state.live_blob, live, kind)
    if recorded is not None and live_blob is not None and recorded != live_blob:
        problems += drift(target, recorded, live_blob, _drift_changes(ws, target, kind, state, live))
    if op == "deploy":
        problems += staging_gate(ws.config, ws.journal, target, candidate_rev, candidate_blob)
    return Plan(
        target=target.name,
        op=op,
        from_rev=state.live,
        candidate_rev=candidate_rev,
        diff=analysis.text,
        live_missing=live is None,
        unchanged=live_blob == candidate_blob,
        checksum=checksum(target, policy, safety, live_blob, candidate_blob),
        problems=tuple(problems),
        notes=tuple(notes),
        analysis=analysis,
    )


def with_analysis(plan: Plan, analysis: Analysis) -> Plan:
    """`plan` judged on `analysis` (the same change, other figures) instead of its own."""
    from dataclasses import replace

    old = plan.analysis
    if old is None:
        return plan
    others = [p for p in plan.problems if p not in old.problems]  # drift, staging first
    problems = (*analysis.problems, *others) if plan.op == "deploy" else plan.problems
    notes = [n for n in plan.notes if n not in old.notes]
    return replace(plan, problems=problems, notes=(*analysis.notes, *notes), analysis=analysis)


def _drift_changes(ws: Workspace, target: Target, kind: Kind, state: TargetState, live: Bundle | None) -> list[str]:
    """What the hand edit changed (only computed when the running config is not what lbctl left)."""
    if state.live is None or live is None:
        return []
    from lbctl.store.bundle import bundle_at, differences

    expected = bundle_at(ws.store, kind, target, state.live)
    if expected is None or expected == live:
        return []
    changes = differences(expected, live)
    if expected.main == live.main:
        return changes
    from lbctl.errors import ParseError
    from lbctl.semantic import diff_texts

    try:
        diff = diff_texts(
            target.kind,
            expected.main.decode("utf-8", "replace"),
            live.main.decode("utf-8", "replace"),
            filename=target.path or target.source,
        )
    except ParseError:
        return changes
    return [c.text for c in diff.changes] + changes


def enforce(plan: Plan, *, force: bool, reason: str | None, expected_checksum: str | None) -> ExitCode | None:
    """Raise (or, for a dry run, return the exit code of) every refusal that is not forced."""
    if expected_checksum is not None and expected_checksum != plan.checksum:
        raise Refused(
            f"{plan.target}: the plan changed since it was reviewed (checksum {plan.checksum}, "
            f"reviewed {expected_checksum}): the live config, the candidate or the rules differ; nothing was pushed",
            hint="run --dry-run again and review the new plan",
        )
    if force and not reason and any(p.rule == "staging_first" for p in plan.problems):
        raise UsageError("--force over the staging gate needs --reason 'why' (it is recorded in the event)")
    if force or not plan.problems:
        return None
    code = ExitCode.VALIDATION if any(p.code == ExitCode.VALIDATION for p in plan.problems) else ExitCode.REFUSED
    return code


def refuse(plan: Plan, code: ExitCode) -> None:
    details = "\n".join(f"  - {p.text}" for p in plan.problems)
    hint = "fix the config, or pass --force to deploy it anyway (verification still judges it)"
    if code == ExitCode.VALIDATION:
        raise ValidationFailed(
            f"{plan.target}: refused at the plan stage; nothing was pushed", details=details, hint=hint
        )
    raise Refused(f"{plan.target}: refused for safety; nothing was pushed\n{details}", hint=hint)
