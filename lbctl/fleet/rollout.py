"""`lbctl deploy @GROUP` and `lbctl rollback @GROUP`: a change to every member of a group.

Preflight (plan.py) under every member's lock; then the canary, its bake, then the batches, each
member in parallel (bounded by `parallel`) through the single-target lifecycle with its own
verification and a commit-confirm watchdog. The watchdogs of the members changed so far are kept
armed (their deadlines moved on) until the whole rollout ends, so an lbctl that dies mid-rollout
leaves every changed member to revert by itself; then they are confirmed. On failure: the members
in flight finish, none starts, and (on_failure = "rollback") every member this rollout changed goes
back to its own previous revision (undo.py). One journal event per member, and one for the rollout.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbctl.engine.record import record
from lbctl.errors import ExitCode, LbctlError, Refused
from lbctl.fleet import group as groups
from lbctl.fleet import read_width
from lbctl.fleet.group import Member, member_workspace
from lbctl.fleet.holding import Holding, hold
from lbctl.fleet.plan import FleetPlan, MemberPlan, Report, check_arguments, planner, preflight
from lbctl.lock import holder_info
from lbctl.store.journal import Event, TargetState, new_event_id, timestamp

if TYPE_CHECKING:
    from lbctl.config import Rollout
    from lbctl.store.workspace import Workspace

CHANGED = ("pending-confirm", "good", "unconfirmed")  # a member verified on the new revision


@dataclass(frozen=True)
class MemberResult:
    name: str
    index: int
    batch: int | None  # 0: the canary; None: not in any batch (unchanged or refused)
    verdict: str  # changed | confirmed | unchanged | skipped | rolled-back | restore-failed | failed | restored
    from_rev: str | None  # what it ran before the rollout
    to_rev: str | None  # the rollout's revision for it
    now: str | None  # what it runs now, as recorded
    message: str
    exit_code: ExitCode = ExitCode.OK
    events: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["exit_code"] = int(self.exit_code)
        data["events"] = list(self.events)
        return data


@dataclass(frozen=True)
class FleetResult:
    group: str
    op: str
    verdict: str  # dry-run | refused | good | unchanged | rolled-back | restore-failed | halted | mixed | declined
    exit_code: ExitCode
    message: str
    plan: FleetPlan | None
    members: tuple[MemberResult, ...] = ()
    rollout_id: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "op": self.op,
            "rollout": self.rollout_id,
            "verdict": self.verdict,
            "exit_code": int(self.exit_code),
            "message": self.message,
            "settings": self.settings,
            "plan": self.plan.to_json() if self.plan else None,
            "members": [m.to_json() for m in self.members],
        }


def settings_for(ws: Workspace, name: str, **overrides: Any) -> Rollout:
    """The group's `[groups.NAME.rollout]`, with the command line's overrides (None: the group's)."""
    settings = groups.rollout_settings(ws, name).rollout
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def deploy(
    ws: Workspace,
    name: str,
    settings: Rollout,
    *,
    rev: str | None = None,
    file: Path | None = None,
    message: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    reason: str | None = None,
    checksum: str | None = None,
    confirm: Callable[[FleetPlan], bool],
    report: Report,
) -> FleetResult:
    members = groups.members(ws, name)
    shown = {k: v for k, v in settings.__dict__.items()}
    if not dry_run:
        ws.store.identity()
    check_arguments(members, rev=rev, file=file)
    # Each member's plan starts as soon as its own locks are held (a plan changes nothing), while the
    # others' connections and locks are still being taken; preflight decides once all are held or refused.
    # Not with a store remote: each member's lease refreshes the store's view (the journal) first, and
    # every plan must read the view that all of them left.
    from lbctl.store.sync import remote_of

    early = dry_run or remote_of(ws) is None
    planned: dict[str, MemberPlan] = {}
    plan_one = planner(ws, rev=rev, file=file, force=force, reason=reason, confirm_within=settings.confirm_within)

    def plan_early(member: Member, holding: Holding) -> None:
        made = plan_one(member, holding)
        with holding.lock:
            planned[member.name] = made

    then = plan_early if early else None
    with hold(
        ws, members, "deploy", parallel=settings.parallel, shared=not dry_run, report=report, then=then
    ) as holding:
        plan = preflight(
            ws,
            name,
            members,
            holding,
            rev=rev,
            file=file,
            force=force,
            reason=reason,
            confirm_within=settings.confirm_within,
            canary=settings.canary,
            batches=list(settings.batches),
            parallel=settings.parallel,
            report=report,
            planned=planned,
        )
        if plan.refused:
            who = ", ".join(m.name for m in plan.refused)
            text = f"@{name}: refused in preflight by {who}; nothing was changed on any member"
            return FleetResult(name, "deploy", "refused", plan.exit_code, text, plan, settings=shown)
        if checksum is not None and checksum != plan.checksum:
            text = (
                f"@{name}: the fleet plan changed since it was reviewed (checksum {plan.checksum}, reviewed "
                f"{checksum}); nothing was changed on any member"
            )
            return FleetResult(name, "deploy", "refused", ExitCode.REFUSED, text, plan, settings=shown)
        if dry_run:
            text = f"dry run: nothing was changed; fleet plan checksum {plan.checksum}"
            return FleetResult(name, "deploy", "dry-run", ExitCode.OK, text, plan, settings=shown)
        if not plan.waves:
            text = f"@{name}: every member already runs it; nothing to do"
            return FleetResult(name, "deploy", "unchanged", ExitCode.OK, text, plan, settings=shown)
        if not confirm(plan):
            raise Refused("not confirmed: nothing was changed")
        revs = _revisions(ws, members, plan, file, message)
        return _Rollout(ws, name, members, plan, holding, settings, revs, force, reason, report).run(shown)


def _revisions(
    ws: Workspace, members: list[Member], plan: FleetPlan, file: Path | None, message: str | None
) -> dict[str, str | None]:
    """Each member's revision to deploy; `--file` is committed once, now, for every member."""
    if file is None:
        return {m.name: m.to_rev for m in plan.members}
    source = members[0].target.source
    sha = ws.store.commit_files(
        {source: file.read_bytes()},
        message or f"Update @{plan.group} from {file.name}",
        {"Lbctl-Target": "@" + plan.group},
    )
    return {m.name: sha for m in plan.members}


class _Rollout:
    def __init__(
        self,
        ws: Workspace,
        name: str,
        members: list[Member],
        plan: FleetPlan,
        holding: Holding,
        settings: Rollout,
        revs: dict[str, str | None],
        force: bool,
        reason: str | None,
        report: Report,
    ) -> None:
        self.ws, self.name, self.plan, self.holding = ws, name, plan, holding
        self.members = {m.name: m for m in members}
        self.settings, self.revs, self.force, self.reason, self.report = settings, revs, force, reason, report
        self.id = new_event_id()
        self.started = timestamp()
        self.results: dict[str, MemberResult] = {}
        self.watches: dict[str, str] = {}  # changed member -> its watchdog's event id
        self.failures = 0
        self.stop = threading.Event()
        self.interrupted = False
        self.lock = threading.Lock()
        self.using = {name: threading.Lock() for name in self.members}  # one thread at a time on a connection

    def run(self, shown: dict[str, Any]) -> FleetResult:
        settings = self.settings
        with self._watchdogs_kept():
            try:
                for batch, wave in enumerate(self.plan.waves):
                    self.report(f"@{self.name}", "batch", f"{_batch_name(batch, settings.canary)}: {', '.join(wave)}")
                    self._wave(batch, wave)
                    if self.stop.is_set():
                        break
                    if batch == 0 and settings.canary and settings.canary_bake > 0 and len(self.plan.waves) > 1:
                        self._bake(wave)
                        if self.stop.is_set():
                            break
            except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) between members: stop, and undo as on failure
                self.interrupted = True
                self.stop.set()
                self.report(f"@{self.name}", "interrupted", "no other member starts; the changed ones go back")
        for plan in self.plan.members:  # never reached, unchanged or skipped: untouched
            if plan.name not in self.results:
                verdict = "unchanged" if plan.verdict == "unchanged" else "skipped"
                said = "already runs it" if verdict == "unchanged" else "not reached: untouched"
                self.results[plan.name] = MemberResult(
                    plan.name, plan.index, None, verdict, plan.from_rev, self.revs.get(plan.name), plan.from_rev, said
                )
        changed = [n for n, r in self.results.items() if r.verdict == "changed"]
        if self.interrupted or (self.stop.is_set() and settings.on_failure == "rollback"):
            self._undo(changed)
        elif changed:
            self._confirm(changed)
        return self._finish(shown)

    def _wave(self, batch: int, wave: tuple[str, ...]) -> None:
        """The wave's members, `parallel` at a time; after Ctrl-C the members in flight finish, no other starts."""
        with ThreadPoolExecutor(max_workers=max(1, min(self.settings.parallel, len(wave)))) as pool:
            futures = [pool.submit(self._deploy, name, batch) for name in wave]
            try:
                for future in futures:
                    future.result()
            except KeyboardInterrupt:
                self.stop.set()  # before the pool's exit waits for the members in flight
                for future in futures:
                    future.cancel()
                raise

    # -- one member ---------------------------------------------------------------------------
    def _deploy(self, name: str, batch: int) -> None:
        member, planned = self.members[name], self.plan.member(name)
        if self.stop.is_set():
            return  # not started: left as it is (`skipped`)
        self.report(name, "deploy", f"{_batch_name(batch, self.settings.canary)}: to {str(self.revs[name])[:10]}")
        from lbctl.commands import deploy as operations

        try:
            outcome = operations.deploy(
                member_workspace(self.ws, member),
                name,
                rev=self.revs[name],
                force=self.force,
                reason=self.reason,
                checksum=planned.checksum,
                confirm_within=self.settings.confirm_within if planned.watchdog else 0,
                confirm=lambda plan: True,
                report=_member_stages(name, self.report),
                held_by=self.holding.token,
                connection=self.holding.transports[name],
            )
        except LbctlError as exc:  # refused or unreachable before anything changed on it
            text = str(exc).splitlines()[0]
            self._record(
                MemberResult(
                    name,
                    member.index,
                    batch,
                    "failed",
                    planned.from_rev,
                    self.revs[name],
                    planned.from_rev,
                    text,
                    exc.exit_code,
                )
            )
            return
        verdict = outcome.verdict
        if verdict in CHANGED:
            if verdict == "pending-confirm" and outcome.events:
                with self.lock:
                    self.watches[name] = outcome.events[0]
            checked = outcome.verification.summary if outcome.verification else "verified"
            said = f"runs {str(outcome.to_rev)[:10]}, verified ({checked})"
            if verdict == "pending-confirm":
                said += "; its watchdog stays armed until the rollout ends"
            result = MemberResult(
                name,
                member.index,
                batch,
                "changed",
                planned.from_rev,
                outcome.to_rev,
                outcome.to_rev,
                said,
                events=outcome.events,
            )
        elif verdict == "unchanged":
            result = MemberResult(
                name,
                member.index,
                batch,
                "unchanged",
                planned.from_rev,
                outcome.to_rev,
                outcome.to_rev,
                outcome.message,
                events=outcome.events,
            )
        else:  # rolled-back (back on its previous config, by the lifecycle) or restore-failed
            now = outcome.restored_rev if verdict == "rolled-back" else outcome.to_rev
            result = MemberResult(
                name,
                member.index,
                batch,
                verdict,
                planned.from_rev,
                outcome.to_rev,
                now,
                outcome.message,
                outcome.exit_code,
                outcome.events,
            )
        self._record(result)

    def _record(self, result: MemberResult) -> None:
        with self.lock:
            self.results[result.name] = result
            if result.verdict not in ("changed", "unchanged"):
                self.failures += 1
                if self.failures > self.settings.max_failures:
                    self.stop.set()
        self.report(result.name, result.verdict, result.message)

    def _bake(self, canaries: tuple[str, ...]) -> None:
        """Wait `canary_bake`, then one more round of the canaries' checks before going on."""
        from lbctl.checks import checks_for
        from lbctl.engine.verify import verify

        self.report(f"@{self.name}", "bake", f"{self.settings.canary_bake:g} s")
        time.sleep(self.settings.canary_bake)
        for name in canaries:
            result = self.results.get(name)
            if result is None or result.verdict != "changed":
                continue
            member = self.members[name]
            try:
                with self.using[name]:  # the keeper may be moving this member's deadline on
                    checks = checks_for(member.target, self.holding.transports[name])
                    for check in checks:
                        check.baseline()
                    healthy = verify(checks, window=0, interval=member.target.check_interval)
                ok, said = healthy.ok, healthy.summary
            except Exception as exc:  # a check that cannot run is a failed bake
                ok, said = False, str(exc) or type(exc).__name__
            if not ok:
                self._record(
                    replace(result, verdict="failed", message=f"after the bake: {said}", exit_code=ExitCode.ROLLED_BACK)
                )
                with self.lock:  # still on the new revision: the undo puts it back
                    self.results[name] = replace(self.results[name], verdict="changed-failed")

    # -- the watchdogs -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _watchdogs_kept(self) -> Iterator[None]:
        """While the rollout runs, move every changed member's watchdog deadline on, so none reverts
        a member before the rollout ends; an lbctl that dies stops moving them, and they revert."""
        seconds = self.settings.confirm_within
        done = threading.Event()

        def keep() -> None:
            from lbctl.drivers import watchdog

            while not done.wait(max(seconds / 3, 0.2)):
                with self.lock:
                    watches = dict(self.watches)
                for name, event_id in watches.items():
                    with self.using[name], contextlib.suppress(Exception):
                        watchdog.extend(self.holding.transports[name], self.members[name].target, event_id, seconds)

        keeper = threading.Thread(target=keep, name="lbctl-fleet-watchdogs", daemon=True)
        if seconds > 0:
            keeper.start()
        try:
            yield
        finally:
            done.set()
            if keeper.is_alive():
                keeper.join()

    def _confirm(self, changed: list[str]) -> None:
        """The rollout ended: confirm every changed member's pending change (its watchdog is disarmed)."""
        from lbctl.commands.confirm import confirm

        def one(name: str) -> None:
            event_id = self.watches.get(name)
            if event_id is None:  # no watchdog (confirm_within = 0): verified good already
                self.results[name] = replace(self.results[name], verdict="good")
                return
            try:
                mws, connection = member_workspace(self.ws, self.members[name]), self.holding.transports[name]
                said = confirm(mws, name, event_id, connection=connection)
                text, ok = said.message, said.exit_code == ExitCode.OK
            except LbctlError as exc:
                text, ok = str(exc), False
            if not ok:
                result = self.results[name]
                self._record(replace(result, verdict="failed", now=result.from_rev, message=f"not confirmed: {text}"))
            else:
                done = self.results[name]
                kept = done.message.split("; its watchdog")[0] + "; confirmed"
                self.results[name] = replace(done, verdict="confirmed", message=kept)
                self.report(name, "confirmed", text)

        with ThreadPoolExecutor(max_workers=read_width(self.settings.parallel, len(changed))) as pool:
            list(pool.map(one, changed))

    def _undo(self, changed: list[str]) -> None:
        from lbctl.fleet.undo import restore

        back = [n for n, r in self.results.items() if r.verdict in ("changed", "changed-failed")]
        items = [(self.members[n], self.results[n].from_rev, self.watches.get(n)) for n in back]
        if not items:
            return  # nothing this rollout changed is left on the new revision (a failed member restored itself)
        self.report(f"@{self.name}", "undo", f"putting {len(items)} changed member(s) back: {', '.join(back)}")
        for name, restored in restore(
            self.ws, items, self.holding, parallel=self.settings.parallel, report=self.report
        ).items():
            result = self.results[name]
            self.results[name] = replace(
                result,
                verdict="restored" if restored.ok else "restore-failed",
                now=restored.rev,
                message=restored.message,
                exit_code=ExitCode.ROLLED_BACK if restored.ok else ExitCode.ROLLBACK_FAILED,
                events=(*result.events, *((restored.event,) if restored.event else ())),
            )

    # -- the verdict ---------------------------------------------------------------------------
    def _finish(self, shown: dict[str, Any]) -> FleetResult:
        results = tuple(sorted(self.results.values(), key=lambda r: r.index))
        verdicts = {r.verdict for r in results}
        on_new = [r.name for r in results if r.verdict in ("confirmed", "changed", "good")]
        if "restore-failed" in verdicts:
            verdict, code = "restore-failed", ExitCode.ROLLBACK_FAILED
            text = "a restore failed: page a human; " + _who(results)
        elif self.interrupted:
            verdict, code = "interrupted", ExitCode.INTERRUPTED
            text = f"@{self.name}: interrupted; every member this rollout changed is back: " + _who(results)
        elif self.failures == 0:
            verdict, code = "good", ExitCode.OK
            text = f"@{self.name}: {len(on_new)} member(s) run the change, verified and confirmed"
        elif on_new:
            verdict = "halted" if self.stop.is_set() else "mixed"
            code = ExitCode.FLEET_MIXED
            why = "on_failure = halt" if self.stop.is_set() else f"max_failures = {self.settings.max_failures}"
            text = f"@{self.name}: members run different revisions ({why}): " + _who(results)
        else:
            verdict, code = "rolled-back", ExitCode.ROLLED_BACK
            text = f"@{self.name}: the change failed; every member is back on its previous revision: " + _who(results)
        result = FleetResult(self.name, "deploy", verdict, code, text, self.plan, results, self.id, shown)
        self._journal(result)
        return result

    def _journal(self, result: FleetResult) -> None:
        data = {
            "group": self.name,
            "waves": [list(w) for w in self.plan.waves],
            "settings": result.settings,
            "checksum": self.plan.checksum,
            "members": [m.to_json() for m in result.members],
        }
        event = Event(
            id=self.id,
            op="rollout",
            target="@" + self.name,
            who=json.loads(holder_info("deploy", "@" + self.name))["holder"],
            started=self.started,
            finished=timestamp(),
            from_rev=None,
            to_rev=None,
            verdict=result.verdict,
            message=result.message,
            data=data,
        )
        state = TargetState(target="@" + self.name, status=result.verdict, last_event=event.id, updated=event.finished)
        record(self.ws.journal, event, state)


def rollback(
    ws: Workspace,
    name: str,
    *,
    to: str = "last-good",
    parallel: int | None = None,
    dry_run: bool = False,
    force: bool = False,
    reason: str | None = None,
    report: Report,
) -> FleetResult:
    """Every member to its own `to` (last-good by default), all at once, in parallel, each verified."""
    from lbctl.commands import deploy as operations
    from lbctl.store.selectors import check_form

    members = groups.members(ws, name)
    check_form(ws.store, to)  # a typo is one usage error before any lock, not a failed rollout
    width = parallel or groups.rollout_settings(ws, name).rollout.parallel
    with hold(ws, members, "rollback", parallel=width, shared=not dry_run, report=report) as holding:
        if holding.refused:
            rows = []
            for member in members:
                exc = holding.refused.get(member.name)
                verdict = "refused" if exc else "untouched"
                rows.append(
                    MemberResult(
                        member.name,
                        member.index,
                        None,
                        verdict,
                        None,
                        None,
                        None,
                        str(exc).splitlines()[0] if exc else "not started",
                        exc.exit_code if exc else ExitCode.OK,
                    )
                )
            first = next(r for r in rows if r.verdict == "refused")
            text = f"@{name}: refused in preflight by {first.name}; nothing was changed on any member"
            return FleetResult(name, "rollback", "refused", first.exit_code, text, None, tuple(rows))

        def one(member: Member) -> MemberResult:
            before = ws.journal.state(member.name).live
            report(member.name, "rollback", f"to {to}")
            try:
                outcome = operations.rollback(
                    member_workspace(ws, member),
                    member.name,
                    to=to,
                    dry_run=dry_run,
                    force=force,
                    reason=reason,
                    explain=dry_run,
                    confirm=lambda plan: True,
                    report=_member_stages(member.name, report),
                    held_by=holding.token,
                    connection=holding.transports[member.name],
                )
            except LbctlError as exc:
                text = str(exc).splitlines()[0]
                report(member.name, "failed", text)
                return MemberResult(member.name, member.index, 0, "failed", before, None, before, text, exc.exit_code)
            report(member.name, outcome.verdict, outcome.message)
            now = outcome.to_rev if outcome.exit_code == ExitCode.OK else outcome.restored_rev
            return MemberResult(
                member.name,
                member.index,
                0,
                outcome.verdict,
                before,
                outcome.to_rev,
                now,
                outcome.message,
                outcome.exit_code,
                outcome.events,
            )

        with ThreadPoolExecutor(max_workers=max(1, min(width, len(members)))) as pool:
            results = tuple(pool.map(one, members))
    codes = [r.exit_code for r in results if r.exit_code != ExitCode.OK]
    code = ExitCode.ROLLBACK_FAILED if ExitCode.ROLLBACK_FAILED in codes else (codes[0] if codes else ExitCode.OK)
    verdict = "dry-run" if dry_run else ("good" if code == ExitCode.OK else "failed")
    if dry_run and code == ExitCode.OK:
        text = f"@{name}: dry run: nothing was changed on any member (each would go to its own {to})"
    else:
        text = f"@{name}: " + ("every member is at its " + to if code == ExitCode.OK else _who(results))
    result = FleetResult(name, "rollback", verdict, ExitCode(code), text, None, results)
    if not dry_run:
        _journal_rollback(ws, name, result)
    return result


def _journal_rollback(ws: Workspace, name: str, result: FleetResult) -> None:
    event = Event(
        id=new_event_id(),
        op="rollout",
        target="@" + name,
        who=json.loads(holder_info("rollback", "@" + name))["holder"],
        started=timestamp(),
        finished=timestamp(),
        from_rev=None,
        to_rev=None,
        verdict="rollback-" + result.verdict,
        message=result.message,
        data={"group": name, "op": "rollback", "members": [m.to_json() for m in result.members]},
    )
    record(ws.journal, event, TargetState(target="@" + name, status=event.verdict, last_event=event.id))


def _who(results: tuple[MemberResult, ...]) -> str:
    return ", ".join(f"{r.name} {r.verdict} ({(r.now or '-')[:10]})" for r in results)


def _batch_name(batch: int, canary: int) -> str:
    if canary and batch == 0:
        return "canary"
    return f"batch {batch if canary else batch + 1}"


def _member_stages(name: str, report: Report) -> Callable[[str, str], None]:
    """A member's lifecycle stages: only what went wrong is worth a line of its own in a fleet."""

    def stage(stage: str, message: str) -> None:
        if message.startswith(("failed", "FAILED")) or stage in ("restore", "watchdog", "lock"):
            report(name, stage, message)

    return stage
