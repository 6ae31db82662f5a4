"""The deploy lifecycle (PRODUCT.md §5), as one function over a plan that reads top to bottom.

lock → plan → stage → validate → commit → swap → reload → confirm → verify → record,
or, once the LB has changed: restore → reload → confirm → verify → forward commit → record
(`lbctl.engine.restore`).

`execute` puts live a plan computed beforehand without a lock (`lbctl.engine.plan.plan_change`),
once it has checked under the locks that the LB still runs what the plan was computed from;
`apply_change` (deploy, rollback) computes its plan under the locks. Both then run `_lifecycle`.

The load balancer always runs a complete config: the candidate is written beside the
live file and renamed over it only after native validation, and the previous file is
kept (hard link) so a restore is one rename too. A config that includes other store
files is a bundle (`lbctl.store.bundle`) staged, swapped and restored as one tree
(`lbctl.drivers.placement`), with one validation and one reload. SIGINT is held off while the LB is
between two states (swap+reload, restore, record) and honoured between stages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace

from lbctl import preload, retry
from lbctl.checks import checks_for
from lbctl.checks import modules_for as check_modules
from lbctl.config import Target
from lbctl.drivers import driver_for
from lbctl.drivers.base import Driver
from lbctl.engine import recovery
from lbctl.engine.plan import Candidate as Candidate
from lbctl.engine.plan import Plan, basis_of, enforce, plan_on, refuse, still_current
from lbctl.engine.restore import Lb, undo
from lbctl.engine.run import Outcome as Outcome
from lbctl.engine.run import Reporter as Reporter
from lbctl.engine.run import Run, quietly_value, shielded
from lbctl.engine.verify import verify
from lbctl.errors import (
    ExitCode,
    Refused,
    TransientError,
    Unreachable,
    ValidationFailed,
)
from lbctl.kinds import kind_for
from lbctl.kinds.base import Kind
from lbctl.kinds.conformance import require_origin, settled
from lbctl.lock import holder_info
from lbctl.lock import lb_lock_path as lb_lock_path  # where it lived first: commands/pull.py imports it from here
from lbctl.store.bundle import Bundle, bundle_at, revision_of, store_changes
from lbctl.store.journal import TargetState
from lbctl.store.workspace import Workspace
from lbctl.transports.base import Transport


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
    held_by: str | None = None,
    connection: Transport | None = None,
) -> Outcome:
    """Put `candidate` live on `target` with verification; undo it if it hurts.

    The plan is computed under the locks (`lbctl.engine.plan.plan_on`) and judged first: policy,
    blast radius, staging-first, drift and a reviewed checksum; what is refused leaves no commit
    and touches nothing on the LB. An earlier operation that was interrupted is recorded first
    (`lbctl.engine.recovery`); then `rechoose`, if given, picks the candidate again from the state
    as it is now. With `confirm_within` seconds (default: the target's `confirm_within`), a watchdog
    armed on the LB host before the reload reverts the change unless `lbctl confirm` comes in time
    (`lbctl.drivers.watchdog`). `held_by` (the holder line a caller wrote into them) says the caller already
    holds this target's store and LB locks for a longer operation (a fleet rollout, `lbctl.fleet`): they
    are not taken again; with `connection`, its open transport to the target is used (and left open).
    """
    driver = driver_for(target, connection)  # the kind and the transport, once for the whole operation
    kind, transport = driver.kind, driver.transport
    run = Run(ws, target, op, report)
    seconds = target.confirm_within if confirm_within is None else confirm_within
    with _locked(run, driver, held=held_by is not None, opened=connection is not None):
        if _recover(ws, target, transport) and rechoose is not None:
            candidate = rechoose(ws.journal.state(target.name))
        state = _ready(run, kind, transport, seconds)
        if candidate.rollback_of is not None and candidate.rollback_of != state.live:
            # Another operation finished between the caller's read and our lock: undo what is live now.
            candidate = replace(candidate, rollback_of=state.live)
        plan = plan_on(ws, target, kind, transport, state, candidate, op=op, explain=explain, timed=run.timed)
        return _lifecycle(
            run,
            driver,
            state,
            plan,
            seconds,
            confirm=confirm,
            dry_run=dry_run,
            force=force,
            reason=reason,
            expected_checksum=expected_checksum,
        )


def execute(
    ws: Workspace,
    target: Target,
    plan: Plan,
    *,
    confirm: Callable[[Plan], bool] = lambda plan: True,
    dry_run: bool = False,
    force: bool = False,
    reason: str | None = None,
    expected_checksum: str | None = None,
    report: Reporter = lambda stage, message: None,
    confirm_within: float | None = None,
) -> Outcome:
    """Put live a plan computed beforehand (`lbctl.engine.plan.plan_change`), as `apply_change` does.

    Under the locks, the LB's files are read again: if they, the journal's live revision or the
    rules judging the plan moved since it was computed, the plan is refused as stale (exit 4) and
    nothing is changed. The plan's gates are judged as `apply_change` judges its own.
    """
    driver = driver_for(target)
    kind, transport = driver.kind, driver.transport
    run = Run(ws, target, plan.op, report)
    seconds = target.confirm_within if confirm_within is None else confirm_within
    basis = basis_of(plan)
    with _locked(run, driver):
        _recover(ws, target, transport)
        state = _ready(run, kind, transport, seconds)
        live = run.timed("read live", lambda: driver.running(basis.managed))
        plan = still_current(plan, ws, target, kind, state, live)
        return _lifecycle(
            run,
            driver,
            state,
            plan,
            seconds,
            confirm=confirm,
            dry_run=dry_run,
            force=force,
            reason=reason,
            expected_checksum=expected_checksum,
        )


@contextlib.contextmanager
def _locked(run: Run, driver: Driver, *, held: bool = False, opened: bool = False) -> Iterator[None]:
    """The store-side lock, a connection to the LB and its LB-side lock, for one operation; a Ctrl-C
    before the swap says nothing changed, and an operation that ended before the swap leaves no record."""
    target = run.target
    with (
        run.nothing_changed_on_interrupt(),
        contextlib.nullcontext() if held else run.locked(),
        contextlib.nullcontext() if opened else driver,
        contextlib.nullcontext() if held else lb_lock(run.ws, driver.transport, target, run.op, driver.kind),
        run.settled(),
    ):
        yield


def _ready(run: Run, kind: Kind, transport: Transport, seconds: float) -> TargetState:
    """Under the locks, before planning: what watchdogs did, a lock taken over, the LB's endpoints and
    the file it reads (refused, exit 2, before anything else); returns the target's state as it is now."""
    ws, target, op, report = run.ws, run.target, run.op, run.report
    if seconds > 0:
        _can_arm(target, None)
    if target.transport != "http" and (seconds > 0 or ws.journal.state(target.name).status == "pending-confirm"):
        _settle_watchdogs(ws, target, transport, report)  # what a watchdog did while nobody watched
    taken = getattr(transport, "took_over", None)
    if taken:  # the LB lock of an lbctl that died on this machine: say who broke it
        from lbctl.engine.record import unlocked as record_unlocked

        report("lock", f"took over the lock on {transport.where} of {taken}, whose process is gone")
        record_unlocked(
            ws, target.name, f"{op} took over the lock on {transport.where} of {taken}, whose process is gone"
        )
    _check_endpoints(kind, transport, target)
    # The file lbctl changes must be the one the LB reads: refused (exit 2) before anything else.
    run.timed("path", lambda: require_origin(kind, transport, target), detail_from_result=True)
    return ws.journal.state(target.name)


def _lifecycle(
    run: Run,
    driver: Driver,
    state: TargetState,
    plan: Plan,
    seconds: float,
    *,
    confirm: Callable[[Plan], bool],
    dry_run: bool,
    force: bool,
    reason: str | None,
    expected_checksum: str | None,
) -> Outcome:
    """The lifecycle of a plan, under the locks: judge → confirm → stage → validate → commit → swap →
    reload → confirm → verify → record, or from the swap on: `lbctl.engine.restore.undo`."""
    ws, target, report = run.ws, run.target, run.report
    kind, transport = driver.kind, driver.transport
    basis = basis_of(plan)
    candidate, live, pushed = basis.candidate, basis.live, basis.pushed
    left_live, managed = basis.left_live, basis.managed
    run.before = basis.before
    at_live = plan.unchanged and state.status == "good" and candidate.rev is not None and candidate.rev == state.live
    if at_live and not force:
        # "Nothing to do" only when nothing is wrong: the LB runs it, and (a rollback) it is healthy.
        wrong = run.timed("recheck", lambda: _what_is_wrong(kind, transport, target, pushed, run.op == "rollback"))
        if not wrong:
            return run.outcome("unchanged", ExitCode.OK, plan, f"{target.name} already runs this config; nothing to do")
        report("recheck", f"pushing it again: {wrong}")
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

    place = driver.placement(pushed, left_live)
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
            lambda: driver.validate(staged),
            detail=f"native check on {transport.where}",
        )
        # Everything that reads the LB before the swap, while a failure still changes nothing.
        checks = checks_for(target, transport)
        for check in checks:
            check.baseline()
        marker = run.timed("snapshot", driver.snapshot) if target.confirm_reload else None
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
    lb = Lb(driver, place, lambda: driver.read_back(managed), marker)
    with shielded() as interrupted, run.inflight(to_rev, state):
        try:
            run.timed("swap", place.swap)
        except Exception as exc:  # whatever happened, undo() reads back what the LB has
            return undo(run, state, lb, checks, live, to_rev, f"swap failed: {exc}", plan)
        try:
            run.timed("reload", lambda: driver.reload(marker), detail_from_result=True)
        except Refused as exc:
            # A transport's contract: Refused from reload means the LB did not take the change.
            run.untouched(state, to_rev, exc, lambda: None)
        except Exception as exc:  # the file is swapped: any failure goes through the restore
            return undo(run, state, lb, checks, live, to_rev, f"reload failed: {exc}", plan)
        if pending is not None:
            to_rev = run.timed("land commit", lambda: ws.store.land(pending))
            run.landed(to_rev, state)
    if interrupted():
        return run.interrupted(state, to_rev, pushed.blob(kind), plan, during="the reload")
    conformance = run.timed("conform", lambda: settled(kind, transport, pushed), detail_from_result=True)
    if conformance.differences:
        reason = "the LB does not run the pushed config: " + "; ".join(conformance.differences)
        return undo(run, state, lb, checks, live, to_rev, reason, plan)

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
        return undo(run, state, lb, checks, live, to_rev, verification.summary, plan, verification=verification)
    if run.armed is not None:
        return run.pending_confirm(state, to_rev, pushed.blob(kind), plan, verification, candidate.rollback_of)
    if state.status == "pending-confirm" and target.transport != "http":
        _supersede_watchdogs(ws, target, transport, to_rev, run.op, report)  # what they guard is gone
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
def lb_lock(ws: Workspace, transport: Transport, target: Target, op: str, kind: Kind) -> Iterator[None]:
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


def _can_arm(target: Target, pushed: Bundle | None, live: Bundle | None = None) -> None:
    """Refuse `--confirm-within` (exit 2, before anything changes) where no watchdog can be armed."""
    from lbctl.drivers.watchdog import refusal
    from lbctl.errors import CannotArm

    why = refusal(target, pushed is not None and len(pushed.rels) > 0)
    if why is None and pushed is not None and live is None:
        why = f"{target.name}: --confirm-within needs a config on the LB to go back to"
    if why:
        raise CannotArm(why, hint='deploy without --confirm-within (or with confirm_within = "0" for this target)')


def _settle_watchdogs(ws: Workspace, target: Target, transport: Transport, report: Reporter) -> None:
    """Record what commit-confirm watchdogs did on the LB host while no lbctl watched (`lbctl.engine.watchdogs`)."""
    from lbctl.engine.watchdogs import settle

    try:
        _, said = settle(ws, target, transport)
    except TransientError as exc:
        raise Unreachable(f"{target.name}: could not read its watchdogs: {exc}") from None
    for line in said:
        report("watchdog", line)


def _supersede_watchdogs(
    ws: Workspace, target: Target, transport: Transport, rev: str, op: str, report: Reporter
) -> None:
    """Disarm the watchdogs of the pending changes this one replaced for good (`lbctl.engine.watchdogs`)."""
    from lbctl.engine.watchdogs import supersede

    with shielded():
        for line in quietly_value(lambda: supersede(ws, target, transport, rev, op)) or []:
            report("watchdog", line)


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
