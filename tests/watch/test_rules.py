"""`lbctl rules`: Prometheus alerting rules from each target's intended shares, checked and
unit-tested by the real promtool."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from lbctl.lab.monitoring import Prometheus
from lbctl.lab.processes import free_port, haproxy_config
from lbctl.watch.rules import to_yaml
from tests.conftest import Lab, LbctlRunner
from tests.watch.conftest import Watched, admin, reload_and_wait

SERVERS = ("web1", "web2", "web3")


def series(server: str, values: str) -> dict[str, str]:
    return {"series": f'haproxy_server_sessions_total{{job="haproxy",proxy="web",server="{server}"}}', "values": values}


def test_rules_pass_promtool_check_and_fire_as_watch_would(
    watched: Watched, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    watched.set_watch(window="1m", **{"for": "1m"}, min_requests=30)
    result = lbctl("rules", "edge", "--selector", 'job="haproxy"')
    assert result.code == 0, result.err
    rules_file = tmp_path / "lbctl-rules.yml"
    rules_file.write_text(result.out)
    checked = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout

    data = json.loads(lbctl("rules", "edge", "--selector", 'job="haproxy"', "--json").out)
    deviation = {
        r["labels"]["server"]: r for r in data["groups"][0]["rules"] if r["labels"]["rule"] == "share-deviation"
    }
    assert sorted(deviation) == list(SERVERS)
    assert "0.3333" in deviation["web2"]["expr"]
    assert deviation["web2"]["annotations"]["rollback"].startswith("lbctl rollback edge --to ")

    def expected(server: str) -> dict[str, object]:
        rule = deviation[server]
        return {"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}

    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "15s",
        "tests": [
            {  # web2 drained by hand: it takes nothing, web1 and web3 half each, for minutes
                "interval": "15s",
                "input_series": [
                    series("web1", "0+100x40"),
                    series("web2", "0+0x40"),
                    series("web3", "0+100x40"),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "LbctlShareDeviation",
                        "exp_alerts": [expected(s) for s in SERVERS],
                    }
                ],
            },
            {  # spread as intended, through a reload that restarts every counter: nothing fires
                "interval": "15s",
                "input_series": [series(s, "0+100x20 0+100x20") for s in SERVERS],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "LbctlShareDeviation", "exp_alerts": []},
                    {"eval_time": "5m", "alertname": "LbctlErrorRatio", "exp_alerts": []},
                ],
            },
            {  # too little traffic (under min_requests in the window): inconclusive, nothing fires
                "interval": "15s",
                "input_series": [series("web1", "0+1x40"), series("web2", "0+0x40"), series("web3", "0+1x40")],
                "alert_rule_test": [{"eval_time": "5m", "alertname": "LbctlShareDeviation", "exp_alerts": []}],
            },
        ],
    }
    test_file = tmp_path / "lbctl-rules.test.yml"
    test_file.write_text(to_yaml(tests) + "\n")
    ran = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr + test_file.read_text()
    assert "SUCCESS" in ran.stdout


EXPORTER = """
frontend exporter
    bind 127.0.0.1:{port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
"""


def test_a_real_prometheus_fires_the_rules_on_haproxys_own_exporter(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    """The rules name the series HAProxy 2.6's exporter really serves: drained by the runtime API, web2 alerts."""
    exporter = free_port()
    lab.haproxy.config.write_text(
        haproxy_config(
            frontend_port=lab.fe_port,
            backends=lab.backends.ports,
            stats_socket=lab.haproxy.stats_socket,
            extra_backends=EXPORTER.format(port=exporter),
        )
    )
    reload_and_wait(lab.haproxy)
    assert lbctl("pull", "edge").code == 0
    watched = Watched(store, lab)
    watched.set_watch(window="5s", **{"for": "2s"}, min_requests=20)
    result = lbctl("rules", "edge")
    assert result.code == 0, result.err
    rules_file = tmp_path / "lbctl-rules.yml"
    rules_file.write_text(result.out)

    load = watched.load().start()
    prometheus = Prometheus.start(tmp_path / "prometheus", f"127.0.0.1:{exporter}", rule_files=[rules_file])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not prometheus.query('haproxy_server_sessions_total{proxy="web"}'):
            time.sleep(0.5)
        time.sleep(6)  # a window of even traffic: nothing may fire
        assert [a for a in prometheus.alerts() if a["state"] == "firing"] == []

        admin(lab.haproxy, "set server web/web2 weight 0")
        deadline = time.monotonic() + 40
        firing: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            firing = [a for a in prometheus.alerts() if a["state"] == "firing"]
            if any(a["labels"].get("server") == "web2" for a in firing):  # type: ignore[attr-defined]
                break
            time.sleep(0.5)
        web2 = [a for a in firing if a["labels"]["server"] == "web2"]  # type: ignore[index]
        assert web2, firing
        assert web2[0]["labels"]["alertname"] == "LbctlShareDeviation"  # type: ignore[index]
        assert web2[0]["annotations"]["rollback"].startswith("lbctl rollback edge --to ")  # type: ignore[index]
    finally:
        load.stop()
        prometheus.stop()
