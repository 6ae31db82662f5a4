"""The deploy lifecycle over a real sshd to a real HAProxy, through the CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.ssh.conftest import Lab


def _git(store: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(store), *args], capture_output=True, text=True, check=True).stdout


def test_deploy_over_ssh_puts_the_new_config_live_and_keeps_the_old(ssh_lab: Lab, tmp_path: Path) -> None:
    before = ssh_lab.live()
    new = tmp_path / "new.cfg"
    new.write_text(ssh_lab.config(weight=50))

    assert ssh_lab.lbctl("deploy", "edge", "--file", str(new), "-m", "halve web2", "--yes") == 0

    assert ssh_lab.live() == new.read_text()
    assert Path(f"{ssh_lab.haproxy.config}.lbctl-prev").read_text() == before
    assert "weight 50" in _git(ssh_lab.store, "show", "HEAD:configs/edge/haproxy.cfg")
    leftovers = [p.name for p in ssh_lab.haproxy.config.parent.iterdir() if "lbctl-stage" in p.name or p.suffix == ".d"]
    assert leftovers == []  # no staged file, and the LB-side lock is released


def test_validation_failure_leaves_the_lb_untouched(ssh_lab: Lab, tmp_path: Path) -> None:
    good = tmp_path / "good.cfg"
    good.write_text(ssh_lab.config(weight=60))
    assert ssh_lab.lbctl("deploy", "edge", "--file", str(good), "--yes") == 0
    live, head = ssh_lab.live(), _git(ssh_lab.store, "rev-parse", "HEAD")
    broken = tmp_path / "broken.cfg"
    broken.write_text(ssh_lab.config() + "\nbackend oops\n    server x 127.0.0.1:1 bogus-keyword\n")

    assert ssh_lab.lbctl("deploy", "edge", "--file", str(broken), "--yes") == 3

    assert ssh_lab.live() == live
    assert _git(ssh_lab.store, "rev-parse", "HEAD") == head  # refused before the push: no new commit
    assert not [p for p in ssh_lab.haproxy.config.parent.iterdir() if "lbctl-stage" in p.name]


def test_failed_check_rolls_back_automatically_then_rollback_to_last_good(ssh_lab: Lab, tmp_path: Path) -> None:
    good = tmp_path / "good.cfg"
    good.write_text(ssh_lab.config(weight=70))
    assert ssh_lab.lbctl("deploy", "edge", "--file", str(good), "--yes") == 0
    bad = tmp_path / "bad.cfg"
    bad.write_text(ssh_lab.config(route_to="maintenance"))  # every request goes to a dead server

    assert ssh_lab.lbctl("deploy", "edge", "--file", str(bad), "--yes") == 4  # the routing gate refuses it
    assert ssh_lab.lbctl("deploy", "edge", "--file", str(bad), "--yes", "--force") == 1  # verification catches it

    assert ssh_lab.live() == good.read_text()
    assert "[failed: 0]" in ssh_lab.workers()

    other = tmp_path / "other.cfg"
    other.write_text(ssh_lab.config(weight=80))
    assert ssh_lab.lbctl("deploy", "edge", "--file", str(other), "--yes") == 0
    assert ssh_lab.lbctl("rollback", "edge", "--to", "previous", "--yes") == 0
    assert ssh_lab.live() == good.read_text()
    assert ssh_lab.lbctl("rollback", "edge", "--to", "last-good", "--yes") == 0  # already there: nothing to do
    assert ssh_lab.live() == good.read_text()
