"""Alerts from `lbctl watch` to a real Alertmanager: raised by a weight set through the runtime API,
resolved when it is restored; a reload raises nothing."""

from __future__ import annotations

import time

from lbctl.lab.monitoring import Alertmanager
from tests.watch.conftest import Running, Watched, admin, reload_and_wait


def wait_for(condition: object, timeout: float = 40.0) -> float:
    """Poll `condition` until true; returns when (wall clock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return time.time()
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:.0f} s")


def test_a_drained_server_alerts_at_alertmanager_and_resolves(watched: Watched, alertmanager: Alertmanager) -> None:
    load = watched.load().start()
    running = Running(watched.root, alertmanager=alertmanager.url)
    try:
        running.wait_rounds(4)
        assert running.rounds[-1].reports[0].verdict == "ok"
        assert alertmanager.alerts(source="lbctl") == []

        admin(watched.lab.haproxy, "set server web/web2 weight 0")
        wait_for(lambda: alertmanager.alerts(alertname="LbctlShareDeviation", server="web2"))
        [alert] = alertmanager.alerts(alertname="LbctlShareDeviation", server="web2")
        assert alert["labels"]["target"] == "edge"
        assert alert["labels"]["backend"] == "web"
        assert alert["annotations"]["rollback"].startswith("lbctl rollback edge --to ")
        assert "its weights intend 33% (runtime weight 0" in alert["annotations"]["summary"]
        fired = [c for _, c in running.changes if c.what == "firing"]
        assert any(c.alert.server == "web2" for c in fired)

        admin(watched.lab.haproxy, "set server web/web2 weight 100")
        wait_for(lambda: not alertmanager.alerts(source="lbctl"))
        assert any(c.what == "resolved" and c.alert.server == "web2" for _, c in running.changes)
    finally:
        running.close()
        load.stop()


def test_a_reload_raises_no_false_alert(watched: Watched, alertmanager: Alertmanager) -> None:
    load = watched.load().start()
    running = Running(watched.root, alertmanager=alertmanager.url)
    try:
        running.wait_rounds(3)
        for _ in range(2):
            reload_and_wait(watched.lab.haproxy)
            running.wait_rounds(3)
        assert sum(r.reports[0].resets for r in running.rounds) >= 1
        assert running.changes == []
        assert alertmanager.alerts(source="lbctl") == []
        assert running.rounds[-1].reports[0].verdict == "ok"
    finally:
        running.close()
        load.stop()


def test_no_traffic_is_inconclusive_and_sends_nothing(watched: Watched, alertmanager: Alertmanager) -> None:
    admin(watched.lab.haproxy, "set server web/web2 weight 0")
    running = Running(watched.root, alertmanager=alertmanager.url)
    try:
        running.wait_rounds(4)
        assert {r.reports[0].verdict for r in running.rounds} == {"inconclusive"}
        assert running.changes == []
        assert alertmanager.alerts(source="lbctl") == []
    finally:
        running.close()
