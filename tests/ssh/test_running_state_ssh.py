"""Over ssh: the running HAProxy's state and the file it reads are read on the LB host."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import LbctlRunner
from tests.integration.test_running_state import runtime
from tests.ssh.conftest import Lab


def status(lbctl: LbctlRunner, lab: Lab) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = lbctl("status", "edge", "--store", str(lab.store), "--json")
    assert result.out, result.err
    return result.code, json.loads(result.out)["targets"][0]


def test_hand_set_weight_and_wrong_path_over_ssh(ssh_lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    new = tmp_path / "new.cfg"
    new.write_text(ssh_lab.config(weight=50))
    assert ssh_lab.lbctl("deploy", "edge", "--file", str(new), "-m", "web2 at 50", "--yes") == 0
    code, edge = status(lbctl, ssh_lab)
    assert code == 0, edge["reasons"]
    assert edge["origin"]["files"] == [str(ssh_lab.haproxy.config)] and edge["running"]["in_sync"] is True

    runtime(ssh_lab.haproxy, "set server web/web1 weight 7")
    code, edge = status(lbctl, ssh_lab)
    assert code == 1
    assert edge["running"]["differences"] == ["backend web server web1: weight 7 running, 100 in the config"]

    # rollback --to last-good: already there, but not right: it is pushed again and the hand change is gone.
    result = lbctl("rollback", "edge", "--to", "last-good", "--yes", "--store", str(ssh_lab.store))
    assert result.code == 0 and "nothing to do" not in result.out, result.out + result.err
    assert status(lbctl, ssh_lab)[0] == 0

    toml = ssh_lab.store / "lbctl.toml"
    wrong = ssh_lab.haproxy.config.with_name("haproxy.conf")
    toml.write_text(toml.read_text().replace(f'path = "{ssh_lab.haproxy.config}"', f'path = "{wrong}"'))
    subprocess.run(["git", "-C", str(ssh_lab.store), "commit", "-qam", "wrong path"], check=True)
    result = lbctl("deploy", "edge", "--file", str(new), "--yes", "--force", "--store", str(ssh_lab.store))
    assert result.code == 2 and f"reads {ssh_lab.haproxy.config}" in result.err, result.err
    assert not wrong.exists()
    assert status(lbctl, ssh_lab)[0] == 2


def test_a_lock_left_on_the_lb_host_makes_status_degraded(ssh_lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    new = tmp_path / "new.cfg"
    new.write_text(ssh_lab.config(weight=50))
    assert ssh_lab.lbctl("deploy", "edge", "--file", str(new), "-m", "web2 at 50", "--yes") == 0
    assert status(lbctl, ssh_lab)[0] == 0
    # An lbctl killed outright (SIGKILL, a lost laptop) leaves its lock directory on the LB host.
    left = ssh_lab.haproxy.config.with_name(".haproxy.cfg.lbctl.lock.d")
    left.mkdir()
    holder = {"holder": "alice@laptop", "pid": 4242, "operation": "deploy", "target": "edge", "started": "2026-11-30"}
    (left / "info").write_text(json.dumps(holder) + "\n")

    code, edge = status(lbctl, ssh_lab)

    assert code == 1 and edge["verdict"] == "degraded"
    assert "alice@laptop" in edge["lb_lock"]
    assert any("lock on the LB host is held" in r for r in edge["reasons"])
