"""A wrong or missing HAProxy socket is a setting to fix (exit 2, naming the key), found before any change."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Lab, LbctlRunner, git, target_toml, write
from tests.integration.test_reload_commands import proc


def point(store: Path, lab: Lab, key: str, value: str) -> None:
    old = getattr(lab.haproxy, key)
    (store / "lbctl.toml").write_text(target_toml(lab).replace(f'{key} = "{old}"', f'{key} = "{value}"'))
    git(store, "commit", "-qam", f"{key} = {value}")


def test_a_missing_master_socket_is_exit_2_everywhere_and_nothing_changes(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    wrong = str(lab.workdir / "no-such-master.sock")
    point(store, lab, "master_socket", wrong)
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 30, "web3": 100}))
    live, before, head = lab.live_text(), proc(lab), git(store, "rev-parse", "HEAD")

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")

    assert result.code == 2, result.out + result.err
    assert f"targets.edge.master_socket: nothing answers at {wrong}" in result.err
    assert "No such file or directory" in result.err
    assert "run the same command again" not in result.err
    assert lab.live_text() == live and proc(lab) == before and git(store, "rev-parse", "HEAD") == head

    dry = lbctl("deploy", "edge", "--file", str(new), "--dry-run")
    assert dry.code == 2 and "master_socket" in dry.err

    status = lbctl("status", "edge")
    assert status.code == 2 and "config" in status.out and "targets.edge.master_socket" in status.out
    as_json = json.loads(lbctl("status", "edge", "--json").out)["targets"][0]
    assert any("master_socket" in p for p in as_json["config_problems"])

    check = lbctl("check", "edge", "--file", str(new), "--json")
    report = json.loads(check.out)
    assert check.code == 2 and not report["ok"]
    assert any("targets.edge.master_socket" in p for p in report["config_problems"])


def test_the_stats_socket_given_as_master_socket_is_named_for_what_it_is(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    point(store, lab, "master_socket", str(lab.haproxy.stats_socket))
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 31, "web3": 100}))
    live = lab.live_text()

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")

    assert result.code == 2, result.out + result.err
    assert "is not HAProxy's master CLI" in result.err and "looks like the runtime API" in result.err
    assert lab.live_text() == live


def test_the_master_socket_given_as_stats_socket_is_named_for_what_it_is(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    point(store, lab, "stats_socket", str(lab.haproxy.master_socket))

    result = lbctl("status", "edge")

    assert result.code == 2, result.out + result.err
    assert "targets.edge.stats_socket" in result.out and "is the master CLI" in result.out


def test_right_sockets_pass_the_preflight(store: Path, lab: Lab, lbctl: LbctlRunner) -> None:
    result = lbctl("status", "edge", "--json")
    assert result.code == 0, result.out + result.err
    assert json.loads(result.out)["targets"][0]["config_problems"] == []


def test_check_away_from_the_lb_host_notes_it_instead_of_failing(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    """A CI runner checks a `local` target with no HAProxy and no live config: not a settings problem."""
    absent = tmp_path / "elsewhere" / "haproxy.cfg"
    (store / "lbctl.toml").write_text(
        target_toml(lab)
        .replace(f'path = "{lab.haproxy.config}"', f'path = "{absent}"')
        .replace(str(lab.haproxy.master_socket), str(tmp_path / "elsewhere" / "master.sock"))
    )
    git(store, "commit", "-qam", "a target on another host")
    new = write(tmp_path / "new.cfg", lab.config())

    result = lbctl("check", "edge", "--file", str(new), "--json")

    report = json.loads(result.out)
    assert result.code == 0, result.out + result.err
    assert report["config_problems"] == [] and any("not the LB host" in n for n in report["notes"])
