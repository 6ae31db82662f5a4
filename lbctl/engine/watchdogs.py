"""What the commit-confirm watchdogs on a LB host did, recorded in the journal.

A change deployed with `--confirm-within` is recorded `pending-confirm` (`lbctl.engine.execute`) and a
watchdog waits on the LB host (`lbctl.drivers.watchdog`). Any command that reaches the target calls `settle`
first: a watchdog that fired while nobody watched becomes a `watchdog-reverted`, `superseded`,
`watchdog-reload-failed` or `watchdog-revert-failed` event, and the target's state says what runs.
A change that lands for good over a pending one (a rollback, a deploy without `--confirm-within`)
disarms the older watchdogs (`supersede`): what they guard is no longer live. `lbctl confirm`
(`lbctl.commands.confirm`) disarms one or moves its deadline.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lbctl.clock import at_second
from lbctl.drivers import watchdog
from lbctl.engine.record import record
from lbctl.errors import LbctlError
from lbctl.lock import holder_info
from lbctl.store.journal import Event, new_event_id, timestamp

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.drivers.watchdog import Watch
    from lbctl.store.workspace import Workspace
    from lbctl.transports.base import Transport

VERDICTS = {
    "reverted": "watchdog-reverted",
    "superseded": "superseded",
    "reload-failed": "watchdog-reload-failed",
    "revert-failed": "watchdog-revert-failed",
}
PAGE = "page a human"


def settle(ws: Workspace, target: Target, transport: Transport) -> tuple[list[Watch], list[str]]:
    """Record every watchdog of `target` that fired; return (those still pending, lines about the fired)."""
    pending, said = [], []
    for watch in watchdog.scan(transport, target):
        if watch.pending:
            pending.append(watch)
            continue
        if not watch.result:  # fired/ taken, no result yet: the watchdog is at work, or a confirm is
            continue
        said.append(_record(ws, target, watch))
        watchdog.forget(transport, target, watch.event_id)
    return pending, said


def supersede(ws: Workspace, target: Target, transport: Transport, by: str, op: str) -> list[str]:
    """Disarm the watchdogs still pending on `target` once a change (`op` of revision `by`) is live and
    final: the changes they guard are no longer live, so they have nothing left to revert. Each is
    recorded as `superseded`; one that fired meanwhile is left for `settle` to record."""
    said = []
    for watch in watchdog.scan(transport, target):
        if not watch.pending or watchdog.disarm(transport, target, watch.event_id) != "disarmed":
            continue
        state = ws.journal.state(target.name)
        message = (
            f"{op} of {by[:10]} replaced {str(watch.meta.get('to_rev'))[:10]} before its deadline "
            f"({at_second(watch.deadline)}): its watchdog is disarmed [watchdog {watch.event_id}]"
        )
        event = Event(
            id=new_event_id(),
            op="watchdog",
            target=target.name,
            who=json.loads(holder_info(op, target.name))["holder"],
            started=timestamp(),
            finished=timestamp(),
            from_rev=watch.meta.get("to_rev"),
            to_rev=by,
            verdict="superseded",
            message=message,
        )
        record(ws.journal, event, state)
        said.append(f"superseded: {message}")
    return said


def _record(ws: Workspace, target: Target, watch: Watch) -> str:
    meta, result = watch.meta, watch.result
    outcome = watch.outcome
    verdict = VERDICTS.get(outcome, "watchdog-" + outcome)
    times = {k: result.get(k, "") for k in ("deadline_ms", "fired_ms", "restored_ms", "done_ms")}
    late = _ms(times["restored_ms"]) - _ms(times["deadline_ms"]) if times["restored_ms"] else None
    message = {
        "reverted": f"the watchdog on the LB put {str(meta.get('from_rev'))[:10]} back at the deadline "
        f"({at_second(watch.deadline)}): the change {str(meta.get('to_rev'))[:10]} was not confirmed",
        "superseded": "the watchdog found a newer change live at its deadline and did nothing",
        "reload-failed": f"the watchdog put the previous config file back but its reload failed: {PAGE}",
        "revert-failed": f"the watchdog could not put the previous config back: {PAGE}",
    }.get(outcome, f"the watchdog ended with {outcome!r}")
    detail = result.get("detail", "")
    message += f" ({detail})" if detail else ""
    if late is not None:
        message += f"; file back {late / 1000:.2f} s after the deadline"
    state = ws.journal.state(target.name)
    event = Event(
        id=new_event_id(),
        op="watchdog",
        target=target.name,
        who=f"watchdog on {target.host or 'the LB host'} (armed by {meta.get('who', '?')})",
        started=_iso(times["fired_ms"]) or timestamp(),
        finished=_iso(times["done_ms"]) or timestamp(),
        from_rev=state.live if state.last_event == watch.event_id else meta.get("to_rev"),
        to_rev=meta.get("from_rev") if outcome != "superseded" else meta.get("to_rev"),
        verdict=verdict,
        message=message + f" [watchdog {watch.event_id}]",
    )
    new_state = state
    still_it = state.last_event == watch.event_id or (state.live is not None and state.live == meta.get("to_rev"))
    if outcome != "superseded" and still_it:
        status = {"reverted": str(meta.get("from_status") or "good")}.get(outcome, "revert-failed")
        live_rev = meta.get("from_rev")
        if outcome == "reverted":  # the store's HEAD says what is live again, as after lbctl's own restore
            live_rev = _forward_commit(ws, target, str(state.live or ""), live_rev, message) or live_rev
            event = replace(event, to_rev=live_rev)
        new_state = state.moved_to(live_rev, meta.get("from_blob"), status, event.id, event.finished)
        new_state = new_state.marked_bad(state.live) if outcome == "reverted" else new_state
    record(ws.journal, event, new_state)
    if outcome == "reverted":
        from lbctl.engine import recovery

        recovery.settled_by_watchdog(ws, target.name, watch.event_id)
    return f"{verdict}: {message}"


def _forward_commit(ws: Workspace, target: Target, bad_rev: str, restores: str | None, reason: str) -> str | None:
    """A commit restoring `restores`' files when HEAD still holds the reverted change's; None when HEAD
    moved on, the target's files have edits in progress, or the store cannot commit (said by `log`)."""
    from lbctl.engine.restore import rollback_trailers
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import bundle_at, store_changes, store_paths

    if not bad_rev or not restores:
        return None
    kind = kind_for(target)
    store = ws.store
    try:
        previous = bundle_at(store, kind, target, restores)
        if previous is None or bundle_at(store, kind, target, "HEAD") != bundle_at(store, kind, target, bad_rev):
            return None
        store.require_clean(only=store_paths(store, kind, target))
        trailers = rollback_trailers(target, bad_rev, restores, reason)
        message = f"Roll back {target.name}: {bad_rev[:10]} was not confirmed in time (the LB's watchdog reverted it)"
        return store.commit_files(store_changes(store, kind, target, previous), message, trailers)
    except LbctlError:
        return None


def _ms(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _iso(ms: str) -> str:
    if not ms.isdigit():
        return ""
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).isoformat(timespec="milliseconds")


def describe(watch: Watch, *, drill: bool = False) -> str:
    """A pending watchdog, for `status`: when it reverts, and who must confirm (a drill's change: nobody,
    the trainee undoes it, and confirming would keep the broken config)."""
    left = watch.deadline - time.time()
    who = watch.meta.get("who", "?")
    target = watch.meta.get("target")
    unless = (
        f"unless someone undoes it first (a drill: `lbctl rollback {target} --to last-good`; confirming it would "
        "keep the broken config)"
        if drill
        else f"unless {who} runs `lbctl confirm {target}`"
    )
    return (
        f"pending confirmation of {str(watch.meta.get('to_rev'))[:10]} (event {watch.event_id}): the LB reverts "
        f"to {str(watch.meta.get('from_rev'))[:10]} at {at_second(watch.deadline)} (in {max(left, 0):.0f} s) "
        + unless
        + ("" if watch.alive else "; WARNING: its watchdog process is not running")
    )
