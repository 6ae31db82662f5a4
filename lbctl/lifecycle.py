"""The deploy lifecycle (PRODUCT.md §5), as one function that reads top to bottom.

lock → plan → stage → validate → commit → swap → reload → confirm → verify → record,
or, once the LB has changed: restore → reload → confirm → verify → forward commit → record.

The load balancer always runs a complete config: the candidate is written beside the
live file and renamed over it only after native validation, and the previous file is
kept (hard link) so a restore is one rename too. A config that includes other store
files is a bundle (`lbctl.bundle`) staged, swapped and restored as one tree
(`lbctl.placement`), with one validation and one reload. SIGINT is held off while the LB is
between two states (swap+reload, restore, record) and honoured between stages.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from lbctl import preload, recovery, retry
from lbctl.bundle import Bundle, bundle_at, live_rels, read_live, revision_of, store_changes
from lbctl.checks import checks_for
from lbctl.checks import modules_for as check_modules
from lbctl.config import Target
from lbctl.conformance import require_origin, settled
from lbctl.errors import (
    ExitCode,
    Interrupted,
    LbctlError,
    Refused,
    TransientError,
    Unreachable,
    ValidationFailed,
)
from lbctl.journal import Event, LiveEntry, Stage, TargetState, new_event_id, timestamp
from lbctl.kinds import kind_for
from lbctl.kinds.base import Kind
from lbctl.lock import hold_flock, holder_info
from lbctl.lock import lb_lock_path as lb_lock_path  # where it lived first: adopt.py imports it from here
from lbctl.placement import Placement, placement
from lbctl.planning import Plan, enforce, make_plan, refuse
from lbctl.transports import transport_for
from lbctl.transports.base import Transport
from lbctl.verify import Verification, verify
from lbctl.workspace import Workspace

if TYPE_CHECKING:
    from lbctl.routing_counters import BackendCounts
    from lbctl.store import Store

BEFORE_SEARCHED = 20  # store revisions compared with what a target runs before its first deploy
Reporter = Callable[[str, str], None]  # (stage, message): progress for a human, never parsed


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
class Outcome:
    """The result of a deploy or rollback, whatever happened after the plan."""

    op: str
    target: str
    verdict: str  # good | unconfirmed | unchanged | dry-run | declined | rolled-back | restore-failed | interrupted
    exit_code: ExitCode
    plan: Plan
    message: str
    to_rev: str | None = None
    restored_rev: str | None = None
    stages: tuple[Stage, ...] = ()
    verification: Verification | None = None
    restore_verification: Verification | None = None
    events: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "target": self.target,
            "verdict": self.verdict,
            "exit_code": int(self.exit_code),
            "message": self.message,
            "from_rev": self.plan.from_rev,
            "to_rev": self.to_rev,
            "restored_rev": self.restored_rev,
            "plan": self.plan.to_json(),
            "stages": [s.__dict__ for s in self.stages],
            "checks": [r.to_json() for r in self.verification.results] if self.verification else [],
            "restore_checks": [r.to_json() for r in self.restore_verification.results]
            if self.restore_verification
            else [],
            "events": list(self.events),
        }


def apply_change(
    ws: Workspace,
    target: Target,
    candidate: Candidate,
    *,
    op: str,
    confirm: Callable[[Plan], bool],
    dry_run: bool = False,
    force: bool = False,
    reason: str | None = None,
    expected_checksum: str | None = None,
    explain: bool = True,
    report: Reporter = lambda stage, message: None,
    rechoose: Callable[[TargetState], Candidate] | None = None,
    confirm_within: float | None = None,
) -> Outcome:
    """Put `candidate` live on `target` with verification; undo it if it hurts.

    The plan is judged first (planning.py): policy, blast radius, staging-first, drift and
    a reviewed checksum; what is refused leaves no commit and touches nothing on the LB.
    An earlier operation that was interrupted is recorded first (`lbctl.recovery`); then
    `rechoose`, if given, picks the candidate again from the state as it is now.
    With `confirm_within` seconds (default: the target's `confirm_within`), a watchdog armed on the
    LB host before the reload reverts the change unless `lbctl confirm` comes in time (`lbctl.watchdog`).
    """
    kind = kind_for(target)
    run = _Run(ws, target, op, report)
    with (
        run.nothing_changed_on_interrupt(),
        run.locked(),
        _connect(transport_for(target), target) as transport,
        _lb_lock(ws, transport, target, op, kind),
        run.settled(),
    ):
        if _recover(ws, target, transport) and rechoose is not None:
            candidate = rechoose(ws.journal.state(target.name))
        seconds = target.confirm_within if confirm_within is None else confirm_within
        if seconds > 0:
            _can_arm(target, None)
        if target.transport != "http" and (seconds > 0 or ws.journal.state(target.name).status == "pending-confirm"):
            _settle_watchdogs(ws, target, transport, report)  # what a watchdog did while nobody watched
        taken = getattr(transport, "took_over", None)
        if taken:  # the LB lock of an lbctl that died on this machine: say who broke it
            from lbctl.unlock import record

            report("lock", f"took over the lock on {transport.where} of {taken}, whose process is gone")
            record(ws, target.name, f"{op} took over the lock on {transport.where} of {taken}, whose process is gone")
        _check_endpoints(kind, transport, target)
        # The file lbctl changes must be the one the LB reads: refused (exit 2) before anything else.
        run.timed("path", lambda: require_origin(kind, transport, target), detail_from_result=True)
        state = ws.journal.state(target.name)
        if candidate.rollback_of is not None and candidate.rollback_of != state.live:
            # Another operation finished between the caller's read and our lock: undo what is live now.
            candidate = replace(candidate, rollback_of=state.live)
        # The files to read and compare: the candidate's, and those lbctl left live (a deploy removes them).
        left_live = live_rels(ws.store, kind, target, state.live)
        managed = (*candidate.bundle.rels, *left_live)
        live = run.timed("read live", lambda: _read(transport, target, managed))
        pushed = candidate.bundle.with_main(kind.prepare(candidate.bundle.main))

        def counters() -> BackendCounts | str:  # read only when the change moves requests between backends
            from lbctl.routing_counters import sample

            return sample(kind, transport)

        plan = run.timed(
            "plan",
            lambda: make_plan(
                ws, target, kind, state, op, live, pushed, candidate.rev, explain=explain, counters=counters
            ),
        )
        if state.live is None and live is not None and not plan.unchanged:
            run.before = ran_before_lbctl(ws.store, kind, target, live)
        at_live = (
            plan.unchanged and state.status == "good" and candidate.rev is not None and candidate.rev == state.live
        )
        if at_live and not force:
            # "Nothing to do" only when nothing is wrong: the LB runs it, and (a rollback) it is healthy.
            wrong = run.timed("recheck", lambda: _what_is_wrong(kind, transport, target, pushed, op == "rollback"))
            if not wrong:
                return run.outcome(
                    "unchanged", ExitCode.OK, plan, f"{target.name} already runs this config; nothing to do"
                )
            report("recheck", f"pushing it again: {wrong}")
        if op == "deploy" and not plan.unchanged and (ws.config.routes_for(target) or target.replay_log):
            # routing cases and a replay of the LB's log, in sandboxes on this machine
            plan = run.timed("routing", lambda: _with_routing(ws, target, plan, live, pushed, candidate, transport))
        if seconds > 0:
            _can_arm(target, pushed, live)
        refused = enforce(plan, force=force, reason=reason, expected_checksum=expected_checksum)
        if dry_run:
            verdict, code = ("refused", refused) if refused else ("dry-run", ExitCode.OK)
            return run.outcome(verdict, code, plan, f"dry run: nothing was changed; plan checksum {plan.checksum}")
        if refused:
            refuse(plan, refused)
        if force and plan.problems:
            run.forced = "forced over: " + "; ".join(p.rule for p in plan.problems) + (f" ({reason})" if reason else "")
            candidate = replace(candidate, trailers={**candidate.trailers, "Lbctl-Forced": run.forced})
        if not confirm(plan):
            raise Refused("not confirmed: nothing was changed")

        place = placement(transport, target.path or "", pushed, left_live)
        run.begin(state, live.blob(kind) if live is not None else None, pushed, kind, place, candidate.rev)
        try:
            staged = run.timed("stage", place.stage)
        except TransientError as exc:
            run.discard(place)
            raise Unreachable(
                f"{target.name}: could not stage the candidate: {exc}",
                hint="nothing was changed on the LB; run the same command again",
            ) from None
        except BaseException:
            run.discard(place)  # a tree half staged: nothing of it may stay
            raise
        # While the LB validates: the checks' modules, and what the reload's polling retries with.
        preload.in_background([*check_modules(target), retry.IMPLEMENTATION, *kind.conformance_modules])
        try:
            run.timed(
                "validate",
                lambda: kind.validate(transport, staged),
                detail=f"native check on {transport.where}",
            )
            # Everything that reads the LB before the swap, while a failure still changes nothing.
            checks = checks_for(target, transport)
            for check in checks:
                check.baseline()
            marker = run.timed("snapshot", lambda: kind.reload_marker(transport)) if target.confirm_reload else None
        except ValidationFailed as exc:
            run.discard(place)
            run.record_event(state, "validation-failed", candidate.rev, str(exc), mark_bad=candidate.rev)
            raise
        except TransientError as exc:
            run.discard(place)
            raise Unreachable(
                f"{target.name}: could not prepare the change: {exc}",
                hint="nothing was changed on the LB; run the same command again",
            ) from None
        except BaseException:
            run.discard(place)
            raise

        # The commit is written now but lands on the branch only once the LB took the change.
        pending = None
        if candidate.rev is None:
            pending = run.timed(
                "commit",
                lambda: ws.store.prepare_commit(
                    store_changes(ws.store, kind, target, candidate.bundle), candidate.message, candidate.trailers
                ),
            )
        to_rev = pending.sha if pending is not None else (candidate.rev or "")
        if seconds > 0 and live is not None:
            try:
                run.timed("arm watchdog", lambda: run.arm(kind, transport, seconds, state, live, pushed, to_rev))
            except BaseException:
                run.discard(place)
                raise
        lb = _Lb(kind, transport, place, lambda: _read_back(transport, target, managed), marker)
        with shielded() as interrupted, run.inflight(to_rev, state):
            try:
                run.timed("swap", place.swap)
            except Exception as exc:  # whatever happened, undo() reads back what the LB has
                return run.undo(state, lb, checks, live, to_rev, f"swap failed: {exc}", plan)
            try:
                run.timed("reload", lambda: _reload(kind, transport, marker), detail_from_result=True)
            except Refused as exc:
                # A transport's contract: Refused from reload means the LB did not take the change.
                run.untouched(state, to_rev, exc, lambda: None)
            except Exception as exc:  # the file is swapped: any failure goes through the restore
                return run.undo(state, lb, checks, live, to_rev, f"reload failed: {exc}", plan)
            if pending is not None:
                to_rev = run.timed("land commit", lambda: ws.store.land(pending))
                run.landed(to_rev, state)
        if interrupted():
            return run.interrupted(state, to_rev, pushed.blob(kind), plan, during="the reload")
        conformance = run.timed("conform", lambda: settled(kind, transport, pushed), detail_from_result=True)
        if conformance.differences:
            reason = "the LB does not run the pushed config: " + "; ".join(conformance.differences)
            return run.undo(state, lb, checks, live, to_rev, reason, plan)

        try:
            verification = run.timed(
                "verify",
                lambda: verify(
                    checks,
                    window=target.verify_seconds,
                    interval=target.check_interval,
                    on_round=run.round_reporter,
                ),
                detail_from_result=True,
            )
        except KeyboardInterrupt:
            return run.interrupted(state, to_rev, pushed.blob(kind), plan, during="verification")
        if not verification.ok:
            return run.undo(state, lb, checks, live, to_rev, verification.summary, plan, verification=verification)
        if run.armed is not None:
            return run.pending_confirm(state, to_rev, pushed.blob(kind), plan, verification, candidate.rollback_of)
        # Checks that pass after a reload nobody confirmed may be the old config passing them.
        verdict = "good" if target.confirm_reload else "unconfirmed"
        with shielded():
            event = run.record_event(
                state,
                verdict,
                to_rev,
                verification.summary + (f"; {run.forced}" if run.forced else ""),
                verification=verification,
                blob=pushed.blob(kind),
                diff=plan.diff,
                mark_bad=candidate.rollback_of,
                live_status=verdict,
            )
        said = (
            f"verified good: {verification.summary}"
            if verdict == "good"
            else f"checks passed ({verification.summary}) but the reload was NOT confirmed (confirm_reload = false): "
            "recorded `unconfirmed`, not good"
        )
        return run.outcome(
            verdict,
            ExitCode.OK,
            plan,
            f"{target.name} runs {to_rev[:10]}, {said}",
            to_rev=to_rev,
            verification=verification,
            events=(event,),
        )


@contextlib.contextmanager
def _connect(transport: Transport, target: Target) -> Iterator[Transport]:
    try:
        retry.call(retry.network(target.retries), transport.open)
    except TransientError as exc:
        raise Unreachable(
            f"{target.name}: could not reach {transport.where} after {target.retries} retries: {exc}",
            hint="nothing was changed on it; check the network and run the same command again",
        ) from None
    try:
        yield transport
    finally:
        transport.close()


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


def _what_is_wrong(kind: Kind, transport: Transport, target: Target, pushed: Bundle, with_checks: bool) -> str:
    """Why a target already at the candidate still needs it pushed again ("" when nothing is wrong)."""
    running = kind.conformance(transport, pushed)
    if running.differences:
        return "running drift: " + "; ".join(running.differences)
    if not with_checks:
        return ""
    checks = checks_for(target, transport)
    for check in checks:
        check.baseline()
    one_round = verify(checks, window=0, interval=target.check_interval)
    return "" if one_round.ok else f"its checks fail: {one_round.summary}"


def _check_endpoints(kind: Kind, transport: Transport, target: Target) -> None:
    """The sockets / API the target's settings name answer as they should, before anything changes."""
    try:
        kind.check_endpoints(transport)
    except TransientError as exc:
        raise Unreachable(
            f"{target.name}: could not reach {transport.where}: {exc}",
            hint="nothing was changed on it; check the network and run the same command again",
        ) from None


@contextlib.contextmanager
def _lb_lock(ws: Workspace, transport: Transport, target: Target, op: str, kind: Kind) -> Iterator[None]:
    """The LB-side lock; a connection lost while taking it is exit 6 (nothing was changed).

    What the preflight reads first (the kind's sockets, the live file) may come back with it, unless
    an interrupted operation is recovered first (its restore and reload come between)."""
    with contextlib.ExitStack() as stack:
        info = holder_info(op, target.name)
        if recovery.pending(ws, target.name) is None:
            transport.read_ahead(files=[target.path] if target.path else [], requests=kind.endpoint_requests())
        try:
            stack.enter_context(transport.lock(lb_lock_path(target), info))
        except TransientError as exc:
            recovery.note_leftovers(ws, target.name, info)  # a lock directory half made, for the next one
            raise Unreachable(
                f"{target.name}: could not take the lock on {transport.where}: {exc}",
                hint="nothing was changed on the LB; run the same command again",
            ) from None
        yield


def _recover(ws: Workspace, target: Target, transport: Transport) -> bool:
    """Record and clean up after an earlier operation that did not finish; True if there was one."""
    if recovery.pending(ws, target.name) is None:
        return False
    try:
        recovery.recover(ws, target, transport, locked=True)
    except TransientError as exc:
        raise Unreachable(
            f"{target.name}: could not read what the LB runs after an interrupted operation: {exc}",
            hint="nothing was changed on the LB; run the same command again",
        ) from None
    return True


def _with_routing(
    ws: Workspace, target: Target, plan: Plan, live: Bundle | None, pushed: Bundle, candidate: Candidate, t: Transport
) -> Plan:
    from lbctl.routing_gate import with_routing

    return with_routing(ws, target, plan, live=live, candidate=pushed, candidate_rev=candidate.rev, transport=t)


def _read(transport: Transport, target: Target, rels: Iterable[str] = ()) -> Bundle | None:
    """The live config: the main file and those of `rels` (included files) that exist."""
    try:
        return retry.call(retry.network(target.retries), lambda: read_live(transport, target, rels))
    except TransientError as exc:
        raise Unreachable(f"{target.name}: could not read the live config: {exc}") from None


def _can_arm(target: Target, pushed: Bundle | None, live: Bundle | None = None) -> None:
    """Refuse `--confirm-within` (exit 2, before anything changes) where no watchdog can be armed."""
    from lbctl.watchdog import CannotArm, refusal

    why = refusal(target, pushed is not None and len(pushed.rels) > 0)
    if why is None and pushed is not None and live is None:
        why = f"{target.name}: --confirm-within needs a config on the LB to go back to"
    if why:
        raise CannotArm(why, hint='deploy without --confirm-within (or with confirm_within = "0" for this target)')


def _settle_watchdogs(ws: Workspace, target: Target, transport: Transport, report: Reporter) -> None:
    """Record what commit-confirm watchdogs did on the LB host while no lbctl watched (`lbctl.confirming`)."""
    from lbctl.confirming import settle

    try:
        _, said = settle(ws, target, transport)
    except TransientError as exc:
        raise Unreachable(f"{target.name}: could not read its watchdogs: {exc}") from None
    for line in said:
        report("watchdog", line)


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch)) + " UTC"


def _quietly_value(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # best effort: the caller has a fallback
        return None


def _quietly(fn: Callable[[], object]) -> None:
    """Best-effort cleanup that must not hide the error being handled."""
    with contextlib.suppress(Exception):
        fn()


def _read_back(transport: Transport, target: Target, rels: Iterable[str]) -> Bundle | None:
    """What the LB's config files hold now, or None if they cannot be read (never raises)."""
    try:
        return read_live(transport, target, rels)
    except Exception:  # a failed read-back means "unknown", which callers handle
        return None


@dataclass(frozen=True)
class _Lb:
    """What a restore works with: the kind, the transport, how the candidate was placed, and
    how to read back what the LB's files hold now."""

    kind: Kind
    transport: Transport
    place: Placement
    read_back: Callable[[], Bundle | None]
    before: object = None  # the LB's process state before the swap (`Kind.reload_marker`)


def _reload(kind: Kind, transport: Transport, marker: object) -> str:
    kind.reload(transport)
    if not kind.target.confirm_reload:
        return "reload command exited 0; not confirmed (confirm_reload = false)"
    return kind.confirm_reload(transport, marker)


@contextlib.contextmanager
def shielded() -> Iterator[Callable[[], bool]]:
    """Defer SIGINT and SIGTERM until the block ends; the yielded function says whether one came."""
    got: list[int] = []

    def _note(signum: int, frame: FrameType | None) -> None:
        got.append(signum)

    try:
        previous = signal.signal(signal.SIGINT, _note)
    except ValueError:  # not the main thread: nothing to shield against
        yield lambda: False
        return
    previous_term = signal.signal(signal.SIGTERM, _note)
    try:
        yield lambda: bool(got)
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


class _Run:
    """Bookkeeping for one operation: timings, events, the inflight marker."""

    def __init__(self, ws: Workspace, target: Target, op: str, report: Reporter) -> None:
        self.ws = ws
        self.target = target
        self.op = op
        self.report = report
        self.stages: list[Stage] = []
        self.started = timestamp()
        self.event_ids: list[str] = []
        self.forced = ""
        self.before: LiveEntry | None = None  # the store revision the LB ran before lbctl's first deploy
        self.marker: dict[str, Any] | None = None  # the in-flight record while one is kept
        self.place: Placement | None = None
        self.touched = False  # the swap began: the LB may hold the candidate
        self.left_staged = False  # a staged candidate could not be removed
        self.discarded = False  # discarding was tried (once is enough, even over a dead connection)
        # Fault injection for the tests and bench/faults.py: `before:STAGE` or `after:STAGE`
        # (a timed stage, or `record`) kills this process there, as a crash would.
        self.fault_at = os.environ.get("LBCTL_FAULT_AT", "")
        self.armed: tuple[Transport, str, float, float] | None = None  # (transport, event id, seconds, deadline)

    @contextlib.contextmanager
    def nothing_changed_on_interrupt(self) -> Iterator[None]:
        """Ctrl-C before the swap changed nothing, on the LB or in the store: say exactly that.
        (From the swap on, the lifecycle handles it: held off, or recorded as `interrupted`.)"""
        try:
            yield
        except KeyboardInterrupt:
            if self.touched:
                raise
            raise Interrupted(
                f"interrupted before anything changed: {self.target.name} runs what it ran before, "
                "and the store has no new commit",
                hint="run the same command again when ready",
            ) from None

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """The store-side lock; the LB-side one is taken through the transport."""
        return hold_flock(self.ws.lock_dir / f"{self.target.name}.lock", holder_info(self.op, self.target.name))

    def fault(self, where: str) -> None:
        if self.fault_at == where:
            os.kill(os.getpid(), signal.SIGKILL)

    def timed(self, name: str, fn: Callable[[], Any], *, detail: str = "", detail_from_result: bool = False) -> Any:
        self.report(name, "...")
        if self.marker is not None and self.marker.get("stage") != name:
            self._write_marker(stage=name)
        self.fault("before:" + name)
        start = time.perf_counter()
        try:
            result = fn()
            self.fault("after:" + name)
        except BaseException as exc:
            self.stages.append(Stage(name, False, round(time.perf_counter() - start, 4), str(exc)[:500]))
            if isinstance(exc, KeyboardInterrupt):
                self.report(name, "interrupted")
            else:
                self.report(name, f"failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            raise
        text = detail
        ok = not isinstance(result, Verification) or result.ok
        if detail_from_result:
            text = result.summary if isinstance(result, Verification) else str(result)
        seconds = time.perf_counter() - start
        self.stages.append(Stage(name, ok, round(seconds, 4), text))
        self.report(name, f"{'ok' if ok else 'FAILED'} ({seconds * 1000:.0f} ms){': ' + text if text else ''}")
        return result

    def round_reporter(self, number: int, observations: Any) -> None:
        self.report("verify", f"round {number}: " + "; ".join(o.detail for o in observations))

    def begin(
        self, state: TargetState, live_blob: str | None, pushed: Bundle, kind: Kind, place: Placement, rev: str | None
    ) -> None:
        """Keep the in-flight record from now on (`lbctl.recovery`): the LB is about to be written to."""
        self.place = place
        self.marker = {
            "op": self.op,
            "from_rev": state.live,
            "to_rev": rev,
            "from_blob": live_blob,
            "to_blob": pushed.blob(kind),
            "rels": list(pushed.rels),
            "started": self.started,
            "stage": "stage",
            **json.loads(holder_info(self.op, self.target.name)),
        }
        recovery.write(self.ws, self.target.name, self.marker)

    def _write_marker(self, **changes: Any) -> None:
        if self.marker is not None:
            self.marker.update(changes)
            recovery.write(self.ws, self.target.name, self.marker)

    def discard(self, place: Placement) -> None:
        """Remove the staged candidate; if that fails, the record says so for the next operation."""
        self.discarded = True
        try:
            place.discard()
        except Exception:  # must not hide the error being handled
            self.left_staged = True

    @contextlib.contextmanager
    def settled(self) -> Iterator[None]:
        """On the way out: an operation that ended before the swap drops its record (or leaves
        it, marked ended, if staged files may remain); one that swapped keeps it until its
        outcome is in the journal (`record_event`), else the next command recovers it."""
        try:
            yield
        except BaseException:
            if self.place is not None and not self.touched and self.marker is not None and not self.discarded:
                self.discard(self.place)
            raise
        finally:
            if self.marker is not None and not self.touched:
                self.clear_inflight()

    @contextlib.contextmanager
    def inflight(self, to_rev: str, state: TargetState) -> Iterator[None]:
        """From the swap on, the record names the revision going live, for a crash to be recovered."""
        self.touched = True
        self.landed(to_rev, state)
        yield
        # Removed by `record_event` once the outcome is in the journal.

    def landed(self, to_rev: str, state: TargetState) -> None:
        """(Re)write the in-flight record: the revision now going live is `to_rev`."""
        self._write_marker(to_rev=to_rev, from_rev=state.live)

    def untouched(self, state: TargetState, to_rev: str, exc: LbctlError, cleanup: Callable[[], None]) -> NoReturn:
        """The LB refused the change before taking it (a transport's contract for `LbctlError`s
        from swap or reload): record that, leave no commit, and report the refusal."""
        _quietly(cleanup)
        self.disarm()
        self.record_event(state, "refused", to_rev, str(exc))
        raise exc

    def clear_inflight(self) -> None:
        if self.left_staged and not self.touched:  # the outcome is recorded; the files still need a sweep
            self._write_marker(ended=True)
        else:
            recovery.clear(self.ws, self.target.name)
        self.marker = None

    def record_event(
        self,
        state: TargetState,
        verdict: str,
        to_rev: str | None,
        message: str,
        *,
        verification: Verification | None = None,
        blob: str | None = None,
        mark_bad: str | None = None,
        op: str | None = None,
        from_rev: str | None = None,
        diff: str = "",
        live_status: str | None = None,
        event_id: str | None = None,
    ) -> str:
        event = Event(
            id=event_id or new_event_id(),
            op=op or self.op,
            target=self.target.name,
            who=json.loads(holder_info(self.op, self.target.name))["holder"],
            started=self.started,
            finished=timestamp(),
            from_rev=from_rev if op else (state.live or (self.before.rev if self.before else None)),
            to_rev=to_rev,
            verdict=verdict,
            stages=tuple(self.stages),
            checks=tuple(r.to_json() for r in verification.results) if verification else (),
            message=message,
            diff=diff[:20000],
        )
        new_state = state
        if live_status is not None or verdict == "good":
            if state.live is None and not state.history and self.before is not None:
                # What ran before lbctl's first deploy stays reachable: `previous`, `~1`, `@time`.
                new_state = replace(state, history=(self.before,))
            new_state = new_state.moved_to(to_rev, blob, live_status or "good", event.id, event.finished)
        new_state = new_state.marked_bad(mark_bad)
        self.fault("before:record")
        self.ws.journal.append(event, new_state)
        self.fault("after:record")
        self.event_ids.append(event.id)
        self.clear_inflight()
        return event.id

    def outcome(self, verdict: str, code: ExitCode, plan: Plan, message: str, **extra: Any) -> Outcome:
        extra.setdefault("events", tuple(self.event_ids))
        return Outcome(
            op=self.op,
            target=self.target.name,
            verdict=verdict,
            exit_code=code,
            plan=plan,
            message=message,
            stages=tuple(self.stages),
            **extra,
        )

    def interrupted(self, state: TargetState, to_rev: str, blob: str, plan: Plan, *, during: str) -> Outcome:
        with shielded():
            message = (
                f"interrupted during {during}: {self.target.name} runs the NEW config {to_rev[:10]} "
                "(complete, reload confirmed, not verified)"
            )
            self.record_event(state, "interrupted", to_rev, message, blob=blob, live_status="unverified")
        raise Interrupted(message, hint=f"`lbctl rollback {self.target.name}` to go back to last-good")

    def undo(
        self,
        state: TargetState,
        lb: _Lb,
        checks: list[Any],
        previous: Bundle | None,
        bad_rev: str,
        reason: str,
        plan: Plan,
        *,
        verification: Verification | None = None,
    ) -> Outcome:
        """The change hurt: put the previous config back, verify it, then say so in the store.

        The restore comes before any record, so a journal or store problem can never keep a
        bad config live; and what is recorded is what the LB is read back to run.
        """
        target, kind, transport = self.target, lb.kind, lb.transport
        self.report("restore", "the change hurts: restoring the previous config")
        self.disarm()  # lbctl restores it now; its watchdog must not act later
        deploy_stages, self.stages = self.stages, []
        restore_ok: Verification | None = None
        problem = ""
        with shielded():
            if previous is None:
                problem = "there was no config before this deploy, so there is nothing to restore"
            else:
                try:
                    current = lb.read_back()
                    if not previous.same(current, kind):
                        # A reload that never happened (a reload command that did nothing): the LB still
                        # runs the process that loaded the previous config, so putting the file back is all.
                        never_reloaded = lb.before is not None and kind.still_running(transport, lb.before)
                        marker = None
                        if not never_reloaded and target.confirm_reload:
                            marker = self.timed("snapshot", lambda: kind.reload_marker(transport))
                        self.timed("restore", lb.place.restore)
                        if never_reloaded:
                            self.report("reload", "skipped: the LB never reloaded, it still runs the previous config")
                        else:
                            self.timed("reload", lambda: _reload(kind, transport, marker), detail_from_result=True)
                    else:
                        self.report("restore", "the LB still has the previous config: nothing to put back")
                    for check in checks:
                        check.restart()
                    window = min(target.verify_seconds, 2.0)
                    restore_ok = self.timed(
                        "verify restore",
                        lambda: verify(checks, window=window, interval=target.check_interval),
                        detail_from_result=True,
                    )
                except Exception as exc:  # report it and page a human, never a traceback
                    problem = str(exc) or type(exc).__name__
            running = lb.read_back()
            restored = previous is not None and previous.same(running, kind)
            healthy = restored and restore_ok is not None and restore_ok.ok
            restore_stages, self.stages = self.stages, deploy_stages
            failed_event = self.record_event(
                state,
                "failed",
                bad_rev,
                reason,
                verification=verification,
                mark_bad=bad_rev,
                live_status="failed",
                diff=plan.diff,
            )
            self.stages = restore_stages
            state = self.ws.journal.state(target.name)
            if restored and previous is not None:
                live_rev = self._forward_commit(kind, previous, bad_rev, plan.from_rev, reason)
                why = restore_ok.summary if restore_ok is not None else problem
                message = f"{target.name}: {reason.rstrip('.')}. Restored {live_rev[:10]} " + (
                    "(healthy)" if healthy else f"(NOT healthy: {why})"
                )
            else:
                live_rev = bad_rev  # the store must not claim a restore that did not happen
                message = (
                    f"{target.name}: {reason}. The restore did not take: {problem or 'the LB runs another config'}"
                )
            blob = running.blob(kind) if running is not None else None
            restored_verdict = ("good" if target.confirm_reload else "unconfirmed") if healthy else "restore-failed"
            self.record_event(
                state,
                restored_verdict,
                live_rev,
                message,
                op="auto-rollback",
                from_rev=bad_rev,
                verification=restore_ok,
                blob=blob,
                live_status="failed" if restored_verdict == "restore-failed" else restored_verdict,
            )
        events = (failed_event, *self.event_ids[-1:])
        extra: dict[str, Any] = {
            "to_rev": bad_rev,
            "restored_rev": live_rev if restored else None,
            "verification": verification,
            "restore_verification": restore_ok,
            "events": events,
        }
        if healthy:
            return self.outcome("rolled-back", ExitCode.ROLLED_BACK, plan, message, **extra)
        return self.outcome("restore-failed", ExitCode.ROLLBACK_FAILED, plan, message + ": page a human", **extra)

    def arm(
        self,
        kind: Kind,
        transport: Transport,
        seconds: float,
        state: TargetState,
        live: Bundle,
        pushed: Bundle,
        to_rev: str,
    ) -> str:
        """Start the commit-confirm watchdog on the LB host (`lbctl.watchdog`), before the reload."""
        from lbctl import watchdog

        event_id = new_event_id()
        meta = {
            "target": self.target.name,
            "op": self.op,
            "who": json.loads(holder_info(self.op, self.target.name))["holder"],
            "from_rev": state.live or (self.before.rev if self.before else None),
            "from_blob": live.blob(kind),
            "from_status": state.status if state.live else "good",
            "to_rev": to_rev,
        }
        deadline = watchdog.arm(
            transport, kind, event_id=event_id, seconds=seconds, previous=live.main, new=pushed.main, meta=meta
        )
        self.armed = (transport, event_id, seconds, deadline)
        self._write_marker(watchdog=event_id)  # a crash from here on: the watchdog's result explains it
        return f"reverts at {_clock(deadline)} unless confirmed"

    def disarm(self) -> None:
        if self.armed is not None:
            from lbctl import watchdog

            transport, event_id = self.armed[0], self.armed[1]
            _quietly(lambda: watchdog.disarm(transport, self.target, event_id))
            self.armed = None

    def pending_confirm(
        self,
        state: TargetState,
        to_rev: str,
        blob: str,
        plan: Plan,
        verification: Verification,
        rollback_of: str | None,
    ) -> Outcome:
        """Verified, but the change stays pending until `lbctl confirm`: the watchdog's window starts now."""
        from lbctl import watchdog

        assert self.armed is not None
        transport, event_id, seconds, deadline = self.armed
        moved = _quietly_value(lambda: watchdog.extend(transport, self.target, event_id, seconds))
        deadline = moved or deadline
        name = self.target.name
        message = (
            f"{name} runs {to_rev[:10]}, verified ({verification.summary}), PENDING CONFIRMATION: the LB reverts "
            f"it at {_clock(deadline)} unless `lbctl confirm {name}` (or `lbctl confirm {name} {event_id}`)"
        )
        with shielded():
            event = self.record_event(
                state,
                "pending-confirm",
                to_rev,
                message,
                verification=verification,
                blob=blob,
                diff=plan.diff,
                mark_bad=rollback_of,
                live_status="pending-confirm",
                event_id=event_id,
            )
        return self.outcome(
            "pending-confirm", ExitCode.OK, plan, message, to_rev=to_rev, verification=verification, events=(event,)
        )

    def _forward_commit(self, kind: Kind, previous: Bundle, bad_rev: str, restores: str | None, reason: str) -> str:
        """Make the store say what is live again: a new commit with the restored content.

        The content is the restored revision's own files from the store when they are what the
        LB runs (a Caddyfile stays a Caddyfile), else the bytes read back from the LB.
        """
        store, target = self.ws.store, self.target
        stored = bundle_at(store, kind, target, restores) if restores else None
        if stored is not None and previous.same(stored.with_main(kind.prepare(stored.main)), kind):
            previous = stored
        head = revision_of(store, kind, target)
        if head is not None and bundle_at(store, kind, target, "HEAD") == previous:
            return head
        trailers = {
            "Lbctl-Target": target.name,
            "Lbctl-Rollback-Of": bad_rev,
            "Lbctl-Restores": restores or "the config live before " + bad_rev[:10],
            "Lbctl-Reason": reason.splitlines()[0][:200],
        }
        message = f"Roll back {target.name}: {bad_rev[:10]} failed verification"
        return store.commit_files(store_changes(store, kind, target, previous), message, trailers)


def rollback_candidate(
    ws: Workspace, target: Target, state: TargetState, rev: str, why: str, message: str | None
) -> Candidate:
    """A forward change restoring `rev`'s files for `target` (committed only if it validates)."""
    from lbctl.errors import UsageError

    kind = kind_for(target)
    bundle = bundle_at(ws.store, kind, target, rev)
    if bundle is None:
        raise UsageError(f"revision {rev[:10]} has no {target.source} for {target.name}")
    if rev == state.live and state.status == "good":
        return Candidate(bundle=bundle, rev=rev, label=f"{rev[:10]} ({why})")
    rollback_of = state.live if state.live and state.live != rev else None
    if bundle_at(ws.store, kind, target, "HEAD") == bundle:  # git log only when it can matter
        head_rev = revision_of(ws.store, kind, target)
        if head_rev is not None:
            return Candidate(bundle=bundle, rev=head_rev, label=f"{rev[:10]} ({why})", rollback_of=rollback_of)
    trailers = {"Lbctl-Target": target.name, "Lbctl-Rollback-Of": rollback_of or "", "Lbctl-Restores": rev}
    return Candidate(
        bundle=bundle,
        rev=None,
        message=message or f"Roll back {target.name} to {rev[:10]} ({why})",
        trailers=trailers,
        label=f"{rev[:10]} ({why})",
        rollback_of=rollback_of,
    )
