"""`lbctl log`: deploy events newest first, with their revisions' metadata.

A journal fetched from a teammate's push may name revisions this clone does not have
(their branch was not fetched): those events are shown, marked, not refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lbctl.errors import LbctlError
from lbctl.journal import Event
from lbctl.workspace import Workspace

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
    if name is not None:
        ws.target(name)
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
