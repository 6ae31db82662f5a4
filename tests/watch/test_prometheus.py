"""`/metrics` served by `lbctl watch`, scraped by a real Prometheus and checked by promtool."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

from lbctl.lab.monitoring import Prometheus
from lbctl.lab.processes import free_port
from tests.conftest import LbctlRunner, git
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


def _gauge(text: str, name: str) -> float | None:
    line = next((ln for ln in text.splitlines() if ln.startswith(name + '{target="edge"} ')), None)
    return float(line.split()[-1]) if line else None


def test_a_pending_commit_confirm_is_a_gauge_with_its_deadline(
    watched: Watched, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    git(watched.root, "commit", "-qam", "watch settings")
    port = free_port()
    running = Running(watched.root, listen=f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        running.wait_rounds(1)
        quiet = urllib.request.urlopen(url, timeout=5).read().decode()
        assert _gauge(quiet, "lbctl_pending_confirm") == 0.0
        assert _gauge(quiet, "lbctl_pending_confirm_deadline_seconds") is None

        change = tmp_path / "change.cfg"
        change.write_text(watched.lab.config(weights={"web3": 90}))
        deployed = time.time()
        result = lbctl("deploy", "edge", "--file", str(change), "-m", "Tune web3", "--yes", "--confirm-within", "5m")
        assert result.code == 0, result.err
        assert "PENDING CONFIRMATION" in result.out
        running.wait_rounds(2)
        text = urllib.request.urlopen(url, timeout=5).read()
        checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert _gauge(text.decode(), "lbctl_pending_confirm") == 1.0
        deadline = _gauge(text.decode(), "lbctl_pending_confirm_deadline_seconds")
        assert deadline is not None and deployed + 290 < deadline < time.time() + 301

        assert lbctl("confirm", "edge").code == 0
        running.wait_rounds(2)
        after = urllib.request.urlopen(url, timeout=5).read().decode()
        assert _gauge(after, "lbctl_pending_confirm") == 0.0
        assert _gauge(after, "lbctl_pending_confirm_deadline_seconds") is None
    finally:
        running.close()
