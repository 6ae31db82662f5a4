"""A file-based LB (HAProxy, nginx) over a file transport (local, ssh).

The candidate is staged beside the live file (or as a tree, `lbctl.drivers.placement`), checked by
the LB's own validator on the LB host, renamed over the live file with the previous one
kept, and the LB reloads through the kind (`lbctl.kinds`), its reload confirmed by a new
worker generation. `commit(revert_in=...)` arms the commit-confirm watchdog on the LB host
(`lbctl.drivers.watchdog`) between the snapshot and the swap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from lbctl.drivers.base import Driver
from lbctl.drivers.placement import Placement, placement
from lbctl.errors import CannotArm
from lbctl.store.bundle import Bundle


class FileDriver(Driver):
    def placement(self, bundle: Bundle, managed: Iterable[str] = ()) -> Placement:
        self.bundle = bundle
        self.placed = placement(self.transport, self.target.path or "", bundle, managed)
        return self.placed

    def validate(self, staged: str | None = None) -> str:
        return self.kind.validate(self.transport, staged if staged is not None else self.staged)

    def reload(self, marker: object) -> str:
        self.kind.reload(self.transport)
        if not self.target.confirm_reload:
            return "reload command exited 0; not confirmed (confirm_reload = false)"
        return self.kind.confirm_reload(self.transport, marker)

    def arm(self, seconds: float, meta: dict[str, Any]) -> float:
        from lbctl.drivers import watchdog
        from lbctl.store.journal import new_event_id

        bundle = self.bundle
        why = watchdog.refusal(self.target, bundle is not None and len(bundle.rels) > 0)
        previous = self.running()
        if why is None and previous is None:
            why = f"{self.target.name}: --confirm-within needs a config on the LB to go back to"
        if why is not None or bundle is None or previous is None:
            raise CannotArm(why or f"{self.target.name}: nothing was staged to arm a watchdog for")
        event_id = str(meta.get("event_id") or new_event_id())
        meta = {"target": self.target.name, "from_blob": previous.blob(self.kind), **meta}
        deadline = watchdog.arm(
            self.transport,
            self.kind,
            event_id=event_id,
            seconds=seconds,
            previous=previous.main,
            new=bundle.main,
            meta=json.loads(json.dumps(meta, default=str)),
        )
        self.armed = (event_id, deadline)
        return deadline

    def confirm(self) -> str:
        from lbctl.drivers import watchdog

        if self.armed is None:
            return "nothing armed"
        said = watchdog.disarm(self.transport, self.target, self.armed[0])
        self.armed = None
        return said
