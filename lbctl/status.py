"""`lbctl status`: what is live on each target, its state, drift, health and lock holder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lbctl.config import Target
from lbctl.journal import TargetState
from lbctl.lock import LockInfo, flock_holder, lb_lock_path, lock_info
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
    locks: tuple[LockInfo, ...] = ()

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
            "locks": [lock.to_json() for lock in self.locks],
            "interrupted_operation": self.crashed,
            "problems": list(self.problems),
        }


def status(ws: Workspace, name: str | None, *, probe: bool = True) -> list[TargetStatus]:
    from lbctl import recovery
    from lbctl.bundle import live_rels, read_live, recorded_blob
    from lbctl.checks import checks_for
    from lbctl.kinds import kind_for
    from lbctl.transports import transport_for

    results = []
    for target in ws.targets(name):
        state = ws.journal.state(target.name)
        store_lock = flock_holder(ws.lock_dir / f"{target.name}.lock", where="store")
        locks = [store_lock] if store_lock is not None else []
        drift, health, problems = "not-checked", [], []
        if probe:
            try:
                with transport_for(target) as transport:
                    if recovery.pending(ws, target.name) is not None:  # an operation that died: say so first
                        recovery.recover(ws, target, transport, locked=False)
                        state = ws.journal.state(target.name)
                    held = transport.lock_holder(lb_lock_path(target))
                    if held is not None:
                        path = lb_lock_path(target) + (".d" if target.transport == "ssh" else "")
                        locks.append(lock_info(held[0], where="lb", path=path, age_seconds=held[1]))
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
        subject = _subject(ws, state.live)
        crashed = _crashed_operation(ws, target)
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
                lock=locks[0].describe() if locks else None,
                crashed=crashed,
                problems=tuple(problems),
                locks=tuple(locks),
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


def _crashed_operation(ws: Workspace, target: Target) -> dict[str, Any] | None:
    """The in-flight record of an operation whose process is gone (not one that merely left files)."""
    from lbctl import recovery

    data = recovery.pending(ws, target.name)
    return None if data is None or data.get("ended") else data
