"""Turning routing changes into traffic figures: per-backend counts in, `RoutingMove`s out.

`with_counters` takes each backend's request count from the LB (HAProxy's per-backend
session totals, nginx's access-log counts per upstream) and, per entry, the split across
the backends it reached before the change. A change whose scope is a whole backend
moves that backend's share; one whose scope is a whole class of requests moves at most
that share ("up to"); a part of a class has no figure (a replay gives one). The per-server
effect says how much harder the busiest server of the new backend works than the servers
that carried the traffic before ("load per server ×3 on old1").
"""

from __future__ import annotations

from collections.abc import Mapping

from lbctl.semantic.model import ConfigModel, Section, Server
from lbctl.semantic.routing_model import RoutingChange, RoutingMove, RoutingReport


def with_counters(
    report: RoutingReport, counts: Mapping[str, int], note: str, old: ConfigModel, new: ConfigModel
) -> RoutingReport:
    """`report`'s changes with figures from `counts` (requests per backend); bounds where they say nothing."""
    old_pools = {s.label: s for s in old.pools()}
    new_pools = {s.label: s for s in new.pools()}
    reached = dict(report.reached)
    moves: list[RoutingMove] = []
    for change in report.changes:
        names = reached.get(change.entry, ())
        total = sum(counts.get(n, 0) for n in names)
        if total <= 0 or change.frm.kind != "backend" or counts.get(change.frm.name, 0) <= 0:
            moves.append(bound_figures(change, old, new))
            continue
        s_from = counts[change.frm.name] / total
        s_to = counts.get(change.to.name, 0) / total if change.to.name in names else 0.0  # others' traffic aside
        moves.append(_measured(change, s_from, s_to, old_pools, new_pools))
    return report.with_moves(moves, note)


def bound_figures(change: RoutingChange, old: ConfigModel, new: ConfigModel) -> RoutingMove:
    """Without counters: a whole backend or class may be all of the entry's traffic (up to 100 %)."""
    old_pools = {s.label: s for s in old.pools()}
    new_pools = {s.label: s for s in new.pools()}
    frm_pool, to_pool = _pool(old_pools, change.frm.pool), _pool(new_pools, change.to.pool)
    frm, to = _described(change.frm.shown, frm_pool), _described(change.to.shown, to_pool)
    entry = change.entry
    if change.scope == "part":
        detail = (
            f"part of {change.frm.shown}'s traffic through {entry} (e.g. {', '.join(change.examples)}) "
            f"now goes to {change.to.shown}; without live counters or a replay lbctl cannot say how much"
        )
        return RoutingMove(entry, change.frm.name, change.to.name, None, "bound", False, detail)
    what = "all that went to" if change.scope == "backend" else "a whole class of requests that went to"
    detail = f"up to 100% of {entry}'s requests ({what} {frm}) now go to {to}"
    effect, peak, _, _ = _server_effect(frm_pool, to_pool, 1.0, 0.0, 1.0, whole=change.scope == "backend")
    if effect:
        detail += f": {effect}"
    pool_share = 1.0 if change.scope == "backend" else None
    return RoutingMove(entry, change.frm.name, change.to.name, 1.0, "bound", True, detail, peak, None, pool_share)


def _measured(
    change: RoutingChange,
    s_from: float,
    s_to: float,
    old_pools: dict[str, Section],
    new_pools: dict[str, Section],
) -> RoutingMove:
    frm_pool, to_pool = _pool(old_pools, change.frm.pool), _pool(new_pools, change.to.pool)
    frm, to = _described(change.frm.shown, frm_pool), _described(change.to.shown, to_pool)
    entry = change.entry
    if change.scope == "part":
        detail = (
            f"part of {change.frm.shown}'s {s_from:.0%} of {entry}'s requests (e.g. {', '.join(change.examples)}) "
            f"now goes to {change.to.shown}; the counters cannot say how much (a replay can)"
        )
        return RoutingMove(entry, change.frm.name, change.to.name, None, "counters", False, detail)
    whole = change.scope == "backend"
    lead = f"~{s_from:.0%}" if whole else f"up to {s_from:.0%}"
    detail = f"{lead} of {entry}'s requests move from {frm} to {to}"
    effect, peak, peak_share, peak_before = _server_effect(frm_pool, to_pool, s_from, s_to, s_from, whole=whole)
    if effect:
        detail += f": {effect}"
    return RoutingMove(
        entry,
        change.frm.name,
        change.to.name,
        s_from,
        "counters",
        True,
        detail,
        peak,
        peak_share if whole else None,
        1.0 if whole else None,
        peak_before if whole else None,
    )


def _pool(pools: dict[str, Section], label: str | None) -> Section | None:
    return pools.get(label) if label is not None else None


def _active(section: Section | None) -> list[Server]:
    if section is None:
        return []
    return [s for s in section.servers if not s.disabled and not s.backup and s.weight > 0]


def _described(shown: str, section: Section | None) -> str:
    servers = _active(section)
    if section is None or not section.servers:
        return shown
    if not servers:
        return f"{shown} (no usable server)"
    n = len(servers)
    weight = sum(s.weight for s in servers)
    plural = "s" if n != 1 else ""
    return f"{shown} ({n} server{plural}, weight {weight})" if n > 1 else f"{shown} (1 server)"


def _server_effect(
    frm: Section | None, to: Section | None, s_from: float, s_to: float, moved: float, *, whole: bool
) -> tuple[str, str | None, float | None, float | None]:
    """'load per server ×3 on old1; web1, web2, web3 get none', the busiest new server, its share after and before."""
    givers, takers = _active(frm), _active(to)
    if not takers:
        return "", None, None, None
    w_to = sum(s.weight for s in takers)
    peak = max(takers, key=lambda s: s.weight)
    peak_share = (s_to + moved) * peak.weight / w_to
    parts = []
    if givers:
        # against what the server carried before, or (new to this traffic) what one server of the old backend did
        w_from = sum(s.weight for s in givers)
        before = s_to * peak.weight / w_to or s_from * max(s.weight for s in givers) / w_from
        if before > 0 and peak_share / before >= 1.05:
            parts.append(f"load per server ×{_ratio(peak_share / before)} on {peak.name}")
        if whole:
            staying = {s.endpoint for s in takers}
            names = [s.name for s in givers if s.endpoint not in staying]
            shown = ", ".join(names) if len(names) <= 4 else f"{names[0]} … {names[-1]} ({len(names)} servers)"
            if names:
                parts.append(f"{shown} get none" if len(names) > 1 else f"{shown} gets none")
    return "; ".join(parts), peak.name, peak_share, s_to * peak.weight / w_to


def _ratio(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"
