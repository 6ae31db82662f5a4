"""The running load balancer is the truth: runtime state, the file it reads, status as a gate."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from lbctl.lab.processes import Haproxy, free_port
from tests.conftest import Lab, LbctlRunner, git, write


def runtime(haproxy: Haproxy, command: str) -> str:
    """One command on HAProxy's stats socket (the runtime API), as an operator would send it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(haproxy.stats_socket))
        s.sendall(command.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def status(lbctl: LbctlRunner, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = lbctl("status", *args, "--json")
    assert result.out, result.err
    return result.code, json.loads(result.out)


def deploy_lab_config(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> str:
    cfg = write(tmp_path / "first.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 50}))
    result = lbctl("deploy", "edge", "--file", str(cfg), "-m", "first", "--yes")
    assert result.code == 0, result.err
    return git(store, "rev-parse", "HEAD").strip()


def test_status_is_a_gate_healthy_then_a_hand_set_weight_shows(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    deploy_lab_config(store, lab, lbctl, tmp_path)
    code, data = status(lbctl, "edge")
    edge = data["targets"][0]
    assert code == 0, edge
    assert edge["verdict"] == "healthy" and data["exit_code"] == 0
    assert edge["running"]["checked"] is True and edge["running"]["in_sync"] is True
    assert edge["origin"]["matches"] is True and edge["origin"]["files"] == [str(lab.haproxy.config)]

    # During an incident, someone drains web2 by hand through the runtime API.
    runtime(lab.haproxy, "set server web/web2 weight 0")
    code, data = status(lbctl, "edge")
    edge = data["targets"][0]
    assert code == 1
    assert edge["verdict"] == "degraded"
    assert edge["drift"] == "none"  # the file is untouched: only the running state says it
    assert edge["running"]["differences"] == ["backend web server web2: weight 0 running, 100 in the config"]
    text = lbctl("status", "edge")
    assert text.code == 1
    assert "RUNNING DRIFT" in text.out and "backend web server web2: weight 0 running, 100 in the config" in text.out

    # A server put in maintenance by hand shows too.
    runtime(lab.haproxy, "set server web/web3 state maint")
    differences = status(lbctl, "edge")[1]["targets"][0]["running"]["differences"]
    assert "backend web server web3: in maintenance running, enabled in the config" in differences

    # Redeploying the same content with --force pushes and reloads it: the hand changes are gone.
    assert lbctl("deploy", "edge", "--force", "--yes").code == 0
    code, data = status(lbctl, "edge")
    assert code == 0, data
    assert data["targets"][0]["running"]["in_sync"] is True


def test_status_exits_6_when_a_target_cannot_be_reached(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    deploy_lab_config(store, lab, lbctl, tmp_path)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    toml = store / "lbctl.toml"
    toml.write_text(
        toml.read_text()
        + f"""
[targets.gone]
kind = "haproxy"
transport = "ssh"
host = "127.0.0.1"
port = {free_port()}
known_hosts = "{known_hosts}"
retries = 0
connect_timeout = 1
source = "configs/edge/haproxy.cfg"
path = "/etc/haproxy/haproxy.cfg"
master_socket = "/run/haproxy-master.sock"
"""
    )
    git(store, "commit", "-qam", "Add a target nobody can reach")

    code, data = status(lbctl)
    verdicts = {t["target"]: t["verdict"] for t in data["targets"]}
    assert verdicts == {"edge": "healthy", "gone": "unreachable"}
    assert code == 6
    assert lbctl("status", "edge").code == 0  # the reachable one alone passes the gate
    assert lbctl("status", "gone").code == 6
