"""`lbctl watch --once` against a real HAProxy under bounded load on loopback."""

from __future__ import annotations

import json
import time

from tests.conftest import LbctlRunner
from tests.watch.conftest import Watched, admin, reload_and_wait


def web(result_json: dict[str, object]) -> dict[str, object]:
    [target] = result_json["targets"]  # type: ignore[misc]
    return next(b for b in target["backends"] if b["name"] == "web")  # type: ignore[no-any-return]


def test_spread_as_the_weights_intend_is_quiet(watched: Watched, lbctl: LbctlRunner) -> None:
    load = watched.load().start()
    try:
        result = lbctl("watch", "edge", "--once", "--window", "2s", "--json")
    finally:
        load.stop()
    assert result.code == 0, result.out + result.err
    data = json.loads(result.out)
    assert data["alerting"] is False
    backend = web(data)
    assert backend["verdict"] == "ok"
    assert backend["requests"] >= 20
    for server in backend["servers"]:
        assert server["intended"] == 0.3333
        assert abs(server["actual"] - 1 / 3) < 0.1


def test_a_weight_set_through_the_runtime_api_alerts_with_exit_9(watched: Watched, lbctl: LbctlRunner) -> None:
    assert admin(watched.lab.haproxy, "set server web/web2 weight 0").strip() == ""
    load = watched.load().start()
    try:
        result = lbctl("watch", "edge", "--once", "--window", "2s")
    finally:
        load.stop()
    assert result.code == 9, result.out + result.err
    assert "web/web2 takes 0% of" in result.out
    assert "its weights intend 33% (runtime weight 0" in result.out
    assert "to undo the last change: lbctl rollback edge --to" in result.out


def test_no_traffic_is_inconclusive_never_a_pass_nor_an_alert(watched: Watched, lbctl: LbctlRunner) -> None:
    admin(watched.lab.haproxy, "set server web/web2 weight 0")  # would alert, if there were traffic
    result = lbctl("watch", "edge", "--once", "--window", "1s", "--json")
    assert result.code == 0, result.out + result.err
    data = json.loads(result.out)
    assert data["targets"][0]["verdict"] == "inconclusive"
    assert data["alerts"] == []
    assert web(data)["verdict"] == "inconclusive"
    assert "fewer than min_requests = 20" in web(data)["note"]


def test_a_reload_restarts_the_counters_and_is_not_read_as_traffic(watched: Watched) -> None:
    from lbctl.store.workspace import open_workspace
    from lbctl.watch.runner import open_watcher

    ws = open_workspace(str(watched.root))
    watcher = open_watcher(ws, [ws.target("edge")], ws.config.watch)
    load = watched.load().start()
    try:
        watcher.sample()
        time.sleep(1.0)
        watcher.sample()
        reload_and_wait(watched.lab.haproxy)  # the new worker's counters start from zero
        watcher.sample()
        time.sleep(1.0)
        watcher.sample()
    finally:
        load.stop()
    changes = watcher.evaluate(for_seconds=0.0)
    report = watcher.reports["edge"]
    assert report.resets == 1
    assert changes == []
    backend = next(b for b in report.backends if b.name == "web")
    assert backend.verdict == "ok", backend
    # Nothing was counted twice, nor backwards: lbctl's totals only grew by real sessions.
    assert all(sent >= 0 for sent, _ in watcher.totals.values())
    assert sum(sent for (_, b, _), (sent, _) in watcher.totals.items() if b == "web") >= backend.requests


def test_a_target_whose_counters_cannot_be_read_exits_6(watched: Watched, lbctl: LbctlRunner) -> None:
    watched.lab.haproxy.stop()
    result = lbctl("watch", "edge", "--once", "--window", "0.2s", "--json")
    assert result.code == 6, result.out + result.err
    assert json.loads(result.out)["targets"][0]["verdict"] == "unreachable"


def test_a_target_without_a_stats_socket_is_a_config_error(watched: Watched, lbctl: LbctlRunner) -> None:
    toml = watched.root / "lbctl.toml"
    toml.write_text("\n".join(line for line in toml.read_text().splitlines() if not line.startswith("stats_socket")))
    result = lbctl("watch", "edge", "--once", "--window", "0.2s")
    assert result.code == 2, result.out + result.err
    assert "stats_socket" in result.err


def test_a_group_watches_its_members(watched: Watched, lbctl: LbctlRunner) -> None:
    toml = watched.root / "lbctl.toml"
    toml.write_text(toml.read_text().replace("[targets.edge]\n", '[targets.edge]\ngroup = "edges"\n'))
    result = lbctl("watch", "@edges", "--once", "--window", "0.5s", "--json")
    assert result.code == 0, result.out + result.err
    assert [t["target"] for t in json.loads(result.out)["targets"]] == ["edge"]
    unknown = lbctl("watch", "@nope", "--once")
    assert unknown.code == 2 and "no target belongs to group 'nope'" in unknown.err
