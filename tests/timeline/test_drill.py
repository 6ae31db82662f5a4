"""Drills on a throw-away HAProxy: a scripted trainee finds and undoes the misroute with the
runbook's commands; an idle trainee's drill is undone by the LB's commit-confirm watchdog (the
kill switch); a drill revision is never last-good."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lbctl.commands.drill import run_drill
from tests.conftest import LbctlRunner


def trainee(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LBCTL_STORE": str(store)}
    return subprocess.run(
        [sys.executable, "-m", "lbctl", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_trainee_finds_and_undoes_the_misroute(tmp_path: Path) -> None:
    seen: dict[str, str] = {}

    def work(store: Path, target: str) -> None:
        status = trainee(store, "status", target, "--json")
        seen["live"] = json.loads(status.stdout)["targets"][0]["live"]
        diff = trainee(store, "diff", target, "last-good", "live")
        assert diff.returncode == 0, diff.stderr
        seen["diff"] = diff.stdout
        assert trainee(store, "timeline", "note", "found it: www goes to legacy", "--target", target).returncode == 0
        undo = trainee(store, "rollback", target, "--to", "last-good", "--yes")
        assert undo.returncode == 0, undo.stderr
        lb_path = tomllib.loads((store / "lbctl.toml").read_text())["targets"][target]["path"]
        seen["lb"] = Path(lb_path).read_text()

    report = run_drill("misroute", max_duration=120, on_ready=work, say=lambda text: None)

    assert seen["live"] == report.drill_rev  # the drill's change was live when the trainee looked
    assert "legacy" in seen["diff"]
    assert "default_backend web" in seen["lb"]  # last-good is the config before the drill
    assert report.ended_by == "trainee" and report.live_rev != report.drill_rev
    assert report.time_to_detect is not None and report.time_to_restore is not None
    assert 0 < report.time_to_detect <= report.time_to_restore
    assert report.to_json()["restore"] == "met"
    assert "note: found it: www goes to legacy" in report.timeline_markdown
    assert "DRILL: misroute" in report.timeline_markdown


def test_an_idle_trainees_drill_is_undone_by_the_kill_switch(tmp_path: Path) -> None:
    report = run_drill("misroute", max_duration=2, say=lambda text: None)

    assert report.ended_by == "kill-switch"
    # The kill switch's last-good is the config before the drill, never the drill's own revision,
    # though the drill's deploy verified "good".
    assert report.live_rev is not None and report.live_rev != report.drill_rev
    assert report.time_to_detect is None and report.to_json()["detect"] == "not reached"
    # The kill switch is the LB's commit-confirm watchdog: its revert is in the journal.
    assert "watchdog-reverted" in report.timeline_markdown
    assert f"the change {str(report.drill_rev)[:10]} was not confirmed" in report.timeline_markdown
    assert "drill misroute started" in report.timeline_markdown
    assert "drill misroute ended (kill-switch)" in report.timeline_markdown


@pytest.mark.parametrize("scenario", ["drain-half", "bad-acl"])
def test_other_scenarios_stay_live_for_the_trainee(scenario: str) -> None:
    live: list[str] = []
    report = run_drill(
        scenario, max_duration=1, on_ready=lambda store, target: live.append(target), say=lambda text: None
    )
    assert live == ["sandbox"] and report.ended_by == "kill-switch" and report.live_rev != report.drill_rev


def test_reload_fail_is_caught_by_lbctl_itself() -> None:
    report = run_drill("reload-fail", max_duration=5, say=lambda text: None)
    assert report.ended_by == "lbctl" and report.live_rev != report.drill_rev


def test_drill_needs_the_sandbox_and_a_known_scenario(lbctl: LbctlRunner) -> None:
    assert lbctl("drill", "misroute").code == 2
    unknown = lbctl("drill", "fire", "--sandbox")
    assert unknown.code == 2 and "misroute" in unknown.err


def test_the_drill_command_prints_one_json_report(lbctl: LbctlRunner) -> None:
    result = lbctl("drill", "drain-half", "--sandbox", "--max-duration", "1s", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["ended_by"] == "kill-switch" and report["restore"] == "not reached"
    assert "export LBCTL_STORE=" in result.err
