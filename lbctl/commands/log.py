"""`lbctl log`: deploy events newest first, with their revisions' metadata.

A journal fetched from a teammate's push may name revisions this clone does not have
(their branch was not fetched): those events are shown, marked, not refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lbctl.config import Target
from lbctl.errors import LbctlError
from lbctl.store.journal import Event
from lbctl.store.workspace import Workspace

if TYPE_CHECKING:
    pass


MISSING = "(revision not in this clone: `git fetch` the branch that has it)"


@dataclass(frozen=True)
class LogEntry:
    event: Event
    subject: str | None
    trailers: dict[str, str] = field(default_factory=dict)
    missing: bool = False  # the event's revision is not in this clone

    def to_json(self) -> dict[str, Any]:
        data = self.event.to_json()
        data.pop("diff", None)
        data["subject"] = self.subject
        data["trailers"] = self.trailers
        data["revision_missing"] = self.missing
        return data


def log(ws: Workspace, name: str | None, *, limit: int = 20) -> list[LogEntry]:
    targets = ws.targets(name)
    if ws.inflight_dir.is_dir():
        for target in targets:
            _record_interrupted(ws, target)
    entries: list[LogEntry] = []
    for event in ws.journal.events(name):
        subject, trailers, missing = None, {}, False
        if event.to_rev:
            try:
                revision = ws.store.revision(event.to_rev)
                subject, trailers = revision.subject, revision.trailers
            except (LbctlError, ValueError):
                subject, missing = MISSING, True
        entries.append(LogEntry(event, subject, trailers, missing))
        if len(entries) >= limit:
            break
    return entries


def _record_interrupted(ws: Workspace, target: Target) -> None:
    """An operation that died on `target` goes into the journal before the log is read (`lbctl.engine.recovery`)."""
    from lbctl.engine import recovery
    from lbctl.transports import transport_for

    if recovery.pending(ws, target.name) is None:
        return
    try:
        with transport_for(target) as transport:
            recovery.recover(ws, target, transport, locked=False)
    except Exception:  # the LB is out of reach: `status` or the next operation records it
        return
