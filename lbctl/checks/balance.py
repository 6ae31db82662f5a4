"""The `balance` check: is traffic spread across servers as it should be?

"Is it up?" passes the outage's change: HAProxy reloaded fine and the frontend answered,
but traffic went to the wrong servers. This check reads the LB's own per-server counters
(through the transport), takes a baseline before the swap, and judges the window after it:

hard (end the window at once, roll back now):
- a backend that carried traffic before the change gets none now (it went elsewhere);
- one server takes (nearly) all of a backend's traffic while others are configured (100/0/0);
- an in-service server of a busy backend gets nothing;
- a backend with traffic has no server UP;
- the 5xx ratio is above `max_5xx_ratio`.
soft (judged on the whole window):
- a server above `max_share` of its backend's new sessions;
- a server overloaded: queueing, or sessions at `overload_ratio` of its maxconn.

When the window carries fewer than `min_requests` new sessions, lbctl sends its own
probes through the frontend (at most `max_probes` per window) and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lbctl.checks.base import CheckResult, HealthCheck, Observation
from lbctl.checks.counters import ServerCounters, Snapshot, window
from lbctl.checks.settings import BalanceCheck, HttpCheck
from lbctl.config import Target
from lbctl.errors import ConfigError
from lbctl.transports.base import Transport

# Fewer sessions than this per in-service server and a backend's spread is not judged yet.
SAMPLE_PER_SERVER = 4
ALL_ON_ONE = 0.99
EXPECTED_FOR_SILENCE = 8.0
# These algorithms send one client (lbctl's probes come from one) to one server, or fill the
# first server first; a sticky backend (stick tables, cookies) pins a client to a server:
# concentration is what they are meant to do, so spread is not judged.
UNEVEN_BY_DESIGN = ("first", "source", "uri", "url_param", "hdr", "rdp-cookie", "hash", "sticky")


@dataclass(frozen=True)
class Finding:
    rule: str
    backend: str
    message: str
    hard: bool


class BalanceHealthCheck(HealthCheck):
    type = "balance"
    spec: BalanceCheck

    def __init__(self, spec: Any, target: Target, transport: Transport) -> None:
        from lbctl.kinds import kind_for

        super().__init__(spec, target, transport)
        self.kind = kind_for(target)
        self.before: Snapshot | None = None
        self.probes_sent = 0
        self.algorithms: dict[str, str] | None = None

    @property
    def name(self) -> str:
        return "balance"

    def restart(self) -> None:
        self.algorithms = None  # re-read from the restored config
        self.probes_sent = 0  # a new worker's counters start at zero again

    def baseline(self) -> None:
        self._probe_url()  # a missing probe URL is a config error before the swap, not after
        self.before = self.kind.traffic_snapshot(self.transport)

    def _probe_url(self) -> str:
        url = self.spec.probe_url or next((c.url for c in self.target.checks if isinstance(c, HttpCheck)), None)
        if url is None:
            raise ConfigError(
                f"targets.{self.target.name}: the balance check needs traffic to judge; give it `probe_url` "
                "(or an http check) so lbctl can send probes through the frontend"
            )
        return url

    def observe(self) -> Observation:
        start = self.before or Snapshot(process="")
        now = window(start, self.kind.traffic_snapshot(self.transport))
        seen = sum(now.backend_sessions.get(b, 0) for b in self._judged(now))
        top_up = not self.kind.probes_itself and self.probes_sent < self.spec.max_probes
        if seen < self.spec.min_requests and top_up:
            self._probe(min(self.spec.min_requests - seen, self.spec.max_probes - self.probes_sent))
            now = window(start, self.kind.traffic_snapshot(self.transport))
        if self.algorithms is None:  # the config now live (read once, after the swap)
            self.algorithms = self.kind.balance_algorithms(self.transport)
        findings = judge(self.spec, self.before, now, self._judged(now), self.algorithms, self.probes_sent)
        figures = self._figures(now, findings)
        detail = "; ".join(f.message for f in findings) if findings else _spread_line(figures)
        return Observation(ok=not findings, hard=any(f.hard for f in findings), detail=detail, figures=figures)

    def result(self, observations: Sequence[Observation]) -> CheckResult:
        if not observations:
            return CheckResult(self.name, False, "no rounds ran")
        last = observations[-1]
        hard = next((o for o in observations if o.hard), None)
        final = hard or last
        ok = final.ok
        sent = self.probes_sent + self.kind.probes_sent
        note = f"; lbctl sent {sent} probe(s) of its own" if sent else ""
        summary = (final.detail if not ok else f"traffic spread as expected: {final.detail}") + note
        return CheckResult(self.name, ok, summary, final.figures)

    def _judged(self, snap: Snapshot) -> list[str]:
        names = sorted({s.backend for s in snap.servers})
        return [b for b in names if self.spec.backends is None or b in self.spec.backends]

    def _probe(self, count: int) -> None:
        from lbctl.checks.simple import http_probe

        url = self._probe_url()
        for _ in range(count):
            http_probe(url, timeout=2.0)
            self.probes_sent += 1

    def _figures(self, now: Snapshot, findings: list[Finding]) -> dict[str, Any]:
        backends: dict[str, Any] = {}
        before_groups = self.before.backends() if self.before else {}
        for backend, servers in now.backends().items():
            if backend not in self._judged(now):
                continue
            total = sum(s.sessions for s in servers)
            old = before_groups.get(backend, [])
            old_total = sum(s.sessions for s in old)
            old_by_name = {s.server: s for s in old}
            backends[backend] = {
                "sessions": total,
                "sessions_before": old_total,
                "http_5xx": now.backend_5xx.get(backend, 0),
                "servers": {
                    s.server: {
                        "share": round(s.sessions / total, 4) if total else None,
                        "share_before": round(old_by_name[s.server].sessions / old_total, 4)
                        if old_total and s.server in old_by_name
                        else None,
                        "sessions": s.sessions,
                        "status": s.status,
                        "weight": s.weight,
                        "current": s.current,
                        "limit": s.limit,
                        "max_queued": s.max_queued,
                    }
                    for s in servers
                },
            }
        return {
            "backends": backends,
            "probes_sent": self.probes_sent + self.kind.probes_sent,
            "findings": [f.__dict__ for f in findings],
        }


def judge(
    spec: BalanceCheck,
    before: Snapshot | None,
    now: Snapshot,
    judged: list[str],
    algorithms: dict[str, str],
    probes_sent: int = 0,
) -> list[Finding]:
    """Everything wrong with the spread in `now` (a window), given the pre-change `before`.

    lbctl's own probes all hit one URL, so whether traffic left a backend is judged on
    real traffic only (sessions beyond the probes).
    """
    findings: list[Finding] = []
    groups = now.backends()
    before_totals = before.backend_sessions if before else {}
    traffic_now = max(0, sum(now.backend_sessions.get(b, 0) for b in judged) - probes_sent)
    traffic_before = sum(before_totals.get(b, 0) for b in judged)
    for backend in judged:
        servers = groups.get(backend, [])
        total = now.backend_sessions.get(backend, sum(s.sessions for s in servers))
        had_share = before_totals.get(backend, 0) / traffic_before if traffic_before else 0.0
        # With a share p before, n new real sessions should bring it about p*n; none where that
        # expectation is 8 or more is decisive (a chance of e^-8 if nothing had changed).
        if had_share >= 0.05 and had_share * traffic_now >= EXPECTED_FOR_SILENCE and total == 0:
            findings.append(
                Finding(
                    "traffic-moved",
                    backend,
                    f"backend {backend} carried {had_share:.0%} of traffic before "
                    f"the change and gets none of the {traffic_now} new sessions now (traffic went elsewhere)",
                    hard=True,
                )
            )
            continue
        if total and not any(s.up for s in servers):
            findings.append(
                Finding("no-server-up", backend, f"backend {backend} has traffic but no server UP", hard=True)
            )
        if algorithms.get(backend, "roundrobin").split("(")[0] not in UNEVEN_BY_DESIGN:
            out_before = _out_of_service(before, backend)
            findings.extend(_spread(spec, backend, [s for s in servers if s.server not in out_before]))
        answered = now.backend_responses.get(backend, 0)
        errors = now.backend_5xx.get(backend, 0)
        # "No rise in 5xx": a backend that already failed some requests is judged on the rise.
        old_answered = before.backend_responses.get(backend, 0) if before else 0
        old_ratio = (before.backend_5xx.get(backend, 0) / old_answered) if before and old_answered >= 10 else 0.0
        if answered >= 10 and errors / answered > old_ratio + spec.max_5xx_ratio:
            findings.append(
                Finding(
                    "5xx",
                    backend,
                    f"backend {backend}: {errors}/{answered} answers were 5xx (bound {spec.max_5xx_ratio:.0%})",
                    hard=True,
                )
            )
        findings.extend(_overload(spec, backend, servers))
    return findings


def _out_of_service(before: Snapshot | None, backend: str) -> set[str]:
    """Servers that took no traffic by design before the change (down, in maintenance, drained):
    the change did not cause their silence, so they are not evidence against it."""
    if before is None:
        return set()
    return {s.server for s in before.servers if s.backend == backend and not s.in_service}


def _spread(spec: BalanceCheck, backend: str, servers: list[ServerCounters]) -> list[Finding]:
    # A server failing its health check (DOWN) now is an incident, not the change's doing. One
    # in maintenance or UP at weight 0 is the config's doing (disabled, 100/0/0): it stays. Servers
    # already out of service before the change were taken out by the caller.
    active = [s for s in servers if not s.backup and not s.status.startswith("DOWN")]
    in_service = [s for s in active if s.in_service]
    total = sum(s.sessions for s in active)
    if len(active) < 2 or total < SAMPLE_PER_SERVER * max(1, len(in_service)):
        return []
    findings: list[Finding] = []
    top = max(active, key=lambda s: s.sessions)
    share = top.sessions / total
    if share >= ALL_ON_ONE:
        idle = ", ".join(f"{s.server} (weight {s.weight}, {s.status})" for s in active if s is not top)
        findings.append(
            Finding(
                "all-on-one",
                backend,
                f"backend {backend}: {top.server} takes {share:.0%} of {total} sessions; {idle} get nothing",
                hard=True,
            )
        )
    elif share > spec.max_share:
        findings.append(
            Finding(
                "max-share",
                backend,
                f"backend {backend}: {top.server} takes {share:.0%} of "
                f"{total} sessions (max_share {spec.max_share:.0%})",
                hard=False,
            )
        )
    if total >= SAMPLE_PER_SERVER * 2 * len(in_service):
        for s in in_service:
            if s.sessions == 0 and share < ALL_ON_ONE:
                findings.append(
                    Finding(
                        "starved",
                        backend,
                        f"backend {backend}: {s.server} is in service "
                        f"(weight {s.weight}, {s.status}) but got none of {total} sessions",
                        hard=True,
                    )
                )
    return findings


def _overload(spec: BalanceCheck, backend: str, servers: list[ServerCounters]) -> list[Finding]:
    findings = []
    for s in servers:
        near_limit = s.limit is not None and max(s.current, s.max_current) >= spec.overload_ratio * s.limit
        if s.max_queued > 0 or (near_limit and s.sessions > 0):
            findings.append(
                Finding(
                    "overloaded",
                    backend,
                    f"backend {backend}: {s.server} is overloaded "
                    f"({max(s.current, s.max_current)}/{s.limit or '∞'} sessions, up to "
                    f"{s.max_queued} queued)",
                    hard=False,
                )
            )
    return findings


def _spread_line(figures: dict[str, Any]) -> str:
    parts = []
    for backend, data in figures["backends"].items():
        shares = [f"{name} {info['share']:.0%}" for name, info in data["servers"].items() if info["share"] is not None]
        if shares:
            parts.append(f"{backend}: " + " / ".join(shares) + f" of {data['sessions']}")
    return "; ".join(parts) or "no traffic yet"
