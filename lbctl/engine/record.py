"""The one writer of journal events: every event lbctl records goes through `record`.

The journal (`lbctl.store.journal`) only stores: an event and the target's state after it, as
one commit. What else should happen once an event is in the journal plugs in here as a hook,
called after the append with the store and the event, in the order registered: the `[[notify]]`
sinks (`lbctl.notify.announce`) are the first, and metrics or anything later go beside them
(`on_recorded`). A hook never changes the outcome of the operation it reports: one that raises
is told on stderr and the next one runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lbctl.store.journal import Event, Journal, TargetState
    from lbctl.store.repo import Store
    from lbctl.store.workspace import Workspace

Hook = Callable[["Store", "Event"], None]


def record(journal: Journal, event: Event, state: TargetState | None = None) -> str:
    """Append `event` to the journal with the target's `state` after it (default: its state as it is,
    for events that change nothing lbctl knows of the target); then run the hooks. Returns the
    journal commit's sha."""
    commit = journal.append(event, state if state is not None else journal.state(event.target))
    for hook in tuple(_hooks):
        try:
            hook(journal.store, event)
        except Exception as exc:  # a hook is never worth failing the operation its event reports
            print(f"lbctl: after recording {event.op} {event.target}: {exc}", file=sys.stderr)
    return commit


def on_recorded(hook: Hook) -> Callable[[], None]:
    """Call `hook(store, event)` after each event recorded from now on; returns what removes it."""
    _hooks.append(hook)
    return lambda: _hooks.remove(hook) if hook in _hooks else None


def _announce(store: Store, event: Event) -> None:
    """The `[[notify]]` sinks (never raises, bounded in time)."""
    from lbctl.notify import announce

    announce(store, event)


_hooks: list[Hook] = [_announce]


def unlocked(ws: Workspace, name: str, message: str, *, started: str | None = None) -> str:
    """Append an `unlocked` event (who broke which lock) to the journal; the target's state is unchanged."""
    import json

    from lbctl.lock import holder_info
    from lbctl.store.journal import Event, new_event_id, timestamp

    state = ws.journal.state(name)
    event = Event(
        id=new_event_id(),
        op="unlock",
        target=name,
        who=json.loads(holder_info("unlock", name))["holder"],
        started=started or timestamp(),
        finished=timestamp(),
        from_rev=state.live,
        to_rev=state.live,
        verdict="unlocked",
        message=message,
    )
    record(ws.journal, event, state)
    return event.id
