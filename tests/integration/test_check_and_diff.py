"""`lbctl check` and `lbctl diff` through the CLI, on real files and a real HAProxy validator."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Lab, LbctlRunner, git, write

BALANCE = """
[[targets.edge.checks]]
type = "balance"
max_share = 0.6
"""


def test_check_passes_a_good_head(store: Path, lbctl: LbctlRunner, lab: Lab) -> None:
    (store / "configs/edge/haproxy.cfg").write_text(lab.config())
    git(store, "commit", "-qam", "adopt")
    result = lbctl("check", "edge")
    assert result.code == 0, result.out + result.err
    assert "passes for edge" in result.out and "haproxy" in result.out


def test_check_lists_every_finding(store: Path, lbctl: LbctlRunner, lab: Lab, tmp_path: Path) -> None:
    (store / "lbctl.toml").write_text((store / "lbctl.toml").read_text() + BALANCE)
    git(store, "commit", "-qam", "balance policy")
    lopsided = write(tmp_path / "lopsided.cfg", lab.config(weights={"web1": 100, "web2": 0, "web3": 0}))
    result = lbctl("check", "edge", "--file", str(lopsided), "--json")
    assert result.code == 3
    report = json.loads(result.out)
    assert report["ok"] is False and any("max_share" in f for f in report["findings"])
    broken = write(tmp_path / "broken.cfg", lab.config().replace("balance roundrobin", "balance nonsense"))
    result = lbctl("check", "edge", "--file", str(broken))
    assert result.code == 3 and "rejected the candidate config" in result.out
    live = lab.live_text()
    assert "nonsense" not in live and not list(lab.haproxy.config.parent.glob(".*lbctl-stage*"))


def test_diff_two_files_json_and_exit_code(lbctl: LbctlRunner, lab: Lab, tmp_path: Path) -> None:
    a = write(tmp_path / "a.cfg", lab.config())
    b = write(tmp_path / "b.cfg", lab.config(weights={"web1": 100, "web2": 0, "web3": 100}))
    result = lbctl("diff", "--kind", "haproxy", str(a), str(b), "--format", "json", "--exit-code")
    assert result.code == 1
    data = json.loads(result.out)
    assert data["schema_version"] == 1
    assert [c["text"] for c in data["changes"]] == ["backend web: server web2 weight 100 → 0"]
    same = write(tmp_path / "same.cfg", "# reformatted\n" + lab.config().replace("    ", "\t"))
    assert lbctl("diff", "--kind", "haproxy", str(a), str(same), "--exit-code").code == 0


def test_diff_masks_secrets_and_reports_parse_errors(lbctl: LbctlRunner, tmp_path: Path) -> None:
    a = write(tmp_path / "a.cfg", "userlist ops\n    user admin password $6$oldhash\n")
    b = write(tmp_path / "b.cfg", "userlist ops\n    user admin password $6$newhash\n")
    result = lbctl("diff", "--kind", "haproxy", str(a), str(b))
    assert "oldhash" not in result.out and "newhash" not in result.out and "****" in result.out
    bad = write(tmp_path / "bad.cfg", 'backend web\n    server s1 "127.0.0.1:80\n')
    result = lbctl("diff", "--kind", "haproxy", str(a), str(bad))
    assert result.code == 3 and f"{bad}:2" in result.err
