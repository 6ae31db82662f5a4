"""Judging a target's traffic over a window of counter samples: pure, no I/O.

`lbctl watch` samples each target's own counters on an interval. Over the samples in its
window it computes, per backend: each server's actual share of new sessions against the
share its configured weights intend, the 5xx ratio, and saturation against `maxconn`.

- A counter reset (a new HAProxy worker after a reload, `clear counters`, a rotated log) is
  never read as traffic: the pair of samples around it counts for nothing.
- A backend with fewer than `min_requests` new sessions in the window is `inconclusive`:
  it neither passes nor raises anything.
- Hash-based algorithms spread by client, not by weight: their shares are not judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from lbctl.checks.counters import ServerCounters, Snapshot

OVERLOAD_RATIO = 0.9  # sessions at this share of maxconn, or anything queued, is saturation


@dataclass(frozen=True)
class Sample:
    at: float  # wall-clock seconds
    snapshot: Snapshot


@dataclass(frozen=True)
class Pool:
    """What a backend's config intends: each server's share of new sessions."""

    shares: Mapping[str, float]
    approximate: bool = False  # hash-based: shares hold over many clients only, not judged


@dataclass(frozen=True)
class Limits:
    min_requests: int = 30
    share_deviation: float = 0.25
    max_share: float | None = None
    max_5xx_ratio: float = 0.05


@dataclass(frozen=True)
class Traffic:
    """New sessions and 5xx per server and backend between the first and last sample."""

    seconds: float
    sessions: Mapping[tuple[str, str], int]
    http_5xx: Mapping[tuple[str, str], int]
    backend_5xx: Mapping[str, int]
    backend_responses: Mapping[str, int]
    resets: int  # pairs of samples skipped because the counters restarted


@dataclass(frozen=True)
class Condition:
    """Something out of bounds now: `rule` is share-deviation | max-share | 5xx-ratio | saturated."""

    rule: str
    backend: str
    server: str  # "" for a backend-wide condition
    message: str
    value: float


@dataclass(frozen=True)
class ServerReport:
    name: str
    state: str  # the LB's status (UP, DOWN, MAINT, DRAIN, ...)
    weight: int  # the runtime weight the LB uses now
    requests: int
    http_5xx: int
    actual: float | None
    intended: float | None
    deviation: float | None
    current: int = 0
    limit: int | None = None
    queued: int = 0


@dataclass(frozen=True)
class BackendReport:
    name: str
    verdict: str  # ok | alerting | inconclusive
    requests: int
    http_5xx: int
    responses: int
    servers: tuple[ServerReport, ...]
    conditions: tuple[Condition, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class TargetReport:
    target: str
    at: float
    window: float  # seconds the samples span
    backends: tuple[BackendReport, ...]
    resets: int = 0
    error: str = ""  # the counters could not be read

    @property
    def verdict(self) -> str:
        if self.error:
            return "unreachable"
        verdicts = {b.verdict for b in self.backends}
        if "alerting" in verdicts:
            return "alerting"
        return "ok" if "ok" in verdicts else "inconclusive"

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return tuple(c for b in self.backends for c in b.conditions)


def is_reset(before: Snapshot, after: Snapshot) -> bool:
    """Did the counters restart between two snapshots (new process, or any counter went down)?"""
    if before.process != after.process:
        return True
    old = {(s.backend, s.server): s for s in before.servers}
    for s in after.servers:
        o = old.get((s.backend, s.server))
        if o is not None and (s.sessions < o.sessions or s.http_total < o.http_total or s.http_5xx < o.http_5xx):
            return True
    return any(after.backend_responses.get(b, 0) < n for b, n in before.backend_responses.items())


def traffic(samples: Sequence[Sample]) -> Traffic:
    """What happened over `samples` (oldest first), summed pair by pair, skipping resets."""
    sessions: dict[tuple[str, str], int] = {}
    errors: dict[tuple[str, str], int] = {}
    backend_5xx: dict[str, int] = {}
    backend_responses: dict[str, int] = {}
    resets = 0
    for a, b in pairwise(samples):
        if is_reset(a.snapshot, b.snapshot):
            resets += 1
            continue
        old = {(s.backend, s.server): s for s in a.snapshot.servers}
        for s in b.snapshot.servers:
            key = (s.backend, s.server)
            o = old.get(key)
            sessions[key] = sessions.get(key, 0) + (s.sessions - o.sessions if o else 0)
            errors[key] = errors.get(key, 0) + (s.http_5xx - o.http_5xx if o else 0)
        for name, n in b.snapshot.backend_5xx.items():
            backend_5xx[name] = backend_5xx.get(name, 0) + max(0, n - a.snapshot.backend_5xx.get(name, n))
        for name, n in b.snapshot.backend_responses.items():
            gained = max(0, n - a.snapshot.backend_responses.get(name, n))
            backend_responses[name] = backend_responses.get(name, 0) + gained
    seconds = samples[-1].at - samples[0].at if samples else 0.0
    return Traffic(seconds, sessions, errors, backend_5xx, backend_responses, resets)


def evaluate(
    target: str,
    samples: Sequence[Sample],
    pools: Mapping[str, Pool],
    limits: Limits,
) -> TargetReport:
    """Judge the window `samples` (oldest first) of one target against what its config intends."""
    if not samples:
        return TargetReport(target, 0.0, 0.0, (), error="no samples")
    seen = traffic(samples)
    latest = samples[-1].snapshot
    reports = []
    for backend, servers in sorted(latest.backends().items()):
        reports.append(_backend(backend, servers, seen, pools.get(backend), limits))
    return TargetReport(target, samples[-1].at, seen.seconds, tuple(reports), seen.resets)


def intended_from_weights(servers: Sequence[ServerCounters]) -> Pool:
    """Shares by the LB's own weights, for a kind whose config lbctl cannot map to its counters."""
    usable = [s for s in servers if s.weight > 0 and not s.backup]
    total = sum(s.weight for s in usable)
    return Pool({s.server: (s.weight / total if total else 0.0) if s in usable else 0.0 for s in servers})


def _backend(
    name: str, servers: list[ServerCounters], seen: Traffic, pool: Pool | None, limits: Limits
) -> BackendReport:
    if pool is None or any(s.server not in pool.shares for s in servers):
        pool = intended_from_weights(servers)
    requests = sum(seen.sessions.get((name, s.server), 0) for s in servers)
    errors = seen.backend_5xx.get(name, sum(seen.http_5xx.get((name, s.server), 0) for s in servers))
    responses = seen.backend_responses.get(name, 0)
    # A server failing its health check is the LB doing its job: the others share its part.
    healthy = {s.server for s in servers if not s.status.startswith("DOWN")}
    intended = _renormalised(pool.shares, healthy)
    rows = []
    conditions: list[Condition] = []
    for s in servers:
        got = seen.sessions.get((name, s.server), 0)
        actual = got / requests if requests else None
        want = intended.get(s.server)
        deviation = _deviation(actual, want)
        rows.append(
            ServerReport(
                s.server,
                s.status,
                s.weight,
                got,
                seen.http_5xx.get((name, s.server), 0),
                _round(actual),
                _round(want),
                _round(deviation),
                s.current,
                s.limit,
                s.queued,
            )
        )
    if requests < limits.min_requests:
        note = f"{requests} new session(s) in the window, fewer than min_requests = {limits.min_requests}"
        return BackendReport(name, "inconclusive", requests, errors, responses, tuple(rows), (), note)
    for row in rows:
        if row.actual is None or row.intended is None:
            continue
        if not pool.approximate and row.deviation is not None and row.deviation > limits.share_deviation:
            conditions.append(
                Condition(
                    "share-deviation",
                    name,
                    row.name,
                    f"{name}/{row.name} takes {row.actual:.0%} of {requests} sessions; its weights intend "
                    f"{row.intended:.0%} (runtime weight {row.weight}, {row.state})",
                    row.deviation,
                )
            )
        if limits.max_share is not None and row.actual > limits.max_share >= row.intended:
            conditions.append(
                Condition(
                    "max-share",
                    name,
                    row.name,
                    f"{name}/{row.name} takes {row.actual:.0%} of {requests} sessions "
                    f"(max_share {limits.max_share:.0%})",
                    row.actual,
                )
            )
        if row.queued > 0 or (row.limit and row.current >= OVERLOAD_RATIO * row.limit):
            conditions.append(
                Condition(
                    "saturated",
                    name,
                    row.name,
                    f"{name}/{row.name} is saturated: {row.current}/{row.limit or '∞'} sessions, {row.queued} queued",
                    float(row.current),
                )
            )
    if responses >= limits.min_requests and errors / responses > limits.max_5xx_ratio:
        conditions.append(
            Condition(
                "5xx-ratio",
                name,
                "",
                f"{name}: {errors}/{responses} answers were 5xx (bound {limits.max_5xx_ratio:.0%})",
                errors / responses,
            )
        )
    verdict = "alerting" if conditions else "ok"
    return BackendReport(name, verdict, requests, errors, responses, tuple(rows), tuple(conditions))


def _renormalised(shares: Mapping[str, float], healthy: set[str]) -> dict[str, float]:
    kept = {k: v for k, v in shares.items() if k in healthy}
    total = sum(kept.values())
    if total <= 0:
        return dict(shares)  # nothing healthy is meant to take traffic: judge against the config as is
    return {k: (kept.get(k, 0.0) / total) for k in shares}


def _deviation(actual: float | None, intended: float | None) -> float | None:
    """How far a share is from its intent, relative to the intent (an unintended share: itself)."""
    if actual is None or intended is None:
        return None
    if intended <= 0:
        return actual
    return abs(actual - intended) / intended


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# -- alerts: conditions that stay out of bounds `for` a while ---------------------------------------


@dataclass(frozen=True)
class Alert:
    target: str
    backend: str
    server: str
    rule: str
    message: str
    since: float  # first evaluation that saw the condition
    firing_since: float | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.target, self.backend, self.server, self.rule)

    @property
    def firing(self) -> bool:
        return self.firing_since is not None


@dataclass(frozen=True)
class Change:
    what: str  # firing | resolved
    alert: Alert
    at: float


@dataclass(frozen=True)
class AlertBook:
    alerts: Mapping[tuple[str, str, str, str], Alert] = field(default_factory=dict)

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts.values() if a.firing)


def advance(book: AlertBook, report: TargetReport, for_seconds: float) -> tuple[AlertBook, list[Change]]:
    """The book after one evaluation of one target, and the alerts that started or stopped firing.

    An alert fires once its condition has held for `for_seconds`. A backend whose traffic is
    inconclusive (or a target that could not be read) keeps its alerts as they are: missing
    evidence neither raises nor clears anything.
    """
    now = report.at
    held = {b.name for b in report.backends if b.verdict == "inconclusive"}
    if report.error:
        return book, []
    current = {(report.target, c.backend, c.server, c.rule): c for c in report.conditions}
    alerts: dict[tuple[str, str, str, str], Alert] = {}
    changes: list[Change] = []
    for key, alert in book.alerts.items():
        if key[0] != report.target or key in current or alert.backend in held:
            alerts[key] = alert
        elif alert.firing:
            changes.append(Change("resolved", alert, now))
    for key, condition in current.items():
        alert = alerts.get(key) or Alert(*key, message=condition.message, since=now)
        alert = Alert(*key, message=condition.message, since=alert.since, firing_since=alert.firing_since)
        if not alert.firing and now - alert.since >= for_seconds:
            alert = Alert(*key, message=condition.message, since=alert.since, firing_since=now)
            changes.append(Change("firing", alert, now))
        alerts[key] = alert
    return AlertBook(alerts), changes
