"""The plan: what a deploy or rollback would do, and every reason it may not.

A plan is a value: computed from the live config and the candidate, shown, tied to a
checksum a reviewer can approve (`--dry-run`, then `--checksum`), and judged. A deploy
is refused for policy (exit 3), blast radius, staging-first or drift (exit 4); `--force`
overrides, and over the staging gate it wants a `--reason` that the event records. A
rollback is the way back, so only drift (a hand edit it would erase) stops it.

`plan_change` computes a target's whole plan without a lock and without changing anything (the
LB is only read), so the plans of many targets can be shown before any is touched; the plan
carries its `Basis` (the candidate, and what the LB ran), and `lbctl.engine.execute.execute`
puts it live after `still_current` checked, under the locks, that the LB still runs that.
`apply_change` computes its plan under the locks with the same `plan_on`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from lbctl.engine.gates import Problem, checksum, drift, staging_gate
from lbctl.errors import ExitCode, LbctlError, Refused, UsageError, ValidationFailed
from lbctl.store.bundle import bundle_at, recorded_blob
from lbctl.store.journal import LiveEntry, TargetState

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.engine.preflight import Analysis, CounterReader
    from lbctl.engine.replay import ReplayResult
    from lbctl.engine.routing_counters import BackendCounts
    from lbctl.kinds.base import Kind
    from lbctl.store.bundle import Bundle
    from lbctl.store.repo import Store
    from lbctl.store.workspace import Workspace
    from lbctl.transports.base import Transport

T = TypeVar("T")
BEFORE_SEARCHED = 20  # store revisions compared with what a target runs before its first deploy


@dataclass(frozen=True)
class Candidate:
    """What to put live: a bundle of files, and either the store revision it is or how to commit it."""

    bundle: Bundle
    rev: str | None
    message: str = ""
    trailers: dict[str, str] = field(default_factory=dict)
    label: str = ""
    rollback_of: str | None = None  # marked bad once this candidate is verified good


@dataclass(frozen=True)
class Basis:
    """What a plan was computed from, and what executing it puts live (never shown, never compared)."""

    candidate: Candidate
    live: Bundle | None  # what the LB's files held when the plan was computed (None: no config there)
    pushed: Bundle  # the candidate as the LB gets it (`Kind.prepare`)
    left_live: tuple[str, ...]  # included files lbctl left live (a deploy removes those the candidate drops)
    before: LiveEntry | None = None  # the store revision the LB ran before lbctl's first deploy to it

    @property
    def managed(self) -> tuple[str, ...]:
        """The files to read and compare: the candidate's, and those lbctl left live."""
        return (*self.candidate.bundle.rels, *self.left_live)


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
    basis: Basis | None = field(default=None, compare=False, repr=False)  # what `execute` needs of it

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


class Timed(Protocol):
    """How a planning step is run: `Run.timed` under the lock (a stage of the event), else just called."""

    def __call__(self, name: str, fn: Callable[[], T], *, detail: str = ..., detail_from_result: bool = ...) -> T: ...


def _untimed(name: str, fn: Callable[[], T], *, detail: str = "", detail_from_result: bool = False) -> T:
    return fn()


def plan_change(
    ws: Workspace, target: Target, candidate: Candidate, *, op: str = "deploy", explain: bool = True
) -> Plan:
    """The whole plan of putting `candidate` on `target`: semantic diff, traffic and routing figures,
    gates and checksum, from what the LB runs now.

    No lock is taken and nothing is changed (the LB and the journal are only read), so the plans of
    many targets can be computed and shown before any of them is touched. `execute` puts such a plan
    live, once it has checked under the locks that the LB still runs what the plan was computed from.
    """
    from lbctl.drivers import driver_for

    state = ws.journal.state(target.name)
    if candidate.rollback_of is not None and candidate.rollback_of != state.live:
        candidate = replace(candidate, rollback_of=state.live)
    with driver_for(target) as driver:
        return plan_on(ws, target, driver.kind, driver.transport, state, candidate, op=op, explain=explain)


def plan_on(
    ws: Workspace,
    target: Target,
    kind: Kind,
    transport: Transport,
    state: TargetState,
    candidate: Candidate,
    *,
    op: str,
    explain: bool = True,
    timed: Timed = _untimed,
) -> Plan:
    """The plan of `candidate` from what the LB runs now, read through an open `transport`, with the
    journal's `state` of the target (`plan_change` without a lock; `apply_change` under its locks)."""
    from lbctl.drivers.base import read_running
    from lbctl.store.bundle import live_rels

    left_live = tuple(live_rels(ws.store, kind, target, state.live))
    managed = (*candidate.bundle.rels, *left_live)
    live = timed("read live", lambda: read_running(transport, target, managed))
    pushed = candidate.bundle.with_main(kind.prepare(candidate.bundle.main))

    def counters() -> BackendCounts | str:  # read only when the change moves requests between backends
        from lbctl.engine.routing_counters import sample

        return sample(kind, transport)

    plan = timed(
        "plan",
        lambda: make_plan(ws, target, kind, state, op, live, pushed, candidate.rev, explain=explain, counters=counters),
    )
    before = None
    if state.live is None and live is not None and not plan.unchanged:
        before = ran_before_lbctl(ws.store, kind, target, live)
    if op == "deploy" and not plan.unchanged and (ws.config.routes_for(target) or target.replay_log):
        # routing cases and a replay of the LB's log, in sandboxes on this machine
        judged = plan
        plan = timed(
            "routing",
            lambda: with_routing(
                ws, target, judged, live=live, candidate=pushed, candidate_rev=candidate.rev, transport=transport
            ),
        )
    return replace(plan, basis=Basis(candidate, live, pushed, left_live, before))


def still_current(
    plan: Plan, ws: Workspace, target: Target, kind: Kind, state: TargetState, live: Bundle | None
) -> Plan:
    """Under the locks: `plan` if the journal and the LB (`live`, read now) are still what it was computed
    from, and the rules judging it the same; else it is refused as a reviewed plan whose checksum moved."""
    basis = basis_of(plan)
    live_blob = live.blob(kind) if live is not None else None
    now = checksum(
        target, ws.config.policy_for(target), ws.config.safety_for(target), live_blob, basis.pushed.blob(kind)
    )
    if state.live != plan.from_rev:
        what = f"the journal's live revision moved ({(plan.from_rev or 'none')[:10]} -> {(state.live or 'none')[:10]})"
    elif now != plan.checksum:
        what = f"the live config or the rules changed (checksum {now}, planned {plan.checksum})"
    else:
        return replace(plan, basis=replace(basis, live=live))
    raise Refused(
        f"{plan.target}: the plan is stale: {what} since it was computed; nothing was pushed",
        hint="compute the plan again and review it",
    )


def basis_of(plan: Plan) -> Basis:
    """What executing `plan` needs; only a plan from `plan_change` or `plan_on` has it."""
    if plan.basis is None:
        raise ValueError(f"{plan.target}: only a plan from plan_change() or plan_on() can be executed")
    return plan.basis


def ran_before_lbctl(store: Store, kind: Kind, target: Target, live: Bundle) -> LiveEntry | None:
    """The newest store revision whose content the LB runs, before lbctl ever deployed to it.

    It was live from its commit (at the earliest) until lbctl's first deploy replaces it.
    """
    wanted = live.blob(kind)
    try:
        revisions = store.revisions(target.source, limit=BEFORE_SEARCHED)
    except LbctlError:
        return None
    for revision in revisions:
        at_rev = bundle_at(store, kind, target, revision.sha)
        if at_rev is not None and at_rev.blob(kind) == wanted:  # blob() compares canonical forms
            return LiveEntry(revision.sha, revision.date.isoformat(timespec="milliseconds"), "before lbctl")
    return None


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


def with_routing(
    ws: Workspace,
    target: Target,
    plan: Plan,
    *,
    live: Bundle | None,
    candidate: Bundle,
    candidate_rev: str | None,
    transport: Transport,
) -> Plan:
    """A deploy's plan with the routing gate's problems and notes added (nothing to add: the same plan).

    A replay's figures replace the plan's routing estimate, and its blast radius is judged on them.
    """
    from lbctl.engine.routing_gate import judge

    state = ws.journal.state(target.name)
    verdict = judge(
        ws,
        target,
        live=live,
        live_rev=state.live,
        candidate=candidate,
        candidate_rev=candidate_rev or "HEAD",
        label=(candidate_rev or "candidate")[:10],
        transport=transport,
    )
    if verdict.replay is not None and plan.analysis is not None:
        from lbctl.engine.preflight import rejudged
        from lbctl.engine.replay import replayed

        policy, safety = ws.config.policy_for(target), ws.config.safety_for(target)
        analysis = rejudged(plan.analysis, target, policy, safety, replayed(verdict.replay))
        plan = replace(with_analysis(plan, analysis), replay=verdict.replay)
    if not verdict.problems and not verdict.notes:
        return plan
    return replace(plan, problems=(*plan.problems, *verdict.problems), notes=(*plan.notes, *verdict.notes))
