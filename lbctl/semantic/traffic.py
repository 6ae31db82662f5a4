"""Traffic-share preview: each pool member's expected share of new requests, before and after.

The share follows from weights, backup and disabled/down flags and the balancing
algorithm: round-robin, least-connections and random policies spread requests in
proportion to weight; hash-based ones (source, uri, header, ...) do too on average
over many clients, so their shares are marked approximate; `first` sends everything
to the first usable server. Backups take traffic only when no active server is
left (all of them by weight, or only the first, per the section's `backup_mode`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lbctl.semantic.model import ConfigModel, Finding, Section, Server, keyed_servers

_PROPORTIONAL = frozenset(
    [
        "roundrobin",
        "static-rr",
        "leastconn",
        "random",
        "least_conn",
        "round_robin",
        "random_choose",
        "weighted_round_robin",
        "least_time",
        "least_requests",
    ]
)
_HASHED = frozenset(
    [
        "source",
        "uri",
        "url_param",
        "hdr",
        "rdp-cookie",
        "hash",
        "ip_hash",
        "uri_hash",
        "header",
        "cookie",
        "client_ip_hash",
        "query",
        "log-hash",
        "sticky",
    ]
)
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class ServerShare:
    """One server's share (0..1) before and after; `None` where it does not exist."""

    name: str
    endpoint: str
    before: float | None
    after: float | None
    state: str  # active | backup | disabled | drained (weight 0) | removed

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "before": _round(self.before),
            "after": _round(self.after),
            "state": self.state,
        }


@dataclass(frozen=True, slots=True)
class PoolShare:
    """The shares of one backend/upstream."""

    section: str
    algorithm: str | None
    approximate: bool
    servers: tuple[ServerShare, ...]

    @property
    def changed(self) -> bool:
        return any(
            abs((s.before or 0.0) - (s.after or 0.0)) > _EPSILON or (s.before is None) != (s.after is None)
            for s in self.servers
        )

    def to_json(self) -> dict[str, object]:
        return {
            "section": self.section,
            "algorithm": self.algorithm,
            "approximate": self.approximate,
            "changed": self.changed,
            "servers": [s.to_json() for s in self.servers],
        }


@dataclass(frozen=True, slots=True)
class TrafficPreview:
    """Shares per pool, and the findings a reviewer must see (starved servers, dead routes)."""

    pools: tuple[PoolShare, ...]
    findings: tuple[Finding, ...]
    max_share: float | None = None
    compared: bool = False

    def to_json(self) -> dict[str, object]:
        return {"max_share": self.max_share, "compared": self.compared, "pools": [p.to_json() for p in self.pools]}


def traffic_preview(
    model: ConfigModel, *, max_share: float | None = None, baseline: ConfigModel | None = None
) -> TrafficPreview:
    """Shares of `model`'s pools; with `baseline`, each server's share there too, and drops to 0 %."""
    before = {s.label: s for s in baseline.pools()} if baseline is not None else {}
    after = {s.label: s for s in model.pools()}
    pools: list[PoolShare] = []
    findings: list[Finding] = []
    for label in [*after, *(k for k in before if k not in after)]:
        new, old = after.get(label), before.get(label)
        pool = _pool(label, old, new)
        pools.append(pool)
        if new is not None:
            findings.extend(_pool_findings(new, pool, max_share, compared=baseline is not None))
    findings.extend(_route_findings(model, after))
    return TrafficPreview(tuple(pools), tuple(findings), max_share, baseline is not None)


def shares(section: Section, keyed: dict[str, Server] | None = None) -> tuple[dict[str, float], bool]:
    """Each server's expected share of new requests (by server key), and whether it is approximate."""
    keyed = keyed_servers(section) if keyed is None else keyed
    usable = [(k, s) for k, s in keyed.items() if not s.disabled and s.weight > 0]
    active = [(k, s) for k, s in usable if not s.backup]
    chosen = active or [(k, s) for k, s in usable if s.backup]
    if not active and section.backup_mode == "first":
        chosen = chosen[:1]
    algorithm = _algorithm(section.balance)
    result = dict.fromkeys(keyed, 0.0)
    if algorithm == "first":
        chosen = chosen[:1]
    total = sum(s.weight for _, s in chosen)
    for key, server in chosen:
        result[key] = 1.0 if algorithm == "first" else server.weight / total
    return result, algorithm not in _PROPORTIONAL and algorithm != "first"


def _algorithm(balance: str | None) -> str:
    word = (balance or "roundrobin").split()[0]
    return word.split("(", 1)[0]


def _state(server: Server | None) -> str:
    if server is None:
        return "removed"
    if server.disabled:
        return "disabled"
    if server.weight == 0:
        return "drained"
    return "backup" if server.backup else "active"


def _pool(label: str, old: Section | None, new: Section | None) -> PoolShare:
    old_servers = keyed_servers(old) if old is not None else {}
    new_servers = keyed_servers(new) if new is not None else {}
    old_shares, old_approx = shares(old, old_servers) if old is not None else ({}, False)
    new_shares, new_approx = shares(new, new_servers) if new is not None else ({}, False)
    rows = []
    for key in [*new_servers, *(k for k in old_servers if k not in new_servers)]:
        server = new_servers.get(key) or old_servers[key]
        rows.append(
            ServerShare(key, server.endpoint, old_shares.get(key), new_shares.get(key), _state(new_servers.get(key)))
        )
    algorithm = (new or old).balance if (new or old) is not None else None  # type: ignore[union-attr]
    return PoolShare(label, algorithm, old_approx or new_approx, tuple(rows))


def _pool_findings(section: Section, pool: PoolShare, max_share: float | None, *, compared: bool) -> list[Finding]:
    label = section.label
    keyed = keyed_servers(section)
    found: list[Finding] = []
    if section.servers and not any(s.after for s in pool.servers):
        found.append(
            Finding(
                "error", "no-usable-server", f"{label} has no usable server: every request fails", label, section.line
            )
        )
    elif section.servers and all(s.state != "active" or not s.after for s in pool.servers):
        found.append(
            Finding(
                "warning",
                "no-active-server",
                f"{label} has no active server left: traffic goes to backup servers only",
                label,
                section.line,
            )
        )
    for row in pool.servers:
        if compared and row.before and row.after == 0.0:
            found.append(
                Finding(
                    "warning",
                    "server-starved",
                    f"{label}: server {row.name} drops from {row.before:.0%} to 0% of requests",
                    label,
                    _line(keyed, row.name),
                )
            )
        if max_share is not None and row.after and row.after > max_share + _EPSILON and len(pool.servers) > 1:
            found.append(
                Finding(
                    "error",
                    "above-max-share",
                    f"{label}: server {row.name} would take {row.after:.0%} of requests "
                    f"(policy max_share {max_share:.0%})",
                    label,
                    _line(keyed, row.name),
                )
            )
    return found


def _route_findings(model: ConfigModel, pools: dict[str, Section]) -> list[Finding]:
    by_name = {s.name: s for s in pools.values()}
    usable: dict[str, bool] = {}
    found: list[Finding] = []
    for section in model.sections:
        for route in section.routes:
            target = by_name.get(route.target)
            if target is None:
                if route.must_exist:
                    found.append(
                        Finding(
                            "error",
                            "route-to-missing-pool",
                            f"{section.label}: '{route.via}' points at '{route.target}', which does not exist",
                            section.label,
                            route.line,
                        )
                    )
                continue
            if target.label not in usable:
                usable[target.label] = any(shares(target)[0].values())
            if not usable[target.label]:
                found.append(
                    Finding(
                        "error",
                        "route-to-empty-pool",
                        f"{section.label}: '{route.via}' points at {target.label}, which has no usable server",
                        section.label,
                        route.line,
                    )
                )
    return found


def _line(keyed: dict[str, Server], key: str) -> int | None:
    server = keyed.get(key)
    return server.line if server is not None else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
