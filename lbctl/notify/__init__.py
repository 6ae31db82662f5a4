"""Notifications of deploy events: `[[notify]]` sinks, one message per journal event per sink.

`announce` is called once after each journal event is appended. It queues one message per
matching sink in the outbox (`.git/lbctl/outbox`), then tries to deliver what the outbox holds,
each sink bounded by its `timeout` and the whole by `FLUSH_BUDGET`. Nothing here changes a
command's outcome: a failing or hanging sink leaves its message in the outbox for the next
event or `lbctl notify --flush`. Delivered messages are listed in `.git/lbctl/notified.log`,
so a re-run never sends twice.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lbctl.journal import Event
    from lbctl.store import Store


def announce(store: Store, event: Event) -> None:
    """Queue and send the notifications `event` calls for; never raises."""
    try:
        from lbctl import config as config_mod
        from lbctl.notify.outbox import Outbox

        sinks = config_mod.load(store.root / config_mod.CONFIG_NAME, require_sources=False).notify
        if not sinks:
            return
        outbox = Outbox(store.git_dir / "lbctl")
        outbox.queue(event, sinks)
        outbox.flush(sinks)
    except Exception as exc:  # a notification is never worth failing the operation it reports
        print(f"lbctl: notification not sent ({exc}); it waits for `lbctl notify --flush`", file=sys.stderr)
