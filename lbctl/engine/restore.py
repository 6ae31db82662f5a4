"""The way back: a change that hurt is undone, and the store made to say so.

`undo` puts the previous config back on the LB (restore, reload, confirm), verifies it, and only
then records the failed change and the restore, so a journal or store problem can never keep a
bad config live; `forward_commit` makes the store's branch name what the LB runs again (a new
commit with the restored content, never a rewrite of history). `reload` is the one reload of the
lifecycle, forward or back: the kind's reload, confirmed unless the target says not to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lbctl.engine.run import Outcome, Run, shielded
from lbctl.engine.verify import Verification, verify
from lbctl.errors import ExitCode
from lbctl.store.bundle import Bundle, bundle_at, revision_of, store_changes

if TYPE_CHECKING:
    from lbctl.checks.base import HealthCheck
    from lbctl.config import Target
    from lbctl.drivers.base import Driver
    from lbctl.drivers.placement import Placement
    from lbctl.engine.plan import Plan
    from lbctl.kinds.base import Kind
    from lbctl.store.journal import TargetState
    from lbctl.store.workspace import Workspace
    from lbctl.transports.base import Transport


@dataclass(frozen=True)
class Lb:
    """What a restore works with: the target's driver, how the candidate was placed, and
    how to read back what the LB's files hold now."""

    driver: Driver
    place: Placement
    read_back: Callable[[], Bundle | None]
    before: object = None  # the LB's process state before the swap (`Driver.snapshot`)

    @property
    def kind(self) -> Kind:
        return self.driver.kind

    @property
    def transport(self) -> Transport:
        return self.driver.transport


def undo(
    run: Run,
    state: TargetState,
    lb: Lb,
    checks: Sequence[HealthCheck],
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
    target, kind = run.target, lb.kind
    run.report("restore", "the change hurts: restoring the previous config")
    run.disarm()  # lbctl restores it now; its watchdog must not act later
    deploy_stages, run.stages = run.stages, []
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
                    never_reloaded = lb.before is not None and lb.driver.still_running(lb.before)
                    marker = None
                    if not never_reloaded and target.confirm_reload:
                        marker = run.timed("snapshot", lb.driver.snapshot)
                    run.timed("restore", lb.place.restore)
                    if never_reloaded:
                        run.report("reload", "skipped: the LB never reloaded, it still runs the previous config")
                    else:
                        run.timed("reload", lambda: lb.driver.reload(marker), detail_from_result=True)
                else:
                    run.report("restore", "the LB still has the previous config: nothing to put back")
                for check in checks:
                    check.restart()
                window = min(target.verify_seconds, 2.0)
                restore_ok = run.timed(
                    "verify restore",
                    lambda: verify(checks, window=window, interval=target.check_interval),
                    detail_from_result=True,
                )
            except Exception as exc:  # report it and page a human, never a traceback
                problem = str(exc) or type(exc).__name__
        running = lb.read_back()
        restored = previous is not None and previous.same(running, kind)
        healthy = restored and restore_ok is not None and restore_ok.ok
        restore_stages, run.stages = run.stages, deploy_stages
        failed_event = run.record_event(
            state,
            "failed",
            bad_rev,
            reason,
            verification=verification,
            mark_bad=bad_rev,
            live_status="failed",
            diff=plan.diff,
        )
        run.stages = restore_stages
        state = run.ws.journal.state(target.name)
        if restored and previous is not None:
            live_rev = forward_commit(run.ws, target, kind, previous, bad_rev, plan.from_rev, reason)
            why = restore_ok.summary if restore_ok is not None else problem
            message = f"{target.name}: {reason.rstrip('.')}. Restored {live_rev[:10]} " + (
                "(healthy)" if healthy else f"(NOT healthy: {why})"
            )
        else:
            live_rev = bad_rev  # the store must not claim a restore that did not happen
            message = f"{target.name}: {reason}. The restore did not take: {problem or 'the LB runs another config'}"
        blob = running.blob(kind) if running is not None else None
        restored_verdict = ("good" if target.confirm_reload else "unconfirmed") if healthy else "restore-failed"
        run.record_event(
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
    events = (failed_event, *run.event_ids[-1:])
    verdict, code = ("rolled-back", ExitCode.ROLLED_BACK) if healthy else ("restore-failed", ExitCode.ROLLBACK_FAILED)
    return run.outcome(
        verdict,
        code,
        plan,
        message if healthy else message + ": page a human",
        to_rev=bad_rev,
        restored_rev=live_rev if restored else None,
        verification=verification,
        restore_verification=restore_ok,
        events=events,
    )


def forward_commit(
    ws: Workspace, target: Target, kind: Kind, previous: Bundle, bad_rev: str, restores: str | None, reason: str
) -> str:
    """Make the store say what is live again: a new commit with the restored content.

    The content is the restored revision's own files from the store when they are what the
    LB runs (a Caddyfile stays a Caddyfile), else the bytes read back from the LB.
    """
    store = ws.store
    stored = bundle_at(store, kind, target, restores) if restores else None
    if stored is not None and previous.same(stored.with_main(kind.prepare(stored.main)), kind):
        previous = stored
    head = revision_of(store, kind, target)
    if head is not None and bundle_at(store, kind, target, "HEAD") == previous:
        return head
    trailers = rollback_trailers(target, bad_rev, restores or "the config live before " + bad_rev[:10], reason)
    message = f"Roll back {target.name}: {bad_rev[:10]} failed verification"
    return store.commit_files(store_changes(store, kind, target, previous), message, trailers)


def rollback_trailers(target: Target, bad_rev: str, restores: str, reason: str) -> dict[str, str]:
    """The trailers of a forward commit putting `restores` back after `bad_rev` failed: lbctl's own
    restore, or a commit-confirm watchdog's revert recorded afterwards (`lbctl.engine.watchdogs`)."""
    return {
        "Lbctl-Target": target.name,
        "Lbctl-Rollback-Of": bad_rev,
        "Lbctl-Restores": restores,
        "Lbctl-Reason": reason.splitlines()[0][:200],
    }
