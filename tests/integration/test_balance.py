"""The outage as tests: a real HAProxy, three backends, bounded load during each deploy.

Each scenario is judged by the `balance` check from HAProxy's own counters (`show stat`
over the stats socket), against the baseline taken before the swap.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbctl.lab.processes import Backends, Haproxy, Load, free_port, haproxy_config, haproxy_target_toml
from tests.conftest import LbctlRunner, git, write

LEGACY = """
backend legacy
    server old1 127.0.0.1:{legacy_port} check inter 1s
"""


class Outage:
    """A HAProxy serving backend `web` (3 servers) and `legacy` (1), under light load."""

    def __init__(self, root: Path, backends: Backends, *, server_options: str = "") -> None:
        self.root = root
        self.backends = backends
        self.fe_port = free_port()
        self.legacy = Backends.start(["old1"])
        self.server_options = server_options
        self.haproxy = Haproxy.start(root / "lb", self.config())
        self.load = Load(f"http://127.0.0.1:{self.fe_port}/", rate=25, concurrency=2, max_requests=600, max_seconds=60)

    def config(
        self, *, route_to: str = "web", weights: dict[str, int] | None = None, server_options: str | None = None
    ) -> str:
        return haproxy_config(
            frontend_port=self.fe_port,
            backends=self.backends.ports,
            stats_socket=self.root / "lb" / "admin.sock",
            route_to=route_to,
            weights=weights,
            extra_backends=LEGACY.format(legacy_port=self.legacy.ports["old1"]),
            server_options=self.server_options if server_options is None else server_options,
        )

    def toml(self, verify_seconds: float = 4) -> str:
        defaults = f"[defaults]\nverify_seconds = {verify_seconds}\ncheck_interval = 0.25\n\n"
        url = f"http://127.0.0.1:{self.fe_port}/"
        return defaults + haproxy_target_toml("edge", self.haproxy, url, probes=2, balance=0.6)

    def stop(self) -> None:
        self.load.stop()
        self.haproxy.stop()
        self.legacy.stop()


def _start(
    tmp_path: Path, backends: Backends, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch, **kw: str
) -> Iterator[Outage]:
    outage = Outage(tmp_path, backends, **kw)
    try:
        store = tmp_path / "store"
        assert lbctl("init", str(store)).code == 0
        (store / "lbctl.toml").write_text(outage.toml())
        (store / "configs/edge/haproxy.cfg").write_text(outage.config())
        git(store, "commit", "-qam", "Adopt edge")
        monkeypatch.chdir(store)
        outage.load.start()
        time.sleep(1.0)  # traffic before the change, for the baseline
        yield outage
    finally:
        outage.stop()


@pytest.fixture
def outage(tmp_path: Path, backends: Backends, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Iterator[Outage]:
    yield from _start(tmp_path, backends, lbctl, monkeypatch)


def balance_figures(lbctl: LbctlRunner, index: int = 0) -> dict:  # type: ignore[type-arg]
    events = json.loads(lbctl("log", "edge", "--json").out)["events"]
    return next(c for c in events[index]["checks"] if c["name"] == "balance")  # type: ignore[no-any-return]


def test_a_weights_100_0_0_are_refused_before_the_push(outage: Outage, lbctl: LbctlRunner, tmp_path: Path) -> None:
    live_before = outage.haproxy.config.read_text()
    head = git(Path.cwd(), "rev-parse", "HEAD")
    bad = write(tmp_path / "bad.cfg", outage.config(weights={"web1": 100, "web2": 0, "web3": 0}))

    result = lbctl("deploy", "edge", "--file", str(bad), "--yes")

    assert result.code == 3, result.err
    assert "refused at the plan stage" in result.err and "max_share 60%" in result.err and "--force" in result.err
    assert outage.haproxy.config.read_text() == live_before
    assert git(Path.cwd(), "rev-parse", "HEAD") == head
    check = lbctl("deploy", "edge", "--file", str(bad), "--dry-run", "--json")
    assert check.code == 3 and json.loads(check.out)["plan"]["refusals"]


def test_b_forced_100_0_0_is_detected_and_rolled_back(outage: Outage, lbctl: LbctlRunner, tmp_path: Path) -> None:
    live_before = outage.haproxy.config.read_text()
    bad = write(tmp_path / "bad.cfg", outage.config(weights={"web1": 100, "web2": 0, "web3": 0}))

    result = lbctl("deploy", "edge", "--file", str(bad), "--force", "--yes", "-m", "weights 100/0/0")

    assert result.code == 1, result.out + result.err
    assert outage.haproxy.config.read_text() == live_before
    failed = balance_figures(lbctl, index=1)
    assert failed["ok"] is False and "web1 takes 100%" in failed["summary"]
    servers = failed["figures"]["backends"]["web"]["servers"]
    assert servers["web1"]["share"] == 1.0 and servers["web2"]["sessions"] == 0
    assert servers["web2"]["status"].startswith("UP") and servers["web2"]["weight"] == 0  # UP, yet starved
    assert servers["web1"]["share_before"] < 0.5  # before the change, traffic was spread
    status = json.loads(lbctl("status", "edge", "--json").out)["targets"][0]
    assert status["status"] == "good" and len(status["bad"]) == 1


def test_c_routing_change_that_starves_a_backend(outage: Outage, lbctl: LbctlRunner, tmp_path: Path) -> None:
    live_before = outage.haproxy.config.read_text()
    bad = write(tmp_path / "bad.cfg", outage.config(route_to="legacy"))  # weights untouched

    started = time.monotonic()
    # --force: the plan refuses this routing change before the push; here it gets through, and the
    # balance check must catch it
    result = lbctl("deploy", "edge", "--file", str(bad), "--yes", "-m", "route www to legacy", "--force")
    elapsed = time.monotonic() - started

    assert result.code == 1, result.out + result.err
    assert outage.haproxy.config.read_text() == live_before
    failed = balance_figures(lbctl, index=1)
    assert "backend web carried 100% of traffic before" in failed["summary"]
    events = json.loads(lbctl("log", "edge", "--json").out)["events"]
    verify = next(s for s in events[1]["stages"] if s["name"] == "verify")
    assert verify["ok"] is False and verify["seconds"] < 4  # ended early: a hard signal
    assert elapsed < 15
    # the http check alone would have passed: legacy answers 200
    http = next(c for c in events[1]["checks"] if c["name"].startswith("http"))
    assert http["ok"] is True


def test_e_harmless_change_is_verified_good(outage: Outage, lbctl: LbctlRunner, tmp_path: Path) -> None:
    good = write(tmp_path / "good.cfg", outage.config(weights={"web1": 100, "web2": 100, "web3": 80}))
    result = lbctl("deploy", "edge", "--file", str(good), "--yes")
    assert result.code == 0, result.out + result.err
    figures = balance_figures(lbctl)
    assert figures["ok"] is True
    shares = {name: s["share"] for name, s in figures["figures"]["backends"]["web"]["servers"].items()}
    assert all(0.15 < share < 0.5 for share in shares.values()), shares
    assert figures["figures"]["backends"]["web"]["sessions"] >= 30


@pytest.fixture
def slow_outage(tmp_path: Path, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Iterator[Outage]:
    slow = Backends.start(["web1", "web2", "web3"], delay_ms=150)
    try:
        yield from _start(tmp_path, slow, lbctl, monkeypatch)
    finally:
        slow.stop()


def test_d_overloaded_server_is_detected(slow_outage: Outage, lbctl: LbctlRunner, tmp_path: Path) -> None:
    slow_outage.load.stop()
    busy = Load(slow_outage.load.url, rate=50, concurrency=8, max_requests=100, max_seconds=30).start()
    try:
        bad = write(tmp_path / "bad.cfg", slow_outage.config(server_options="maxconn 1"))
        result = lbctl("deploy", "edge", "--file", str(bad), "--yes", "-m", "cap connections")
    finally:
        busy.stop()
    assert result.code == 1, result.out + result.err
    failed = balance_figures(lbctl, index=1)
    assert failed["ok"] is False and "overloaded" in failed["summary"]
    assert "maxconn 1" not in slow_outage.haproxy.config.read_text()
