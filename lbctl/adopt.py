"""`lbctl pull`: record the config running on a target as a commit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lbctl.errors import UsageError
from lbctl.journal import Event, blob_id
from lbctl.workspace import Workspace

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class PullResult:
    target: str
    rev: str
    committed: bool
    previous: str | None

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "rev": self.rev, "committed": self.committed, "previous_live": self.previous}


def pull(ws: Workspace, name: str, *, message: str | None = None) -> PullResult:
    """Commit the config running on the target as its source (`Lbctl-Source: pull`).

    Adopts a brownfield LB, or records a hand edit so that deploys stop refusing for drift.
    The running config is recorded as live but `unverified`: lbctl did not judge it.
    """
    from lbctl.journal import new_event_id, timestamp
    from lbctl.kinds import kind_for
    from lbctl.lifecycle import _connect, _read, lb_lock_path
    from lbctl.lock import hold_flock, holder_info
    from lbctl.transports import transport_for

    target = ws.target(name)
    kind = kind_for(target)
    ws.store.require_clean()
    who, _ = ws.store.identity()
    info = holder_info("pull", name)
    started = timestamp()
    with (
        hold_flock(ws.lock_dir / f"{name}.lock", info),
        _connect(transport_for(target), target) as transport,
        transport.lock(lb_lock_path(target), info),
    ):
        running = _read(transport, target)
        if running is None:
            raise UsageError(f"{target.path} does not exist on {transport.where}: there is nothing to pull")
        state = ws.journal.state(name)
        committed = ws.store.content_at("HEAD", target.source) != running
        if committed:
            trailers = {"Lbctl-Target": name, "Lbctl-Source": "pull"}
            rev = ws.store.commit_file(
                target.source, running, message or f"Pull {name}: record the config running on it", trailers
            )
        else:
            rev = ws.store.last_change(target.source) or ws.store.resolve("HEAD")
        event = Event(
            id=new_event_id(),
            op="pull",
            target=name,
            who=json.loads(info)["holder"],
            started=started,
            finished=timestamp(),
            from_rev=state.live,
            to_rev=rev,
            verdict="adopted",
            message=f"recorded the running config of {name} ({who})",
        )
        blob = blob_id(kind.canonical(running))
        ws.journal.append(event, state.moved_to(rev, blob, "unverified", event.id, event.finished))
    return PullResult(name, rev, committed, state.live)
