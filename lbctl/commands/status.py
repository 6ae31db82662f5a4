"""`lbctl status`: what is live on each target, its state, drift, health and lock holder.

It is also a gate: each target gets a verdict, `healthy` (every check passes, the file
and the running state are the live revision's, nothing is pending), `degraded` (anything
else worth a human: a failing check, drift, running drift, an interrupted operation, a
lock, a live revision whose state is not `good`), `unreachable`, or `misconfigured` (the
target's `path` is not the file the LB reads). `exit_code` turns them into 0, 1, 6 or 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lbctl.config import Target
from lbctl.errors import ConfigError, ExitCode
from lbctl.lock import LockInfo, flock_holder, lb_lock_path, lock_info
from lbctl.store.journal import TargetState
from lbctl.store.workspace import Workspace

if TYPE_CHECKING:
    from lbctl.kinds.base import Kind
    from lbctl.kinds.conformance import Conformance, Origin
    from lbctl.store.bundle import Bundle
    from lbctl.transports.base import Transport


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
    running: Conformance | None = None  # running state vs the live revision (None: not probed)
    origin: Origin | None = None  # the file the LB reads (None: not probed)
    verdict: str = "healthy"  # healthy | degraded | unreachable | misconfigured
    reasons: tuple[str, ...] = ()
    where_path: str | None = None  # the target's `path`
    lb_lock: str | None = None  # the lock beside the live file on the LB host, when held
    config_problems: tuple[str, ...] = ()  # the target's settings are wrong (a socket, the API): exit 2
    locks: tuple[LockInfo, ...] = ()
    watchdog: tuple[str, ...] = ()  # commit-confirm: what a watchdog did, or when a pending one reverts

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
            "running": self.running.to_json() if self.running else None,
            "origin": self.origin.to_json() if self.origin else None,
            "lb_lock": self.lb_lock,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "config_problems": list(self.config_problems),
            "watchdog": list(self.watchdog),
        }


_EXIT = {"misconfigured": ExitCode.USAGE, "unreachable": ExitCode.UNREACHABLE, "degraded": ExitCode(1)}


def exit_code(results: list[TargetStatus]) -> int:
    """0 when every target shown is healthy; else 2 (misconfigured), 6 (unreachable) or 1 (degraded)."""
    for verdict in ("misconfigured", "unreachable", "degraded"):
        if any(r.verdict == verdict for r in results):
            return int(_EXIT[verdict])
    return 0


def status(ws: Workspace, name: str | None, *, probe: bool = True) -> list[TargetStatus]:
    from lbctl.checks import checks_for
    from lbctl.engine import recovery
    from lbctl.kinds import kind_for
    from lbctl.kinds.conformance import check_origin
    from lbctl.store.bundle import live_rels, read_live, recorded_blob
    from lbctl.transports import transport_for

    results = []
    for target in ws.targets(name):
        state = ws.journal.state(target.name)
        store_lock = flock_holder(ws.lock_dir / f"{target.name}.lock", where="store")
        locks = [store_lock] if store_lock is not None else []
        drift, health, problems = "not-checked", [], []
        misconfigured: list[str] = []
        running_state: Conformance | None = None
        origin: Origin | None = None
        lb_lock: str | None = None
        reach = "ok"
        watch_lines: list[str] = []
        if probe:
            try:
                with transport_for(target) as transport:
                    if recovery.pending(ws, target.name) is not None:  # an operation that died: say so first
                        recovery.recover(ws, target, transport, locked=False)
                        state = ws.journal.state(target.name)
                    if target.transport != "http" and target.path:  # commit-confirm watchdogs on the LB host
                        watch_lines = _watchdogs(ws, target, transport)
                        recovery.release_reverted_lock(ws, target, transport)  # the killed run's, over ssh
                        state = ws.journal.state(target.name)
                    held = transport.lock_holder(lb_lock_path(target))
                    if held is not None:
                        path = lb_lock_path(target) + (".d" if target.transport == "ssh" else "")
                        locks.append(lock_info(held[0], where="lb", path=path, age_seconds=held[1]))
                    kind = kind_for(target)
                    kind.check_endpoints(transport)  # a wrong socket or API: ConfigError, below
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
                    origin = check_origin(kind, transport, target)
                    running_state = _conformance(ws, kind, transport, target, state.live, running)
                    for check in checks_for(target, transport):
                        obs = check.observe()
                        health.append({"check": check.name, "ok": obs.ok, "detail": obs.detail})
            except ConfigError as exc:  # e.g. an `api` nothing answers at
                misconfigured.append(str(exc))
                reach = "misconfigured"
            except Exception as exc:  # status must answer even when a target is down
                problems.append(f"could not reach {target.name}: {exc}")
                drift = "unknown"
                reach = "unreachable"
        subject = _subject(ws, state.live)
        crashed = _crashed_operation(ws, target)
        lock = (store_lock.describe() if store_lock is not None else None) or _team_lease(ws, target.name)
        held_on_lb = next((held for held in locks if held.where == "lb"), None)
        lb_lock = held_on_lb.describe() if held_on_lb is not None and store_lock is None else None
        verdict, reasons = _verdict(
            state, drift, health, running_state, origin, lock, crashed, reach, [*misconfigured, *problems]
        )
        if state.status == "revert-failed":
            reasons.append(
                "the watchdog on the LB host could not revert cleanly (its reload failed): the LB may run the "
                f"unconfirmed change or no config: page a human (`lbctl log {target.name}`)"
            )
        reasons += [line for line in watch_lines if line.startswith("pending")]
        if lb_lock and verdict == "healthy":
            verdict = "degraded"
        if lb_lock:
            reasons.append(f"the lock on the LB host is held ({lb_lock}): `lbctl unlock {target.name}` if it is stale")
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
                lock=lock or (locks[0].describe() if locks else None),
                crashed=crashed,
                problems=tuple(problems),
                running=running_state,
                origin=origin,
                verdict=verdict,
                reasons=tuple(reasons),
                where_path=target.path,
                lb_lock=lb_lock,
                config_problems=tuple(misconfigured),
                locks=tuple(locks),
                watchdog=tuple(watch_lines),
            )
        )
    return results


def _watchdogs(ws: Workspace, target: Target, transport: Transport) -> list[str]:
    """Record what fired watchdogs did (`lbctl.engine.watchdogs.settle`); describe the pending ones."""
    from lbctl.engine.watchdogs import describe, settle

    pending, said = settle(ws, target, transport)
    from lbctl.store.selectors import is_drill

    return [*said, *(describe(w, drill=is_drill(ws.store, str(w.meta.get("to_rev")))) for w in pending)]


def _conformance(
    ws: Workspace, kind: Kind, transport: Transport, target: Target, live: str | None, running: Bundle | None
) -> Conformance:
    """The LB's running state vs the live revision (as pushed), or vs its file when lbctl deployed nothing."""
    from lbctl.kinds.conformance import unknown
    from lbctl.store.bundle import bundle_at

    deployed = bundle_at(ws.store, kind, target, live) if live else None
    if deployed is not None:
        deployed = deployed.with_main(kind.prepare(deployed.main))
    elif running is not None:
        deployed = running
    else:
        return unknown("no config to compare the running state with")
    return kind.conformance(transport, deployed)


def _verdict(
    state: TargetState,
    drift: str,
    health: list[dict[str, Any]],
    running: Conformance | None,
    origin: Origin | None,
    lock: str | None,
    crashed: dict[str, Any] | None,
    reach: str,
    problems: list[str],
) -> tuple[str, list[str]]:
    if reach != "ok":
        return reach, list(problems)
    if origin is not None and origin.matches is False:
        return "misconfigured", [f"path is not the file the LB reads: it reads {', '.join(origin.files)}"]
    reasons = []
    if state.live is not None and state.status != "good":
        reasons.append(f"the live revision is {state.status}, not good")
    if drift in ("drifted", "missing"):
        reasons.append(
            "the config file is missing" if drift == "missing" else "drift: the file differs from the live revision"
        )
    if running is not None and running.differences:
        reasons.append("running drift: " + "; ".join(running.differences))
    reasons += [f"check {h['check']} failing: {h['detail']}" for h in health if not h["ok"]]
    if crashed is not None:
        reasons.append(f"an interrupted {crashed.get('op')} did not finish")
    if lock is not None:
        reasons.append(f"locked: {lock}")
    return ("degraded" if reasons else "healthy"), reasons


def _subject(ws: Workspace, rev: str | None) -> str | None:
    if rev is None:
        return None
    try:
        return ws.store.revision(rev).subject
    except Exception:  # the journal was fetched without the branch, or the object is gone
        return "(revision not in this store: fetch it)"


def _crashed_operation(ws: Workspace, target: Target) -> dict[str, Any] | None:
    """The in-flight record of an operation whose process is gone (not one that merely left files)."""
    from lbctl.engine import recovery

    data = recovery.pending(ws, target.name)
    return None if data is None or data.get("ended") else data


def _team_lease(ws: Workspace, name: str) -> str | None:
    """The lease another clone holds on the store's remote (lbctl.store.lease), as last fetched."""
    if not (ws.store.plumbing.common_dir / "refs" / "lbctl-remotes").is_dir():
        return None  # never fetched from a team remote (a lease lives a minute: it is not packed yet)
    from lbctl.store.lease import tracked

    lease = tracked(ws, name)
    return f"{lease.describe()} (team lease on the remote)" if lease is not None and not lease.expired else None
