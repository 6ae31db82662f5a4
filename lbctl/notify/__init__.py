"""Notifications of deploy events: `[[notify]]` sinks, one message per journal event per sink.

`announce` is called once after each journal event is appended (within the store's write
lock). It queues one message per matching sink in the outbox (`.git/lbctl/outbox`), a few file
creations, and delivers what the outbox holds from a thread of its own, so the lock and the
command go on at once: each sink is bounded by its `timeout` and the whole by `FLUSH_BUDGET`,
and the process waits for that thread (at most the budget) before it exits. Nothing here
changes a command's outcome: a failing or hanging sink leaves its message in the outbox for
the next event or `lbctl notify --flush`. An event of a drill (its revision carries an
`Lbctl-Drill` trailer) is tagged `[DRILL]` in every sink's title and text. Delivered messages are listed in
`.git/lbctl/notified.log`, so a re-run never sends twice.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lbctl.config import NotifySink
    from lbctl.notify.outbox import Outbox
    from lbctl.store.journal import Event
    from lbctl.store.repo import Store


def announce(store: Store, event: Event) -> None:
    """Queue and send the notifications `event` calls for; never raises."""
    from lbctl import config as config_mod

    try:
        sinks = config_mod.load(store.root / config_mod.CONFIG_NAME, require_sources=False).notify
    except Exception:  # no readable lbctl.toml: no sinks to tell (the command itself says what is wrong)
        return
    if not sinks:
        return
    try:
        from lbctl.notify.outbox import Outbox

        outbox = Outbox(store.git_dir / "lbctl")
        outbox.queue(event, sinks, drill=drill_of(store, event))
        if outbox.pending():  # this event's messages, and any an earlier command could not deliver
            # Not a daemon: the interpreter waits for it at exit, at most the flush budget.
            sender = threading.Thread(target=_send, args=(outbox, sinks), name="lbctl-notify")
            _senders.append(sender)
            sender.start()
    except Exception as exc:  # a notification is never worth failing the operation it reports
        print(f"lbctl: notification not sent ({exc}); it waits for `lbctl notify --flush`", file=sys.stderr)


_senders: list[threading.Thread] = []


def drill_of(store: Store, event: Event) -> str | None:
    """The drill scenario (`Lbctl-Drill` trailer) of the revision `event` put live or took off, if any."""
    for rev in (event.to_rev, event.from_rev):
        if not rev:
            continue
        try:
            scenario = store.revision(rev).trailers.get("Lbctl-Drill")
        except Exception:  # a revision this clone does not have: not known as a drill
            continue
        if scenario:
            return scenario
    return None


def _send(outbox: Outbox, sinks: list[NotifySink]) -> None:
    try:
        for delivery in outbox.flush(sinks):
            if not delivery.ok:
                print(
                    f"lbctl: notification to {delivery.sink} not sent ({delivery.detail}); "
                    "it waits in the outbox (`lbctl notify --flush`)",
                    file=sys.stderr,
                )
    except Exception as exc:
        print(f"lbctl: notifications not sent ({exc})", file=sys.stderr)


def settle(timeout: float | None = None) -> None:
    """Wait for the deliveries started so far (the interpreter does this at exit by itself)."""
    while _senders:
        _senders.pop().join(timeout)
