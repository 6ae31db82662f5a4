"""Per-server traffic counters, kind-neutral, as a kind reads them from its LB.

A `Snapshot` is what the LB says at one moment; `window(start, now)` gives what
happened in between. HAProxy's counters restart with each new worker, so a snapshot
carries the serving process's id and a window spanning a reload starts from zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class ServerCounters:
    backend: str
    server: str
    sessions: int  # cumulative new sessions (HAProxy stot)
    status: str  # UP, DOWN, MAINT, no check, ...
    weight: int
    current: int = 0  # sessions open now (scur)
    limit: int | None = None  # maxconn (slim), None = unlimited
    queued: int = 0  # qcur
    http_5xx: int = 0
    http_total: int = 0  # responses counted (hrsp_1xx..other)
    backup: bool = False
    max_current: int = 0  # highest `current` seen by this process (smax)
    max_queued: int = 0  # highest queue seen by this process (qmax)

    @property
    def in_service(self) -> bool:
        """Would take new requests: up (or unchecked) and weight above zero."""
        up = self.status.startswith("UP") or self.status in ("no check", "OPEN")
        return up and self.weight > 0 and not self.backup

    @property
    def up(self) -> bool:
        return self.status.startswith("UP") or self.status in ("no check", "OPEN")


@dataclass(frozen=True)
class Snapshot:
    process: str  # the serving process (HAProxy worker pid); counters restart when it changes
    servers: tuple[ServerCounters, ...] = ()
    backend_sessions: dict[str, int] = field(default_factory=dict)  # BACKEND rows' stot
    backend_5xx: dict[str, int] = field(default_factory=dict)  # 5xx answered for the backend, its own included
    backend_responses: dict[str, int] = field(default_factory=dict)

    def backends(self) -> dict[str, list[ServerCounters]]:
        grouped: dict[str, list[ServerCounters]] = {}
        for s in self.servers:
            grouped.setdefault(s.backend, []).append(s)
        return grouped


def window(start: Snapshot, now: Snapshot) -> Snapshot:
    """Counters for what happened between `start` and `now` (gauges are taken from `now`)."""
    if start.process != now.process:
        return now  # a new worker: its counters began at zero, within the window
    before = {(s.backend, s.server): s for s in start.servers}
    servers = []
    for s in now.servers:
        old = before.get((s.backend, s.server))
        if old is None:
            servers.append(s)
            continue
        servers.append(
            replace(
                s,
                sessions=max(0, s.sessions - old.sessions),
                http_5xx=max(0, s.http_5xx - old.http_5xx),
                http_total=max(0, s.http_total - old.http_total),
            )
        )

    def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
        return {b: max(0, n - before.get(b, 0)) for b, n in after.items()}

    return Snapshot(
        now.process,
        tuple(servers),
        delta(now.backend_sessions, start.backend_sessions),
        delta(now.backend_5xx, start.backend_5xx),
        delta(now.backend_responses, start.backend_responses),
    )
