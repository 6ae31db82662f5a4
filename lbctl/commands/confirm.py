"""`lbctl confirm`: disarm the watchdog of a pending change (`confirmed`, the revision is good) or move
its deadline (`--extend`). What the watchdogs did on their own is settled by `lbctl.engine.watchdogs`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from lbctl.drivers import watchdog
from lbctl.engine.record import record
from lbctl.errors import ExitCode, UsageError
from lbctl.lock import holder_info
from lbctl.store.journal import Event, new_event_id, timestamp

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.drivers.watchdog import Watch
    from lbctl.store.workspace import Workspace
    from lbctl.transports.base import Transport

from lbctl.clock import at_second
from lbctl.engine.watchdogs import settle


@dataclass(frozen=True)
class Confirmed:
    target: str
    verdict: str  # confirmed | extended | reverted | nothing-pending
    exit_code: ExitCode
    message: str
    event_id: str | None = None
    deadline: float | None = None
    recorded: tuple[str, ...] = ()

    @property
    def hint(self) -> str | None:
        """What to do next when nothing was confirmed."""
        if self.verdict == "nothing-pending":
            return (
                f"`lbctl status {self.target}` shows what is live; only a change deployed with"
                " --confirm-within waits for `lbctl confirm`"
            )
        if self.verdict == "reverted":
            return (
                f"the previous config is back: `lbctl status {self.target}` and `lbctl log {self.target}`"
                " show it; deploy the change again to retry it"
            )
        return None

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "target": self.target,
            "verdict": self.verdict,
            "exit_code": int(self.exit_code),
            "message": self.message,
            "event_id": self.event_id,
            "deadline": at_second(self.deadline) if self.deadline else None,
            "recorded": list(self.recorded),
        }
        if self.exit_code != ExitCode.OK:
            data["error"] = {
                "code": int(self.exit_code),
                "type": self.verdict,
                "message": self.message,
                "hint": self.hint,
            }
        return data


def confirm(
    ws: Workspace,
    name: str,
    event_id: str | None = None,
    *,
    extend: float | None = None,
    connection: Transport | None = None,
) -> Confirmed:
    """Disarm the watchdog of the pending change on `name` (or move its deadline with `extend`);
    `connection`: an open transport to the target to use (and leave open), e.g. a fleet rollout's."""
    import contextlib

    from lbctl.transports import transport_for

    target = ws.target(name)
    if target.transport == "http" or not target.path:
        raise UsageError(f"{name}: nothing to confirm: no watchdog is ever armed on this target")
    with contextlib.nullcontext(connection) if connection is not None else transport_for(target) as transport:
        pending, said = settle(ws, target, transport)
        if not pending and not said and any(w.fired for w in watchdog.scan(transport, target)):
            said = _wait_for_result(ws, target, transport)  # a watchdog at work right now: hear how it ends
        reverted = [s for s in said if event_id is None or event_id in s]
        chosen = [w for w in pending if event_id is None or w.event_id == event_id]
        if not chosen:
            if any(s.startswith("watchdog-") for s in reverted):
                return Confirmed(name, "reverted", ExitCode(1), "too late: " + reverted[-1], recorded=tuple(said))
            late = _already_reverted(ws, name, event_id)
            if late is not None:
                return Confirmed(name, "reverted", ExitCode(1), f"too late: {late}", recorded=tuple(said))
            none = f"{name}: no change is pending confirmation"
            return Confirmed(name, "nothing-pending", ExitCode.USAGE, none, recorded=tuple(said))
        watch = chosen[-1]
        if extend is not None:
            deadline = watchdog.extend(transport, target, watch.event_id, extend)
            if deadline is not None:
                return Confirmed(
                    name,
                    "extended",
                    ExitCode.OK,
                    f"{name}: the deadline of {watch.event_id} is now {at_second(deadline)}",
                    event_id=watch.event_id,
                    deadline=deadline,
                    recorded=tuple(said),
                )
        elif watchdog.disarm(transport, target, watch.event_id) == "disarmed":
            return _confirmed(ws, target, watch, tuple(said))
        # It fired meanwhile: wait (bounded) for its result and record it.
        fired = _wait_for_result(ws, target, transport)
        if fired:
            return Confirmed(name, "reverted", ExitCode(1), "too late: " + fired[-1], recorded=(*said, *fired))
        return Confirmed(name, "reverted", ExitCode(1), f"too late: the watchdog of {watch.event_id} fired")


def _wait_for_result(ws: Workspace, target: Target, transport: Transport) -> list[str]:
    """A watchdog that fired writes its result within its bounded reload wait (10 s): record it."""
    for _ in range(150):
        time.sleep(0.1)
        _, fired = settle(ws, target, transport)
        if fired:
            return fired
    return []


def _already_reverted(ws: Workspace, name: str, event_id: str | None) -> str | None:
    """What a watchdog did, as recorded: to the change `event_id`, or (None) as the target's newest event."""
    for n, event in enumerate(ws.journal.events(name)):
        if n > 50 or (event_id is None and n > 0):
            break
        mine = event_id is None or f"[watchdog {event_id}]" in event.message
        if event.op == "watchdog" and mine and event.verdict != "superseded":
            return f"{event.verdict} at {event.finished}: {event.message}"
    return None


def _confirmed(ws: Workspace, target: Target, watch: Watch, said: tuple[str, ...]) -> Confirmed:
    state = ws.journal.state(target.name)
    rev = state.live if state.last_event == watch.event_id else watch.meta.get("to_rev")
    who = json.loads(holder_info("confirm", target.name))["holder"]
    event = Event(
        id=new_event_id(),
        op="confirm",
        target=target.name,
        who=who,
        started=timestamp(),
        finished=timestamp(),
        from_rev=rev,
        to_rev=rev,
        verdict="confirmed",
        message=f"confirmed {str(rev)[:10]} (event {watch.event_id}) before its deadline {at_second(watch.deadline)}",
    )
    new_state = state
    if state.status == "pending-confirm" and state.live == rev:
        new_state = state.moved_to(rev, state.live_blob, "good", event.id, event.finished)
    record(ws.journal, event, replace(new_state))
    return Confirmed(
        target.name,
        "confirmed",
        ExitCode.OK,
        f"{target.name}: {str(rev)[:10]} confirmed; the watchdog is disarmed",
        event_id=watch.event_id,
        recorded=said,
    )
