"""`lbctl rules`: Prometheus alerting rules equivalent to `lbctl watch`'s judgement.

For teams whose Prometheus already scrapes HAProxy's own exporter (`http-request use-service
prometheus-exporter`): the same bounds as `[watch]` (share deviation, max_share, 5xx ratio,
saturation, min_requests, window, for), written against `haproxy_server_*` / `haproxy_backend_*`
with each server's intended share taken from the config lbctl has live on the target. The
rules are values; `to_yaml` writes them (JSON-quoted scalars are valid YAML).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lbctl.config import Target, WatchSettings
from lbctl.watch.alertmanager import alert_name
from lbctl.watch.runner import limits_for, target_info

if TYPE_CHECKING:
    from lbctl.store.workspace import Workspace
    from lbctl.watch.evaluate import Pool


def _duration(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds >= 1 else f"{int(seconds * 1000)}ms"


def intended_pools(ws: Workspace, target: Target) -> dict[str, Pool]:
    """Each backend's intended shares from the config live on the target (the store's copy)."""
    from lbctl.semantic import parse_config
    from lbctl.semantic.traffic import shares
    from lbctl.watch.evaluate import Pool

    live = ws.journal.state(target.name).live
    content = ws.store.content_at(live, target.source) if live else None
    if content is None:
        path = ws.root / target.source
        content = path.read_bytes() if path.is_file() else None
    if content is None:
        return {}
    model = parse_config(target.kind, content.decode("utf-8", "replace"), filename=target.source)
    pools: dict[str, Pool] = {}
    for section in model.pools():
        intended, approximate = shares(section)
        pools[section.name] = Pool(intended, approximate)
    return pools


def target_rules(ws: Workspace, target: Target, settings: WatchSettings, selector: str = "") -> list[dict[str, Any]]:
    """The alerting rules for one HAProxy target."""
    limits = limits_for(target, settings)
    window = _duration(settings.window)
    wait = _duration(settings.for_)
    undo = target_info(ws, target.name).rollback
    sel = (selector.strip().rstrip(",") + ",") if selector.strip() else ""
    rules: list[dict[str, Any]] = []

    def rule(rule_id: str, backend: str, server: str, expr: str, summary: str) -> None:
        labels = {"severity": "warning", "source": "lbctl", "target": target.name, "backend": backend}
        if server:
            labels["server"] = server
        labels["rule"] = rule_id
        rules.append(
            {
                "alert": alert_name(rule_id),
                "expr": expr,
                "for": wait,
                "labels": labels,
                "annotations": {"summary": summary, "rollback": undo},
            }
        )

    for backend, pool in sorted(intended_pools(ws, target).items()):
        if not pool.shares:
            continue
        pb = f'{sel}proxy="{backend}"'
        total = f"sum(rate(haproxy_server_sessions_total{{{pb}}}[{window}]))"
        enough = f"sum(increase(haproxy_server_sessions_total{{{pb}}}[{window}])) >= {limits.min_requests}"
        for server, want in sorted(pool.shares.items()):
            share = f'sum(rate(haproxy_server_sessions_total{{{pb},server="{server}"}}[{window}])) / {total}'
            if not pool.approximate and len(pool.shares) > 1:
                if want > 0:
                    deviation = f"abs({share} - {want:.4f}) / {want:.4f} > {limits.share_deviation:g}"
                else:
                    deviation = f"{share} > {limits.share_deviation:g}"
                rule(
                    "share-deviation",
                    backend,
                    server,
                    f"({deviation})\nand on() ({enough})",
                    f"{backend}/{server} is more than {limits.share_deviation:.0%} off the {want:.0%} share "
                    "its weights intend",
                )
            if limits.max_share is not None and want <= limits.max_share and len(pool.shares) > 1:
                rule(
                    "max-share",
                    backend,
                    server,
                    f"({share} > {limits.max_share:g})\nand on() ({enough})",
                    f"{backend}/{server} takes more than {limits.max_share:.0%} of its backend's sessions",
                )
        responses = f"haproxy_backend_http_responses_total{{{pb}}}"
        rule(
            "5xx-ratio",
            backend,
            "",
            f'(sum(rate(haproxy_backend_http_responses_total{{{pb},code="5xx"}}[{window}])) '
            f"/ sum(rate({responses}[{window}])) > {limits.max_5xx_ratio:g})\n"
            f"and on() (sum(increase({responses}[{window}])) >= {limits.min_requests})",
            f"{backend}: more than {limits.max_5xx_ratio:.0%} of answers are 5xx",
        )
        rule(
            "saturated",
            backend,
            "",
            f"haproxy_server_current_queue{{{pb}}} > 0\nor (haproxy_server_current_sessions{{{pb}}} "
            f">= 0.9 * haproxy_server_limit_sessions{{{pb}}} and haproxy_server_limit_sessions{{{pb}}} > 0)",
            f"{backend}: {{{{ $labels.server }}}} queues or is at its maxconn",
        )
    return rules


def rule_file(ws: Workspace, targets: list[Target], settings: WatchSettings, selector: str = "") -> dict[str, Any]:
    groups = []
    for target in targets:
        if target.kind != "haproxy":
            continue  # the rules read HAProxy's exporter; nginx and Caddy export no per-server counters
        groups.append({"name": f"lbctl-{target.name}", "rules": target_rules(ws, target, settings, selector)})
    return {"groups": groups}


def to_yaml(data: Any, indent: int = 0) -> str:
    """Block-style YAML for plain data (dicts, lists, strings, numbers), strings JSON-quoted."""
    pad = "  " * indent
    if isinstance(data, Mapping):
        lines = []
        for key, value in data.items():
            if isinstance(value, Mapping | list) and value:
                lines.append(f"{pad}{key}:\n{to_yaml(value, indent + 1)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(value)}")
        return "\n".join(lines)
    if isinstance(data, list):
        items = []
        for value in data:
            body = to_yaml(value, indent + 1).lstrip() if isinstance(value, Mapping | list) else _scalar(value)
            items.append(f"{pad}- {body}")
        return "\n".join(items)
    return pad + _scalar(data)


def _scalar(value: Any) -> str:
    if isinstance(value, Mapping | list):
        return "{}" if isinstance(value, Mapping) else "[]"
    return json.dumps(value)
