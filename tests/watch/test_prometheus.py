"""`/metrics` served by `lbctl watch`, scraped by a real Prometheus and checked by promtool."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

from lbctl.lab.monitoring import Prometheus
from lbctl.lab.processes import free_port
from tests.watch.conftest import Running, Watched


def test_prometheus_scrapes_shares_requests_state_and_live_revision(watched: Watched, tmp_path: Path) -> None:
    port = free_port()
    load = watched.load().start()
    running = Running(watched.root, listen=f"127.0.0.1:{port}")
    prometheus = None
    try:
        running.wait_rounds(3)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        served = text.decode()
        assert 'lbctl_watch_server_intended_share{backend="web",server="web2",target="edge"} 0.3333' in served
        assert 'lbctl_watch_server_state{backend="web",server="web1",state="UP",target="edge"} 1.0' in served
        assert "lbctl_watch_live_revision_info{" in served

        prometheus = Prometheus.start(tmp_path / "prometheus", f"127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        shares: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            shares = prometheus.query('lbctl_watch_server_share{target="edge",backend="web"}')
            requests = prometheus.query('lbctl_watch_server_requests_total{target="edge",backend="web"}')
            if len(shares) == 3 and requests:
                break
            time.sleep(0.5)
        assert sorted(s["metric"]["server"] for s in shares) == ["web1", "web2", "web3"]  # type: ignore[index]
        for sample in shares:
            assert abs(float(sample["value"][1]) - 1 / 3) < 0.15  # type: ignore[index]
        live = prometheus.query("lbctl_watch_live_revision_info")
        assert live and len(live[0]["metric"]["revision"]) == 40
        verdict = prometheus.query('lbctl_watch_backend_verdict{backend="web"} == 1')
        assert verdict and verdict[0]["metric"]["verdict"] == "ok"
    finally:
        running.close()
        load.stop()
        if prometheus is not None:
            prometheus.stop()
