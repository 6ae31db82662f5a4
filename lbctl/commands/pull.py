"""`lbctl pull`: record the config running on a target as a commit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lbctl.errors import UsageError
from lbctl.store.journal import Event
from lbctl.store.workspace import Workspace

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class PullResult:
    target: str
    rev: str
    committed: bool
    previous: str | None
    created: tuple[str, ...] = ()  # store files the pull added (adopting a new LB, new included files)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "rev": self.rev,
            "committed": self.committed,
            "previous_live": self.previous,
            "created": list(self.created),
        }


def pull(ws: Workspace, name: str, *, message: str | None = None) -> PullResult:
    """Commit the config running on the target as its source (`Lbctl-Source: pull`).

    Adopts a brownfield LB, or records a hand edit so that deploys stop refusing for drift.
    A source the store does not have yet is created, with every file the running config
    includes from beside it (nginx), in the same one commit.
    The running config is recorded as live but `unverified`: lbctl did not judge it.
    """
    from lbctl.drivers import driver_for
    from lbctl.lock import hold_flock, holder_info, lb_lock_path
    from lbctl.store.bundle import (
        bundle_at,
        expand,
        included_on_lb,
        live_rels,
        reachable,
        revision_of,
        store_changes,
        store_paths,
    )
    from lbctl.store.journal import new_event_id, timestamp

    target = ws.target(name)
    driver = driver_for(target)
    kind, transport = driver.kind, driver.transport
    ws.store.require_clean(only=store_paths(ws.store, kind, target))
    who, _ = ws.store.identity()
    info = holder_info("pull", name)
    started = timestamp()
    with (
        hold_flock(ws.lock_dir / f"{name}.lock", info),
        driver,
        transport.lock(lb_lock_path(target), info),
    ):
        from lbctl.engine import recovery

        if recovery.pending(ws, name) is not None:  # an operation that died here: recorded before the pull
            recovery.recover(ws, target, transport, locked=True)
        main = driver.running()
        if main is None:
            raise UsageError(f"{target.path} does not exist on {transport.where}: there is nothing to pull")
        # Every store file that is or was part of the tree: what lbctl left live, what HEAD has,
        # and what the running main file's includes match in the store.
        state = ws.journal.state(name)
        head = bundle_at(ws.store, kind, target, "HEAD")
        rels = {
            *live_rels(ws.store, kind, target, state.live),
            *(head.rels if head else ()),
            *expand(ws.store, kind, target, "HEAD", main.main).rels,
        }
        read = driver.running(rels) or main
        on_lb = included_on_lb(transport, kind, target, read.main)  # what the store may lack
        running = reachable(kind, target, read.main, {**on_lb, **read.files()})
        committed = head != running
        created: tuple[str, ...] = ()
        if committed:
            changes = store_changes(ws.store, kind, target, running)
            created = tuple(
                p for p, data in changes.items() if data is not None and ws.store.content_at("HEAD", p) is None
            )
            trailers = {"Lbctl-Target": name, "Lbctl-Source": "pull"}
            rev = ws.store.commit_files(
                changes,
                message or f"Pull {name}: record the config running on it",
                trailers,
            )
        else:
            rev = revision_of(ws.store, kind, target) or ws.store.resolve("HEAD")
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
        blob = running.blob(kind)
        ws.journal.append(event, state.moved_to(rev, blob, "unverified", event.id, event.finished))
    return PullResult(name, rev, committed, state.live, created)
