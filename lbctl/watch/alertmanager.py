"""Alerts to Alertmanager's v2 API: re-sent while they fire, resolved when they clear.

Each firing alert is posted every round with an `endsAt` a few intervals ahead, so that if
`lbctl watch` stops, Alertmanager resolves it on its own; a cleared one is posted once more
with `endsAt` now. A failing Alertmanager is reported and never stops the watch.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lbctl.watch.evaluate import Alert, Change

if TYPE_CHECKING:
    from lbctl.watch.runner import TargetInfo, WatchResult

ALERT_NAMES = {
    "share-deviation": "LbctlShareDeviation",
    "max-share": "LbctlMaxShare",
    "5xx-ratio": "LbctlErrorRatio",
    "saturated": "LbctlSaturated",
}
TIMEOUT = 2.0


def alert_name(rule: str) -> str:
    return ALERT_NAMES.get(rule, "LbctlTraffic")


def payload(alert: Alert, info: TargetInfo | None, *, ends: datetime) -> dict[str, Any]:
    """One alert as Alertmanager's v2 API takes it."""
    labels = {
        "alertname": alert_name(alert.rule),
        "target": alert.target,
        "backend": alert.backend,
        "rule": alert.rule,
        "severity": "warning",
        "source": "lbctl",
    }
    if alert.server:
        labels["server"] = alert.server
    annotations = {"summary": alert.message}
    if info is not None:
        annotations["rollback"] = info.rollback
        if info.live:
            annotations["live_revision"] = info.live
    started = datetime.fromtimestamp(alert.firing_since or alert.since, tz=UTC)
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": started.isoformat(timespec="milliseconds"),
        "endsAt": ends.isoformat(timespec="milliseconds"),
    }


class AlertmanagerClient:
    def __init__(self, url: str, *, resend: float) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.hold = timedelta(seconds=max(60.0, 4 * resend))
        self.failures = 0
        self.posted = 0

    def publish(self, result: WatchResult, changes: Sequence[Change], infos: Mapping[str, TargetInfo]) -> None:
        now = datetime.now(tz=UTC)
        body = [payload(a, infos.get(a.target), ends=now + self.hold) for a in result.alerts]
        body += [payload(c.alert, infos.get(c.alert.target), ends=now) for c in changes if c.what == "resolved"]
        if body:
            self.post(body)

    def post(self, body: list[dict[str, Any]]) -> bool:
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                response.read()
            self.posted += 1
            return True
        except OSError as exc:
            self.failures += 1
            print(f"lbctl watch: could not post to Alertmanager at {self.url}: {exc}", file=sys.stderr)
            return False
