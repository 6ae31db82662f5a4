"""`lbctl log`: deploy events newest first, with their revisions' metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
    if name is not None:
        ws.target(name)
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
