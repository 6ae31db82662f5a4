"""`/metrics` for Prometheus: what `lbctl watch` sees, served while it runs.

A collector renders the newest round's values on each scrape (nothing is computed twice).
Requests and 5xx are lbctl's own running totals of the LB's counters: a reload that restarts
HAProxy's counters does not reset them, so `rate()` over them stays true.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lbctl.errors import ConfigError
from lbctl.watch.alertmanager import alert_name
from lbctl.watch.evaluate import AlertBook

if TYPE_CHECKING:
    from lbctl.watch.runner import WatchResult

SERVER = ["target", "backend", "server"]
Key = tuple[str, str, str]


@dataclass
class _State:
    result: WatchResult | None = None
    book: AlertBook = field(default_factory=AlertBook)
    totals: Mapping[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class WatchCollector:
    def __init__(self) -> None:
        self.state = _State()

    def update(
        self, result: WatchResult, book: AlertBook, totals: Mapping[tuple[str, str, str], tuple[int, int]]
    ) -> None:
        with self.state.lock:
            self.state.result, self.state.book, self.state.totals = result, book, dict(totals)

    def describe(self) -> list[Any]:
        return []  # metrics appear as targets are read: nothing to declare up front

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        with self.state.lock:
            result, book, totals = self.state.result, self.state.book, self.state.totals
        actual = GaugeMetricFamily(
            "lbctl_watch_server_share", "Share of its backend's new sessions over the window", labels=SERVER
        )
        intended = GaugeMetricFamily(
            "lbctl_watch_server_intended_share", "Share of new sessions its configured weights intend", labels=SERVER
        )
        weight = GaugeMetricFamily("lbctl_watch_server_weight", "Weight the LB uses now (runtime API)", labels=SERVER)
        state = GaugeMetricFamily(
            "lbctl_watch_server_state",
            "The LB's status of the server (1: current)",
            labels=[*SERVER, "state"],
        )
        requests = CounterMetricFamily(
            "lbctl_watch_server_requests", "New sessions sent to the server, seen by lbctl watch", labels=SERVER
        )
        errors = CounterMetricFamily("lbctl_watch_server_http_5xx", "5xx answers of the server", labels=SERVER)
        verdict = GaugeMetricFamily(
            "lbctl_watch_backend_verdict",
            "1 for the backend's verdict (ok, alerting, inconclusive)",
            labels=["target", "backend", "verdict"],
        )
        up = GaugeMetricFamily("lbctl_watch_target_up", "1 when the target's counters could be read", labels=["target"])
        live = InfoMetricFamily("lbctl_watch_live_revision", "The revision live on the target", labels=["target"])
        alerts = GaugeMetricFamily(
            "lbctl_watch_alerts",
            "Active alerts (state firing or pending)",
            labels=["target", "backend", "server", "alertname", "rule", "state"],
        )
        pending = GaugeMetricFamily(
            "lbctl_pending_confirm", "1 while a commit-confirm change awaits `lbctl confirm`", labels=["target"]
        )
        pending_deadline = GaugeMetricFamily(
            "lbctl_pending_confirm_deadline_seconds",
            "Unix time at which the LB host reverts the pending change unless confirmed (0: not known)",
            labels=["target"],
        )
        for (target, backend, server), (sent, failed) in sorted(totals.items()):
            requests.add_metric([target, backend, server], sent)
            errors.add_metric([target, backend, server], failed)
        if result is not None:
            for report in result.reports:
                up.add_metric([report.target], 0.0 if report.error else 1.0)
                for b in report.backends:
                    verdict.add_metric([report.target, b.name, b.verdict], 1.0)
                    for s in b.servers:
                        labels = [report.target, b.name, s.name]
                        if s.actual is not None:
                            actual.add_metric(labels, s.actual)
                        if s.intended is not None:
                            intended.add_metric(labels, s.intended)
                        weight.add_metric(labels, s.weight)
                        state.add_metric([*labels, s.state or "unknown"], 1.0)
            for info in result.infos:
                live.add_metric([info.name], {"revision": info.live or "", "status": info.status})
                waiting = info.confirm_deadline is not None
                pending.add_metric([info.name], 1.0 if waiting else 0.0)
                if waiting:
                    pending_deadline.add_metric([info.name], info.confirm_deadline or 0.0)
        for alert in book.alerts.values():
            alerts.add_metric(
                [
                    alert.target,
                    alert.backend,
                    alert.server,
                    alert_name(alert.rule),
                    alert.rule,
                    "firing" if alert.firing else "pending",
                ],
                1.0,
            )
        yield from (actual, intended, weight, state, requests, errors, verdict, up, live, alerts)
        yield from (pending, pending_deadline)


class MetricsServer:
    """prometheus_client's HTTP server on `listen`, with lbctl's collector alone in its registry."""

    def __init__(self, collector: WatchCollector, server: Any, thread: threading.Thread) -> None:
        self.collector = collector
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @classmethod
    def start(cls, listen: str) -> MetricsServer:
        from prometheus_client import CollectorRegistry, start_http_server

        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"watch.listen: {listen!r} is not HOST:PORT", hint='e.g. listen = "127.0.0.1:9464"')
        collector = WatchCollector()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        try:
            server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
        except OSError as exc:
            raise ConfigError(f"watch.listen: cannot serve /metrics on {listen}: {exc}") from None
        return cls(collector, server, thread)

    def publish(
        self, result: WatchResult, book: AlertBook, totals: Mapping[tuple[str, str, str], tuple[int, int]]
    ) -> None:
        self.collector.update(result, book, totals)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
