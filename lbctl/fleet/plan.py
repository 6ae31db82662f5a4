"""The fleet plan: every member's plan, computed under every member's lock, and one checksum.

Each member's plan is the single-target lifecycle run dry (`operations.deploy(dry_run=True)`): it
reaches the member, records an operation that died there, checks its endpoints and the file it
reads, reads what it runs and judges drift, policy, blast radius and the staging gate. Preflight
adds what a dry run leaves to the deploy itself: the running state conforms to the revision lbctl
says is live, and the candidate passes the LB's own validator on that host. Any refusal refuses
the whole rollout, before anything is touched anywhere.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbctl.errors import ExitCode, LbctlError, Refused, TransientError, UsageError, ValidationFailed
from lbctl.fleet import read_width
from lbctl.fleet.group import Member, member_workspace

if TYPE_CHECKING:
    from lbctl.engine.execute import Outcome
    from lbctl.engine.plan import Plan
    from lbctl.fleet.holding import Holding
    from lbctl.store.workspace import Workspace

Report = Callable[[str, str, str], None]  # (member, event, message)


@dataclass(frozen=True)
class MemberPlan:
    """One member's line of the fleet plan."""

    name: str
    index: int
    verdict: str  # change | unchanged | refused
    exit_code: ExitCode
    summary: str  # what the change means here, or why it is refused
    traffic: str  # what the change does to traffic here
    gates: str  # "ok", or the refusals
    checksum: str | None = None
    from_rev: str | None = None
    to_rev: str | None = None
    plan: Plan | None = None
    watchdog: bool = True  # False: no commit-confirm watchdog can be armed here (Caddy's API, a tree of includes)

    def to_json(self) -> dict[str, Any]:
        return {
            "member": self.name,
            "index": self.index,
            "verdict": self.verdict,
            "exit_code": int(self.exit_code),
            "summary": self.summary,
            "traffic": self.traffic,
            "gates": self.gates,
            "checksum": self.checksum,
            "from_rev": self.from_rev,
            "to_rev": self.to_rev,
            "watchdog": self.watchdog,
        }


@dataclass(frozen=True)
class FleetPlan:
    group: str
    members: tuple[MemberPlan, ...]
    waves: tuple[tuple[str, ...], ...]  # canary first, then the batches: member names
    checksum: str

    @property
    def refused(self) -> tuple[MemberPlan, ...]:
        return tuple(m for m in self.members if m.verdict == "refused")

    @property
    def exit_code(self) -> ExitCode:
        """The first refusal's code (3, 4, 5 or 6), else 0."""
        return self.refused[0].exit_code if self.refused else ExitCode.OK

    def member(self, name: str) -> MemberPlan:
        return next(m for m in self.members if m.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "checksum": self.checksum,
            "waves": [list(w) for w in self.waves],
            "members": [m.to_json() for m in self.members],
        }


def waves(names: list[str], canary: int, batches: list[str]) -> tuple[tuple[str, ...], ...]:
    """Cut `names` into the canary and the batches; each batch says how many members have the change
    once it ends ("25%" of them, or a count), and the last one always takes the rest."""
    total = len(names)
    cuts: list[int] = []
    done = 0
    if canary and total:
        done = min(canary, total)
        cuts.append(done)
    for batch in batches:
        wanted = math.ceil(total * int(batch[:-1]) / 100) if batch.endswith("%") else int(batch)
        wanted = min(max(wanted, done), total)
        if wanted > done:
            cuts.append(wanted)
            done = wanted
    if done < total:
        cuts.append(total)
    result, start = [], 0
    for cut in cuts:
        result.append(tuple(names[start:cut]))
        start = cut
    return tuple(result)


def preflight(
    ws: Workspace,
    group: str,
    members: list[Member],
    holding: Holding,
    *,
    rev: str | None,
    file: Path | None,
    force: bool,
    reason: str | None,
    confirm_within: float,
    canary: int,
    batches: list[str],
    parallel: int,
    report: Report,
    planned: Mapping[str, MemberPlan] | None = None,
) -> FleetPlan:
    """Every member's plan, all at once (`read_width`: a plan changes nothing), under the locks `holding` holds.

    `planned`: the members' plans made already (`planner`, as each member's locks were taken)."""
    check_arguments(members, rev=rev, file=file)
    done = dict(planned or {})
    one = planner(ws, rev=rev, file=file, force=force, reason=reason, confirm_within=confirm_within)
    left = [m for m in members if m.name not in done]
    with ThreadPoolExecutor(max_workers=read_width(parallel, max(1, len(left)))) as pool:
        for member, made in zip(left, pool.map(lambda m: one(m, holding), left), strict=True):
            done[member.name] = made
    plans = [done[m.name] for m in members]
    for plan in plans:
        report(plan.name, "plan", plan.verdict + ("" if plan.verdict == "change" else f": {plan.summary}"))
    changing = [p.name for p in plans if p.verdict == "change"]
    digest = hashlib.sha256()
    for plan in plans:
        digest.update(f"{plan.name}\0{plan.verdict}\0{plan.checksum or ''}\n".encode())
    return FleetPlan(group, tuple(plans), waves(changing, canary, batches), digest.hexdigest()[:16])


def check_arguments(members: list[Member], *, rev: str | None, file: Path | None) -> None:
    """What the command line asks must make sense for the whole group (else exit 2, before any lock)."""
    if file is not None and rev is not None:
        raise UsageError("--file and --rev cannot be used together", hint="--file deploys a file, --rev a revision")
    if file is not None and len({m.target.source for m in members}) > 1:
        raise UsageError(
            "--file needs every member of the group to share one source file",
            hint="commit the change to each member's source, then `lbctl deploy @GROUP`",
        )


def planner(
    ws: Workspace,
    *,
    rev: str | None,
    file: Path | None,
    force: bool,
    reason: str | None,
    confirm_within: float,
) -> Callable[[Member, Holding], MemberPlan]:
    """One member's line of the fleet plan, under the locks `holding` holds for it (a refusal if it holds none)."""

    def one(member: Member, holding: Holding) -> MemberPlan:
        refused = holding.refused.get(member.name)
        if refused is not None or member.name not in holding.transports:
            return _refusal(member, refused or Refused(f"{member.name}: its locks are not held"))
        try:
            return _member_plan(
                ws, member, holding, rev=rev, file=file, force=force, reason=reason, confirm_within=confirm_within
            )
        except LbctlError as exc:
            return _refusal(member, exc)

    return one


def _refusal(member: Member, exc: LbctlError) -> MemberPlan:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    code = exc.exit_code if exc.exit_code in (3, 4, 5, 6) else ExitCode.REFUSED
    if exc.exit_code == ExitCode.USAGE:
        code = ExitCode.USAGE
    return MemberPlan(member.name, member.index, "refused", code, text, "-", type(exc).__name__)


def _member_plan(
    ws: Workspace,
    member: Member,
    holding: Holding,
    *,
    rev: str | None,
    file: Path | None,
    force: bool,
    reason: str | None,
    confirm_within: float,
) -> MemberPlan:
    from lbctl.commands import deploy as operations
    from lbctl.errors import CannotArm

    mws = member_workspace(ws, member)

    def dry_run(seconds: float) -> Outcome:
        return operations.deploy(
            mws,
            member.name,
            file=file,
            rev=rev,
            dry_run=True,
            force=force,
            reason=reason,
            confirm_within=seconds,
            confirm=lambda plan: True,
            report=lambda stage, message: None,
            held_by=holding.token,
            connection=holding.transports[member.name],
        )

    try:
        outcome, armed = dry_run(confirm_within), confirm_within > 0
    except CannotArm:  # this member is deployed without a watchdog; the others keep theirs
        outcome, armed = dry_run(0), False
    plan = outcome.plan
    to_rev = plan.candidate_rev
    if outcome.verdict == "refused":
        gates = "; ".join(plan.refusals) or outcome.message
        return MemberPlan(
            member.name,
            member.index,
            "refused",
            outcome.exit_code,
            gates,
            _traffic(plan),
            "refused",
            plan.checksum,
            plan.from_rev,
            to_rev,
            plan,
            watchdog=armed,
        )
    if outcome.verdict == "unchanged" or plan.unchanged:
        return MemberPlan(
            member.name,
            member.index,
            "unchanged",
            ExitCode.OK,
            "already runs it",
            "-",
            "ok",
            plan.checksum,
            plan.from_rev,
            to_rev,
            plan,
            watchdog=armed,
        )
    transport = holding.transports[member.name]
    problems = _conformance(mws, member, transport, force=force)
    problems += _validate(mws, member, transport, to_rev, file)
    if problems:
        return MemberPlan(
            member.name,
            member.index,
            "refused",
            problems[0][0],
            problems[0][1],
            _traffic(plan),
            "refused",
            plan.checksum,
            plan.from_rev,
            to_rev,
            plan,
            watchdog=armed,
        )
    return MemberPlan(
        member.name,
        member.index,
        "change",
        ExitCode.OK,
        _summary(plan),
        _traffic(plan),
        "ok",
        plan.checksum,
        plan.from_rev,
        to_rev,
        plan,
    )


def _conformance(ws: Workspace, member: Member, transport: Any, *, force: bool) -> list[tuple[ExitCode, str]]:
    """The LB runs what lbctl says is live (its running state, not only its file): else refused (4)."""
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import bundle_at

    state = ws.journal.state(member.name)
    if state.live is None or force or state.status not in ("good", "unconfirmed", "pending-confirm"):
        return []
    kind = kind_for(member.target)
    deployed = bundle_at(ws.store, kind, member.target, state.live)
    if deployed is None:
        return []
    try:
        running = kind.conformance(transport, deployed.with_main(kind.prepare(deployed.main)))
    except TransientError as exc:
        return [(ExitCode.UNREACHABLE, f"could not read its running state: {exc}")]
    if running.differences:
        return [(ExitCode.REFUSED, "its running state is not its live revision's: " + "; ".join(running.differences))]
    return []


def _validate(
    ws: Workspace, member: Member, transport: Any, to_rev: str | None, file: Path | None
) -> list[tuple[ExitCode, str]]:
    """The candidate through the LB's own validator on the member's host, staged beside the live file."""
    from lbctl.drivers.placement import placement
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import bundle_at, expand, live_rels

    target = member.target
    kind = kind_for(target)
    if file is not None:
        bundle = expand(ws.store, kind, target, "HEAD", file.read_bytes())
    elif to_rev is not None:
        found = bundle_at(ws.store, kind, target, to_rev)
        if found is None:
            return [(ExitCode.USAGE, f"revision {to_rev[:10]} has no {target.source}")]
        bundle = found
    else:
        return []
    pushed = bundle.with_main(kind.prepare(bundle.main))
    left_live = live_rels(ws.store, kind, target, ws.journal.state(member.name).live)
    place = placement(transport, target.path or "", pushed, left_live)
    try:
        staged = place.stage()
        try:
            kind.validate(transport, staged)
        finally:
            place.discard()
    except ValidationFailed as exc:
        return [(ExitCode.VALIDATION, f"{exc.message} {exc.details}".strip())]
    except TransientError as exc:
        return [(ExitCode.UNREACHABLE, f"could not validate on {transport.where}: {exc}")]
    return []


def _summary(plan: Plan) -> str:
    semantic = plan.analysis.semantic if plan.analysis else None
    if semantic is not None and semantic.changes:
        first = semantic.changes[0].text
        more = len(semantic.changes) - 1
        return first + (f" (+{more} more)" if more else "")
    lines = [line for line in plan.diff.splitlines() if line.strip()]
    return lines[0][:120] if lines else "(no change to the config)"


def _traffic(plan: Plan) -> str:
    semantic = plan.analysis.semantic if plan.analysis else None
    if semantic is None:
        return "?"
    moving = [c for c in semantic.changes if c.traffic]
    return f"{len(moving)} traffic change(s)" if moving else "none"
