"""`lbctl rules`: Prometheus alerting rules from each target's intended shares, checked and
unit-tested by the real promtool."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from lbctl.watch.rules import to_yaml
from tests.conftest import LbctlRunner
from tests.watch.conftest import Watched

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
