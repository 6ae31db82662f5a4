"""The balance check on a real Caddy 2.6: lbctl's own probes counted per `X-Backend` header.

The lab's backends answer with `X-Backend: web1` etc.; Caddy can also set the header to the
upstream's address itself. Caddy's own view (`/reverse_proxy/upstreams`) adds health.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lbctl.lab.processes import free_port
from tests.conftest import LbctlRunner, write
from tests.kinds.conftest import CADDY_SOURCE, CaddyLab, caddy_target_toml, make_store

BALANCE = """
[[targets.edge.checks]]
type = "balance"
max_share = 0.6
min_requests = 10
max_probes = 40
"""


@pytest.fixture
def store(tmp_path: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    toml = caddy_target_toml(caddy_lab, verify_seconds=0.75) + BALANCE
    return make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=CADDY_SOURCE, content=caddy_lab.live_text())


def _proxy(config: dict[str, Any]) -> dict[str, Any]:
    handler: dict[str, Any] = config["apps"]["http"]["servers"]["www"]["routes"][0]["handle"][0]
    return handler


def _balance(out: str) -> dict[str, Any]:
    check: dict[str, Any] = next(c for c in json.loads(out)["checks"] if c["name"] == "balance")
    return check


def test_a_healthy_change_is_verified_with_each_upstreams_share(
    store: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    new = write(tmp_path / "new.json", caddy_lab.config(weights={"web1": 2, "web2": 2, "web3": 2}))

    result = lbctl("deploy", "edge", "--file", str(new), "--yes", "--json")

    assert result.code == 0, result.out + result.err
    balance = _balance(result.out)
    assert balance["ok"], balance
    servers = balance["figures"]["backends"]["www"]["servers"]
    assert set(servers) == {"web1", "web2", "web3"}  # the backends' own names, from X-Backend
    assert all(0.25 <= s["share"] <= 0.42 and s["status"] == "UP" for s in servers.values()), servers
    assert all(s["share_before"] is not None for s in servers.values())  # the baseline ran under the old config
    # No real traffic is counted on Caddy: the check's note says the numbers are lbctl's probes.
    assert balance["figures"]["probes_sent"] > 0 and "probe(s) of its own" in balance["summary"]
    event = json.loads(lbctl("log", "edge", "--json").out)["events"][0]
    recorded = next(c for c in event["checks"] if c["name"] == "balance")["figures"]["backends"]["www"]["servers"]
    assert {name: s["share"] for name, s in recorded.items()} == {name: s["share"] for name, s in servers.items()}


def test_upstreams_named_by_caddy_are_keyed_by_address_with_caddys_health(
    store: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    config = json.loads(caddy_lab.config(weights={"web1": 1, "web2": 2, "web3": 1}))
    _proxy(config)["headers"]["response"]["set"]["X-Backend"] = ["{http.reverse_proxy.upstream.hostport}"]
    new = write(tmp_path / "named.json", json.dumps(config))

    result = lbctl("deploy", "edge", "--file", str(new), "--yes", "--json")

    assert result.code == 0, result.out + result.err
    servers = _balance(result.out)["figures"]["backends"]["www"]["servers"]
    labels = {name: caddy_lab.server_label(name) for name in ("web1", "web2", "web3")}
    assert set(servers) == set(labels.values())
    web2 = servers[labels["web2"]]
    assert web2["weight"] == 2 and 0.4 <= web2["share"] <= 0.6, servers  # listed twice: half the probes
    assert all(s["status"] == "UP" for s in servers.values())


def test_everything_on_one_upstream_is_caught_and_rolled_back(
    tmp_path: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two upstreams dial ports where nothing listens; Caddy retries on web1 (the live config
    already retries), so every request still gets 200 and the http check passes, but all of
    them land on one server."""
    config = json.loads(caddy_lab.config())
    _proxy(config)["load_balancing"].update({"try_duration": "2s", "try_interval": "5ms"})
    caddy_lab.caddy.load(config)
    before = caddy_lab.live_text()
    toml = caddy_target_toml(caddy_lab, verify_seconds=0.75) + BALANCE
    make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=CADDY_SOURCE, content=before)
    web1, dead = caddy_lab.server_label("web1"), [f"127.0.0.1:{free_port()}" for _ in range(2)]
    _proxy(config)["upstreams"] = [{"dial": web1}, *({"dial": d} for d in dead)]
    bad = write(tmp_path / "bad.json", json.dumps(config))

    result = lbctl("deploy", "edge", "--file", str(bad), "--yes")

    assert result.code == 1, result.out + result.err
    assert "web1 takes 100%" in result.out + result.err
    assert "unseen upstream" in result.out + result.err
    assert caddy_lab.live_text() == before


def test_a_hash_policy_is_not_judged_on_spread(
    store: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    """One client and one URL always hash to one upstream: that says nothing about real users."""
    config = json.loads(caddy_lab.config())
    _proxy(config)["load_balancing"]["selection_policy"] = {"policy": "uri_hash"}
    new = write(tmp_path / "hash.json", json.dumps(config))

    result = lbctl("deploy", "edge", "--file", str(new), "--yes", "--json")

    assert result.code == 0, result.out + result.err
    servers = _balance(result.out)["figures"]["backends"]["www"]["servers"]
    assert sorted(s["share"] for s in servers.values() if s["share"]) == [1.0], servers


def test_answers_that_name_no_backend_refuse_the_check_before_the_swap(
    tmp_path: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = json.loads(caddy_lab.config())
    _proxy(config)["headers"]["response"]["delete"] = ["X-Backend"]
    caddy_lab.caddy.load(config)
    anonymous = caddy_lab.live_text()
    toml = caddy_target_toml(caddy_lab) + BALANCE
    make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=CADDY_SOURCE, content=anonymous)
    new = write(tmp_path / "new.json", anonymous.replace('"policy":"round_robin"', '"policy":"least_conn"'))

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")

    assert result.code == 2, result.out + result.err
    assert "X-Backend" in result.err and "header_down" in result.err
    assert caddy_lab.live_text() == anonymous


def test_readings_add_up_until_caddy_runs_another_config(caddy_lab: CaddyLab) -> None:
    from lbctl.checks.counters import window
    from lbctl.config import target_from
    from lbctl.kinds.caddy import CaddyKind
    from lbctl.transports.http import HttpTransport

    target = target_from(
        {
            "name": "edge",
            "kind": "caddy",
            "transport": "http",
            "api": caddy_lab.caddy.api,
            "source": "c.json",
            "checks": [{"type": "balance", "probe_url": f"http://127.0.0.1:{caddy_lab.fe_port}/"}],
        }
    )
    kind = CaddyKind(target)
    with HttpTransport(target) as transport:
        first = kind.traffic_snapshot(transport)
        second = kind.traffic_snapshot(transport)
        assert second.process == first.process
        assert [s.sessions for s in window(first, second).servers] == [4, 4, 4]  # 12 probes, round robin
        caddy_lab.caddy.load(json.loads(caddy_lab.config(weights={"web1": 1, "web2": 1, "web3": 0})))
        third = kind.traffic_snapshot(transport)
        assert third.process != second.process
        shares = {s.server: s.sessions for s in window(first, third).servers}
        assert shares == {"web1": 4, "web2": 4}  # counted from zero under the new config
        assert third.backend_sessions == {}  # no real traffic is claimed
        assert kind.probes_sent == 32
