"""`lbctl log`: deploy events newest first, with their revisions' metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lbctl.config import Target
from lbctl.journal import Event
from lbctl.workspace import Workspace

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class LogEntry:
    event: Event
    subject: str | None
    trailers: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = self.event.to_json()
        data.pop("diff", None)
        data["subject"] = self.subject
        data["trailers"] = self.trailers
        return data


def log(ws: Workspace, name: str | None, *, limit: int = 20) -> list[LogEntry]:
    targets = ws.targets(name)
    if ws.inflight_dir.is_dir():
        for target in targets:
            _record_interrupted(ws, target)
    entries: list[LogEntry] = []
    for event in ws.journal.events(name):
        subject, trailers = None, {}
        if event.to_rev:
            try:
                revision = ws.store.revision(event.to_rev)
                subject, trailers = revision.subject, revision.trailers
            except ValueError:
                subject = "(revision not in this store)"
        entries.append(LogEntry(event, subject, trailers))
        if len(entries) >= limit:
            break
    return entries


def _record_interrupted(ws: Workspace, target: Target) -> None:
    """An operation that died on `target` goes into the journal before the log is read (`lbctl.recovery`)."""
    from lbctl import recovery
    from lbctl.transports import transport_for

    if recovery.pending(ws, target.name) is None:
        return
    try:
        with transport_for(target) as transport:
            recovery.recover(ws, target, transport, locked=False)
    except Exception:  # the LB is out of reach: `status` or the next operation records it
        return
