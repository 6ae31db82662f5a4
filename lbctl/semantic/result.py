"""The values a semantic diff produces: `Change`s, and the `SemanticDiff` that holds them.

JSON schema (documented in docs/diff-json.md) lives here, next to the values it
serialises, so the two cannot drift apart. Every string that came from a config
passes through `mask`, so sealed secrets show as `****` wherever a diff goes.
"""

from __future__ import annotations

from dataclasses import dataclass

from lbctl.semantic.model import Finding, mask
from lbctl.semantic.routing_model import EMPTY, RoutingReport
from lbctl.semantic.traffic import TrafficPreview

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Change:
    """One difference a person reads, e.g. `backend web: server web2 weight 100 → 0`.

    `element` is what changed (`section`, `server`, `rule`, `setting`, `balance`);
    `action` is `added`, `removed`, `changed`, `renamed` or `reordered`; `subject`
    names the server, chain or setting; `field` the attribute (`weight`, `disabled`).
    `line` points into the new file (the old one for a removal) and is informative.
    """

    section: str
    element: str
    action: str
    description: str
    subject: str | None = None
    field: str | None = None
    old: str | None = None
    new: str | None = None
    line: int | None = None
    traffic: bool = False

    @property
    def text(self) -> str:
        return mask(f"{self.section}: {self.description}")

    def to_json(self) -> dict[str, object]:
        return {
            "section": mask(self.section),
            "element": self.element,
            "action": self.action,
            "subject": None if self.subject is None else mask(self.subject),
            "field": self.field,
            "old": None if self.old is None else mask(self.old),
            "new": None if self.new is None else mask(self.new),
            "line": self.line,
            "affects_traffic": self.traffic,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class SemanticDiff:
    """What changed between two configs of one kind, and what it does to traffic."""

    kind: str
    old_file: str
    new_file: str
    changes: tuple[Change, ...]
    traffic: TrafficPreview
    routing: RoutingReport = EMPTY  # where each class of request goes now, and what moves

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.traffic.findings + self.routing.unmodelled

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def to_json(self) -> dict[str, object]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "old_file": self.old_file,
            "new_file": self.new_file,
            "is_empty": self.is_empty,
            "changes": [c.to_json() for c in self.changes],
            "traffic": self.traffic.to_json(),
            "routing": self.routing.to_json(),
            "findings": [f.to_json() for f in self.findings],
        }
