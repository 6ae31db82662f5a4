"""An operation lbctl did not finish (killed, machine lost): recognised, recorded, cleaned up.

While a deploy or rollback may change the LB, its in-flight record (`.git/lbctl/inflight/T.json`)
says who runs it, since when, at which stage, and the content (blob ids) it moves the LB from
and to. A record whose process is gone is an interrupted operation. The next command that
touches the target (deploy, rollback, status, log, unlock, pull, check, diff --live) reads what the LB's files hold and
records an `interrupted` event saying which config runs, old or new, by content (pull, check and
`diff --live` too, through `record_pending`); the target's
state follows what runs, so `rollback --to last-good` needs no `--force` and makes its forward
commit. The next deploy or rollback, holding both locks, also removes the files the interrupted
one left beside the live config (staged candidates, half-made links) and then the record.

A record is also left, marked `ended`, by an operation that reported its failure but could not
remove what it staged (the connection was gone): the next deploy or rollback sweeps, silently.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbctl.lock import holder_is_gone

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.store.workspace import Workspace
    from lbctl.transports.base import Transport

# Removes what lbctl's own steps leave beside the live file when they are cut short: staged
# candidates (a file or a tree), restore and keep temporaries, a lock directory being made.
# Never the kept previous config, never the lock itself (the caller holds it).
_SWEEP = r"""
path=$1
dir=${path%/*}; [ "$dir" = "$path" ] && dir=.
name=${path##*/}
for f in "$dir/.$name.lbctl-stage-"* "$path.lbctl-restore"* "$path.lbctl-prev.tmp-"* \
         "$path.lbctl-prev.lbctl-tmp" "$dir/.$name.lbctl.lock.d."*; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  rm -rf -- "$f" && echo "$f"
done
exit 0
"""


def marker_path(ws: Workspace, name: str) -> Path:
    return ws.inflight_dir / f"{name}.json"


def write(ws: Workspace, name: str, data: dict[str, Any]) -> None:
    """(Re)write the in-flight record whole (a reader never sees half of it)."""
    path = marker_path(ws, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def note_leftovers(ws: Workspace, name: str, info: str) -> None:
    """An operation that ends now may have left files on the LB host: the next deploy or rollback sweeps."""
    if not marker_path(ws, name).exists():  # a record already there gets swept anyway
        write(ws, name, {**json.loads(info), "ended": True})


def clear(ws: Workspace, name: str) -> None:
    marker_path(ws, name).unlink(missing_ok=True)


def pending(ws: Workspace, name: str) -> dict[str, Any] | None:
    """The in-flight record of an operation that is over (its process is gone), or None.

    A record of a running operation (its pid alive, or on another machine) is not pending.
    """
    try:
        raw = marker_path(ws, name).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    try:
        data: dict[str, Any] = json.loads(raw)
        host = str(data.get("holder", "")).rpartition("@")[2]
        pid = int(data["pid"])
    except (ValueError, KeyError, TypeError):
        return {"op": "unknown", "unreadable": raw[:200]}
    return data if data.get("ended") or holder_is_gone(host, pid) else None


def recover(ws: Workspace, target: Target, transport: Transport, *, locked: bool) -> str | None:
    """Record the interrupted operation on `target` (if any) and, when `locked`, clean up after it.

    Returns the message of the event recorded, or None when there was nothing to record.
    `locked` means the caller holds the store's and the LB's locks (deploy, rollback): only then
    are files removed from the LB host and the record dropped; otherwise the record stays,
    marked as recorded, for the next deploy or rollback to sweep.
    """
    path = marker_path(ws, target.name)
    claimed = path.with_name(f"{path.name}.recovering-{os.getpid()}")
    try:
        os.rename(path, claimed)  # one recoverer wins; a concurrent status or log finds nothing
    except FileNotFoundError:
        return None
    data = _read(claimed)
    message = None
    try:
        if not data.get("ended") and not data.get("recorded"):
            message, settled = _record(ws, target, transport, data)
            message = message or None
            data["recorded"] = True
            data["message"] = message
            if message is None or settled:  # its outcome is in the journal: only files to sweep
                data["ended"] = True
        if locked:
            sweep(transport, target)
            data["swept"] = True
    finally:
        if not data.get("swept"):  # back for the next deploy or rollback, never over a newer record
            claimed.write_text(json.dumps(data))
            with contextlib.suppress(FileExistsError):
                os.link(claimed, path)
        claimed.unlink(missing_ok=True)
    return message


def record_pending(ws: Workspace, target: Target, transport: Transport | None = None) -> str | None:
    """Before a command that reads the target: record an operation that died on it (see `recover`).

    Through `transport` when the command has one open, else through a connection of its own,
    best effort: a LB out of reach leaves the record for the next command. Returns the
    message of the event recorded, or None.
    """
    if pending(ws, target.name) is None:
        return None
    if transport is not None:
        return recover(ws, target, transport, locked=False)
    from lbctl.transports import transport_for

    try:
        with transport_for(target) as own:
            return recover(ws, target, own, locked=False)
    except Exception:  # out of reach, or refused: `status` or the next operation records it
        return None


def settled_by_watchdog(ws: Workspace, name: str, event_id: str) -> None:
    """The watchdog `event_id` reverted the change of a killed run already recorded `interrupted`
    (while it was still live): that run needs nobody any more, only its files a sweep."""
    try:
        data = json.loads(marker_path(ws, name).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return
    if isinstance(data, dict) and data.get("watchdog") == event_id and data.get("recorded"):
        write(ws, name, {**data, "ended": True})


def release_reverted_lock(ws: Workspace, target: Target, transport: Transport) -> str | None:
    """Break the LB lock a killed run left (a directory over ssh outlives its lbctl) once the run is
    settled by its commit-confirm watchdog's revert; the journal records it (`unlocked`).

    Only that run's lock, and only when its holder is provably gone (this machine, pid gone): the same
    proof `lbctl unlock` and a deploy's take-over ask for. Returns the message recorded, or None."""
    from lbctl.engine.record import unlocked
    from lbctl.lock import lb_lock_path, lock_info

    data = pending(ws, target.name)
    if data is None or not data.get("ended") or not data.get("watchdog"):
        return None
    path = lb_lock_path(target)
    held = transport.lock_holder(path)
    if held is None:
        return None
    info = lock_info(held[0], where="lb", path=path, age_seconds=held[1])
    if not info.dead or info.pid != data.get("pid") or info.holder != data.get("holder"):
        return None
    if not transport.break_lock(path, held[0]):
        return None
    message = (
        f"broke the lock on {transport.where} of {info.describe()}: its {info.operation} was killed and the "
        f"commit-confirm watchdog reverted its change [watchdog {data['watchdog']}]"
    )
    unlocked(ws, target.name, message)
    return message


def sweep(transport: Transport, target: Target) -> list[str]:
    """Remove lbctl's leftovers beside the live file (see `_SWEEP`); the paths removed."""
    if not target.path or transport.name not in ("local", "ssh"):
        return []
    result = transport.run(["sh", "-c", _SWEEP, "lbctl-sweep", target.path], timeout=30)
    return result.stdout.split()


def _read(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        return data
    except ValueError:
        return {"op": "unknown"}


def _watchdog_reverted(ws: Workspace, target: Target, transport: Transport, event_id: str) -> str | None:
    """When the commit-confirm watchdog of the killed run put the previous config back: when (UTC), else None.

    Read from its result file on the LB host, or from its `watchdog-reverted` event once recorded."""
    from lbctl.clock import at_second
    from lbctl.drivers import watchdog

    try:
        for watch in watchdog.scan(transport, target):
            if watch.event_id == event_id and watch.outcome == "reverted":
                done = watch.result.get("restored_ms") or watch.result.get("done_ms") or ""
                return at_second(int(done) / 1000) if done.isdigit() else at_second(watch.deadline)
    except Exception:  # the LB host unreadable: the journal may still know
        pass
    for n, event in enumerate(ws.journal.events(target.name)):
        if n > 20:
            break
        if event.verdict == "watchdog-reverted" and f"[watchdog {event_id}]" in event.message:
            return event.finished
    return None


def _record(ws: Workspace, target: Target, transport: Transport, data: dict[str, Any]) -> tuple[str, bool]:
    """Read what the LB's files hold, and append the `interrupted` event that says so.

    Returns its message ("" when the outcome was recorded already) and whether that settles the
    operation: its watchdog reverted it, so nothing is left for a human to look at."""
    from lbctl.engine.record import record
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import live_rels, reachable, read_live
    from lbctl.store.journal import Event, new_event_id, timestamp

    kind = kind_for(target)
    state = ws.journal.state(target.name)
    if state.updated and data.get("started") and state.updated >= str(data["started"]):
        return "", True  # the operation recorded its outcome and died just before dropping its record
    rels = {*data.get("rels", ()), *live_rels(ws.store, kind, target, state.live)}
    raw = read_live(transport, target, rels) if target.path else None
    running = reachable(kind, target, raw.main, raw.files()) if raw is not None else None
    blob = running.blob(kind) if running is not None else None
    op, stage = str(data.get("op", "operation")), str(data.get("stage", "?"))
    to_rev, from_rev = data.get("to_rev"), data.get("from_rev", state.live)
    who = f"{data.get('holder', 'an unknown holder')} (pid {data.get('pid', '?')})"
    started = str(data.get("started", "?"))
    lead = f"{op} of {target.name} by {who}, started {started}, was interrupted during {stage}"
    settled = False
    runs_new = blob is not None and blob == data.get("to_blob") and blob != data.get("from_blob")
    if runs_new:
        label = f"{str(to_rev)[:10]}" if to_rev else "the candidate"
        message = f"{lead}: {target.name} runs the NEW config {label} (complete, not verified)"
    elif blob is not None and blob == data.get("from_blob"):
        label = f"{str(from_rev)[:10]}" if from_rev else "the config that was live before"
        reverted = _watchdog_reverted(ws, target, transport, str(data["watchdog"])) if data.get("watchdog") else None
        if reverted is not None:
            new = f"{str(to_rev)[:10]}" if to_rev else "the candidate"
            message = (
                f"{lead}: the NEW config {new} was live (not confirmed); the commit-confirm watchdog on the LB "
                f"put {label} back at {reverted}, and {target.name} runs it"
            )
            settled = True
        else:
            message = f"{lead}: {target.name} runs the OLD config {label}; the change did not take"
    elif running is None:
        message = f"{lead}: {target.name} has no config file at {target.path}"
    else:
        message = f"{lead}: {target.name} runs neither the old nor the new config (changed by hand since?)"
    event = Event(
        id=new_event_id(),
        op=op,
        target=target.name,
        who=str(data.get("holder", "?")),
        started=started,
        finished=timestamp(),
        from_rev=from_rev,
        to_rev=to_rev,
        verdict="interrupted",
        message=message + f"; recorded by lbctl pid {os.getpid()}",
    )
    new_state = state.moved_to(to_rev, blob, "unverified", event.id, event.finished) if runs_new else state
    record(ws.journal, event, new_state)
    return message, settled
