"""One operation's bookkeeping, and the value it ends with.

`Run` keeps what an operation records as it goes: its stages and their timings (`timed`), the
in-flight record a crash is recovered from (`lbctl.engine.recovery`), the commit-confirm watchdog
it armed, and the events it recorded (through `lbctl.engine.record`). `Outcome` is what a deploy
or rollback returns, whatever happened after the plan. `shielded` holds SIGINT and SIGTERM off
while the LB is between two states.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from lbctl.engine import recovery
from lbctl.engine.record import record
from lbctl.engine.verify import Verification
from lbctl.errors import ExitCode, Interrupted, LbctlError
from lbctl.lock import hold_flock, holder_info
from lbctl.store.journal import Event, LiveEntry, Stage, TargetState, new_event_id, timestamp

if TYPE_CHECKING:
    from lbctl.checks.base import Observation
    from lbctl.config import Target
    from lbctl.drivers.placement import Placement
    from lbctl.engine.plan import Plan
    from lbctl.kinds.base import Kind
    from lbctl.store.bundle import Bundle
    from lbctl.store.workspace import Workspace
    from lbctl.transports.base import Transport

T = TypeVar("T")
Reporter = Callable[[str, str], None]  # (stage, message): progress for a human, never parsed


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


class Run:
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

    def timed(self, name: str, fn: Callable[[], T], *, detail: str = "", detail_from_result: bool = False) -> T:
        """Run one stage: reported, written to the in-flight record, timed into the event's stages, and
        where `LBCTL_FAULT_AT` kills the process. A `Verification` result says whether the stage passed;
        `detail_from_result` puts the result (its summary, or its text) beside the stage."""
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

    def round_reporter(self, number: int, observations: Sequence[Observation]) -> None:
        self.report("verify", f"round {number}: " + "; ".join(o.detail for o in observations))

    def begin(
        self, state: TargetState, live_blob: str | None, pushed: Bundle, kind: Kind, place: Placement, rev: str | None
    ) -> None:
        """Keep the in-flight record from now on (`lbctl.engine.recovery`): the LB is about to be written to."""
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
        record(self.ws.journal, event, new_state)
        self.fault("after:record")
        self.event_ids.append(event.id)
        self.clear_inflight()
        return event.id

    def outcome(
        self,
        verdict: str,
        code: ExitCode,
        plan: Plan,
        message: str,
        *,
        to_rev: str | None = None,
        restored_rev: str | None = None,
        verification: Verification | None = None,
        restore_verification: Verification | None = None,
        events: tuple[str, ...] | None = None,
    ) -> Outcome:
        """The operation's result, with its stages and (unless said) every event it recorded."""
        return Outcome(
            op=self.op,
            target=self.target.name,
            verdict=verdict,
            exit_code=code,
            plan=plan,
            message=message,
            to_rev=to_rev,
            restored_rev=restored_rev,
            stages=tuple(self.stages),
            verification=verification,
            restore_verification=restore_verification,
            events=tuple(self.event_ids) if events is None else events,
        )

    def interrupted(self, state: TargetState, to_rev: str, blob: str, plan: Plan, *, during: str) -> Outcome:
        with shielded():
            message = (
                f"interrupted during {during}: {self.target.name} runs the NEW config {to_rev[:10]} "
                "(complete, reload confirmed, not verified)"
            )
            self.record_event(state, "interrupted", to_rev, message, blob=blob, live_status="unverified")
        raise Interrupted(message, hint=f"`lbctl rollback {self.target.name}` to go back to last-good")

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
        """Start the commit-confirm watchdog on the LB host (`lbctl.drivers.watchdog`), before the reload."""
        from lbctl.drivers import watchdog

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
            from lbctl.drivers import watchdog

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
        from lbctl.drivers import watchdog

        assert self.armed is not None
        transport, event_id, seconds, deadline = self.armed
        moved = quietly_value(lambda: watchdog.extend(transport, self.target, event_id, seconds))
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


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch)) + " UTC"


def quietly_value(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except Exception:  # best effort: the caller has a fallback
        return None


def _quietly(fn: Callable[[], object]) -> None:
    """Best-effort cleanup that must not hide the error being handled."""
    with contextlib.suppress(Exception):
        fn()
