"""The running load balancer is the truth: runtime state, the file it reads, status as a gate."""

from __future__ import annotations

import json
from pathlib import Path

from lbctl.kinds.haproxy import parse_show_proc
from lbctl.lab.processes import Haproxy, free_port
from tests.conftest import Lab, LbctlRunner, git, write


def runtime(haproxy: Haproxy, command: str) -> str:
    return haproxy.runtime_command(command)


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


def test_rollback_to_last_good_on_an_unhealthy_target_at_last_good_pushes_it_again(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    sha = deploy_lab_config(store, lab, lbctl, tmp_path)
    healthy = lbctl("rollback", "edge", "--to", "last-good", "--yes")
    assert healthy.code == 0 and "nothing to do" in healthy.out  # healthy and in sync: truly nothing to do
    workers = lab.haproxy.master_command("show proc")

    # Every server of the backend put in maintenance by hand: the frontend answers 503.
    for server in ("web1", "web2", "web3"):
        runtime(lab.haproxy, f"set server web/{server} state maint")
    assert status(lbctl, "edge")[1]["targets"][0]["verdict"] == "degraded"

    result = lbctl("rollback", "edge", "--to", "last-good", "--yes")

    assert result.code == 0, result.out + result.err
    assert "nothing to do" not in result.out and "verified good" in result.out
    assert "pushing it again: running drift" in result.err
    assert lab.haproxy.master_command("show proc") != workers  # reloaded: a new worker
    code, data = status(lbctl, "edge")
    edge = data["targets"][0]
    assert code == 0 and edge["live"] == sha and edge["health"][0]["ok"] is True, edge


def wrong_path_store(store: Path, lab: Lab) -> Path:
    """The target says haproxy.conf; the running HAProxy reads haproxy.cfg."""
    wrong = lab.haproxy.config.with_name("haproxy.conf")
    wrong.write_text(lab.live_text())
    toml = store / "lbctl.toml"
    toml.write_text(toml.read_text().replace(f'path = "{lab.haproxy.config}"', f'path = "{wrong}"'))
    git(store, "commit", "-qam", "Point edge at the wrong file")
    return wrong


def test_a_path_the_lb_does_not_read_is_refused_naming_the_real_one(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    wrong = wrong_path_store(store, lab)
    before = wrong.read_text(), lab.live_text(), lab.haproxy.master_command("show proc")
    cfg = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 10}))

    result = lbctl("deploy", "edge", "--file", str(cfg), "-m", "would change the wrong file", "--yes")

    assert result.code == 2, result.out + result.err
    assert f"reads {lab.haproxy.config}" in result.err and f'path = "{lab.haproxy.config}"' in result.err
    assert (wrong.read_text(), lab.live_text(), lab.haproxy.master_command("show proc")) == before
    assert "would change the wrong file" not in git(store, "log", "-1", "--format=%s")

    code, data = status(lbctl, "edge")
    edge = data["targets"][0]
    assert code == 2 and edge["verdict"] == "misconfigured"
    assert edge["origin"]["matches"] is False and edge["origin"]["files"] == [str(lab.haproxy.config)]
    text = lbctl("status", "edge")
    assert text.code == 2 and f"WRONG: the LB reads {lab.haproxy.config}" in text.out

    checked = lbctl("check", "edge", "--file", str(cfg))
    assert checked.code == 2 and f"reads {lab.haproxy.config}" in checked.err


def test_without_a_socket_lbctl_says_it_cannot_know(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    toml = store / "lbctl.toml"
    text = toml.read_text()
    text = text.replace(f'stats_socket = "{lab.haproxy.stats_socket}"\n', "")
    text = text.replace(f'master_socket = "{lab.haproxy.master_socket}"\n', 'reload = "true"\nconfirm_reload = false\n')
    toml.write_text(text)
    git(store, "commit", "-qam", "No runtime API")

    code, data = status(lbctl, "edge")
    edge = data["targets"][0]
    assert code == 0, edge["reasons"]  # not knowing is said, not counted as a fault
    assert edge["origin"]["known"] is False and "neither master_socket nor stats_socket" in edge["origin"]["detail"]
    assert edge["running"]["checked"] is False
    text_out = lbctl("status", "edge").out
    assert "path        not checked: neither master_socket nor stats_socket is set" in text_out


def test_running_state_through_the_master_cli_alone(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    toml = store / "lbctl.toml"
    toml.write_text(toml.read_text().replace(f'stats_socket = "{lab.haproxy.stats_socket}"\n', ""))
    git(store, "commit", "-qam", "Only the master socket")
    deploy_lab_config(store, lab, lbctl, tmp_path)
    runtime(lab.haproxy, "set server web/web1 weight 3")

    code, data = status(lbctl, "edge")

    edge = data["targets"][0]
    assert code == 1 and "through " + str(lab.haproxy.master_socket) in edge["running"]["detail"]
    assert edge["running"]["differences"] == ["backend web server web1: weight 3 running, 100 in the config"]


def test_a_reload_that_did_not_take_fails_verification_and_is_undone(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    """The issue's first case: a reload command that reloads nothing, and no master socket to confirm with."""
    before = deploy_lab_config(store, lab, lbctl, tmp_path)
    good_text = lab.live_text()
    toml = store / "lbctl.toml"
    text = toml.read_text().replace(f'master_socket = "{lab.haproxy.master_socket}"\n', 'reload = "true"\n')
    toml.write_text(text)
    git(store, "commit", "-qam", "A reload command that does nothing")
    workers = parse_show_proc(lab.haproxy.master_command("show proc")).workers
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 10}))

    result = lbctl("deploy", "edge", "--file", str(new), "-m", "web3 at 10", "--yes")

    assert result.code == 1, result.out + result.err
    # Caught by the conform stage (or, where the reload is confirmed through the stats socket, before it).
    said = result.out + result.err
    assert "backend web server web3: weight 50 running, 10 in the config" in said or "reload failed" in said, said
    assert lab.live_text() == good_text  # the file is back to what the LB runs
    assert parse_show_proc(lab.haproxy.master_command("show proc")).workers == workers  # it never reloaded
    code, data = status(lbctl, "edge")
    edge = data["targets"][0]
    assert code == 0, edge["reasons"]
    assert edge["running"]["in_sync"] is True and git(store, "show", "HEAD:configs/edge/haproxy.cfg") == good_text
    assert before in [e["from_rev"] for e in json.loads(lbctl("log", "edge", "--json").out)["events"]]
