"""`lbctl status`: what is live on each target, its state, drift, health and lock holder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lbctl.config import Target
from lbctl.journal import TargetState
from lbctl.lock import current_holder
from lbctl.workspace import Workspace

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class TargetStatus:
    name: str
    kind: str
    transport: str
    where: str
    state: TargetState
    live_subject: str | None
    drift: str  # none | drifted | missing | unknown | not-checked
    health: tuple[dict[str, Any], ...]
    lock: str | None
    crashed: dict[str, Any] | None
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        s = self.state
        return {
            "target": self.name,
            "kind": self.kind,
            "transport": self.transport,
            "where": self.where,
            "live": s.live,
            "live_subject": self.live_subject,
            "status": s.status,
            "last_good": s.last_good,
            "bad": list(s.bad),
            "updated": s.updated,
            "drift": self.drift,
            "health": list(self.health),
            "lock": self.lock,
            "interrupted_operation": self.crashed,
            "problems": list(self.problems),
        }


def status(ws: Workspace, name: str | None, *, probe: bool = True) -> list[TargetStatus]:
    from lbctl.bundle import live_rels, read_live, recorded_blob
    from lbctl.checks import checks_for
    from lbctl.kinds import kind_for
    from lbctl.transports import transport_for

    results = []
    for target in ws.targets(name):
        state = ws.journal.state(target.name)
        subject = _subject(ws, state.live)
        lock = current_holder(ws.lock_dir / f"{target.name}.lock")
        crashed = _crashed_operation(ws, target, lock)
        lock = lock or _team_lease(ws, target.name)
        drift, health, problems = "not-checked", [], []
        if probe:
            try:
                with transport_for(target) as transport:
                    kind = kind_for(target)
                    # Every file of the tree lbctl left live (its main file alone for most targets).
                    rels = live_rels(ws.store, kind, target, state.live)
                    running = read_live(transport, target, rels) if target.path else None
                    recorded = recorded_blob(state.live_blob, running, kind)
                    if running is None:
                        drift = "missing"
                    elif recorded is None:
                        drift = "unknown"
                    else:
                        drift = "none" if running.blob(kind) == recorded else "drifted"
                    for check in checks_for(target, transport):
                        obs = check.observe()
                        health.append({"check": check.name, "ok": obs.ok, "detail": obs.detail})
            except Exception as exc:  # status must answer even when a target is down
                problems.append(f"could not reach {target.name}: {exc}")
                drift = "unknown"
        results.append(
            TargetStatus(
                name=target.name,
                kind=target.kind,
                transport=target.transport,
                where=target.host or target.api or "local",
                state=state,
                live_subject=subject,
                drift=drift,
                health=tuple(health),
                lock=lock,
                crashed=crashed,
                problems=tuple(problems),
            )
        )
    return results


def _subject(ws: Workspace, rev: str | None) -> str | None:
    if rev is None:
        return None
    try:
        return ws.store.revision(rev).subject
    except Exception:  # the journal was fetched without the branch, or the object is gone
        return "(revision not in this store: fetch it)"


def _crashed_operation(ws: Workspace, target: Target, lock: str | None) -> dict[str, Any] | None:
    marker = ws.inflight_dir / f"{target.name}.json"
    if lock is not None or not marker.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(marker.read_text())
    except ValueError:
        return {"op": "unknown", "note": f"unreadable marker {marker}"}
    return data


def _team_lease(ws: Workspace, name: str) -> str | None:
    """The lease another clone holds on the store's remote (lbctl.lease), as last fetched."""
    if not (ws.store.plumbing.common_dir / "refs" / "lbctl-remotes").is_dir():
        return None  # never fetched from a team remote (a lease lives a minute: it is not packed yet)
    from lbctl.lease import tracked

    lease = tracked(ws, name)
    return f"{lease.describe()} (team lease on the remote)" if lease is not None and not lease.expired else None
