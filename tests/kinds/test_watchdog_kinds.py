"""Commit-confirm on a real nginx (local), and Caddy's clear refusal.

nginx: lbctl SIGKILLed right after the reload; the watchdog on the LB host puts the previous
config back byte for byte at the deadline and reloads nginx (a new worker generation under the
same master); the next `lbctl status` records `watchdog-reverted`. Caddy is changed through its
admin API, not a file a script can swap back: `--confirm-within` is refused with exit 2.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import LbctlRunner
from tests.kinds.conftest import (
    CADDY_SOURCE,
    NGINX_SOURCE,
    CaddyLab,
    NginxLab,
    caddy_target_toml,
    make_store,
    nginx_target_toml,
)
from tests.kinds.test_nginx_ssh import ssh_toml
from tests.ssh.conftest import Sshd


def wait_for(what: object, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if what():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return bool(what())  # type: ignore[operator]


def test_nginx_killed_after_reload_the_lb_reverts_by_itself(
    tmp_path: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed_after_reload_reverts(tmp_path, nginx_lab, lbctl, monkeypatch, nginx_target_toml(nginx_lab, verify_seconds=0))


def test_nginx_over_ssh_killed_after_reload_the_lb_reverts_by_itself(
    tmp_path: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch, sshd: Sshd
) -> None:
    toml = ssh_toml(nginx_lab, sshd, verify_seconds=0)
    assert 'transport = "ssh"' in toml
    killed_after_reload_reverts(tmp_path, nginx_lab, lbctl, monkeypatch, toml)


def killed_after_reload_reverts(
    tmp_path: Path, lab: NginxLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch, toml: str
) -> None:
    """SIGKILL lbctl right after the reload of a `--confirm-within 2s` deploy: the watchdog reverts."""
    store = make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=NGINX_SOURCE, content=lab.live_text())
    good = tmp_path / "good.conf"
    good.write_text(lab.config(weights={"web1": 3}))
    assert lbctl("deploy", "edge", "--file", str(good), "--yes").code == 0
    new = tmp_path / "new.conf"
    new.write_text(lab.config(weights={"web1": 1}))
    env = {**os.environ, "LBCTL_STORE": str(store), "LBCTL_FAULT_AT": "after:reload"}
    argv = [sys.executable, "-m", "lbctl", "deploy", "edge", "--file", str(new), "--yes", "--confirm-within", "2s"]
    killed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert lab.live_text() == new.read_text()
    master, before = lab.nginx.master_pid(), set(lab.nginx.workers())

    assert wait_for(lambda: lab.live_text() == good.read_text()), "the watchdog did not put the config back"
    assert wait_for(lambda: bool(lab.nginx.workers()) and not set(lab.nginx.workers()) & before)
    assert lab.nginx.master_pid() == master
    with urllib.request.urlopen(f"http://127.0.0.1:{lab.fe_port}/", timeout=5) as answer:
        assert answer.status == 200
    home = lab.nginx.config.parent / f".{lab.nginx.config.name}.lbctl-watchdog"
    assert wait_for(lambda: any(home.glob("*/result")))  # the watchdog saw the new generation too

    assert lab.live_text().encode() == good.read_bytes()  # byte for byte

    result = lbctl("status", "edge", "--json")
    data = json.loads(result.out)["targets"][0]
    assert any(line.startswith("watchdog-reverted") for line in data["watchdog"]), data
    assert data["status"] == "good" and data["drift"] == "none", data
    assert result.code == 0 and data["verdict"] == "healthy", json.dumps(data)
    events = json.loads(lbctl("log", "edge", "--json").out)["events"]
    verdicts = [e["verdict"] for e in events]
    # over ssh, the killed run's lock directory outlived it: status broke it, and said so
    assert verdicts[:2] in (["watchdog-reverted", "interrupted"], ["unlocked", "watchdog-reverted"]), verdicts
    assert not [p for p in home.iterdir()]  # recorded once, then its files are gone


def test_caddy_refuses_confirm_within_clearly(
    tmp_path: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = caddy_lab
    make_store(
        tmp_path / "store",
        lbctl,
        caddy_target_toml(lab, verify_seconds=0),
        monkeypatch,
        source=CADDY_SOURCE,
        content=lab.live_text(),
    )
    before = lab.live_text()
    candidate = tmp_path / "new.json"
    candidate.write_text(lab.config(weights={"web1": 1}))
    result = lbctl("deploy", "edge", "--file", str(candidate), "--yes", "--confirm-within", "2s")
    assert result.code == 2, result.out + result.err
    assert "--confirm-within is not available for caddy" in result.err, result.err
    assert lab.live_text() == before  # nothing was changed
