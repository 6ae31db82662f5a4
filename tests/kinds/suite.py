"""The contract suite's HAProxy-bound tests, rewritten kind-neutral.

tests/integration/test_lifecycle.py reads HAProxy's text in a few places (`weight N`
in a server line, `haproxy -c`, the differ's HAProxy wording). A kind's module
star-imports the suite and then these, which replace those tests one for one: the same
steps and the same assertions, asked through the lab (`lab.weight`, `lab.native_check`,
`lab.server_label`, `lab.hand_edit`) instead of through HAProxy's text.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import LbctlRunner, git, write
from tests.integration import test_lifecycle as suite
from tests.integration.test_lifecycle import _wait_for_line, status_json

Lab = Any  # NginxLab | CaddyLab


def test_every_selector(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    shas = []
    stamps = []
    for weight in (10, 20, 30):
        cfg = write(tmp_path / f"w{weight}.cfg", lab.config(weights={"web1": weight, "web2": 5, "web3": 5}))
        assert lbctl("deploy", "edge", "--file", str(cfg), "-m", f"web1 at {weight}", "--yes").code == 0
        shas.append(git(store, "rev-parse", "HEAD").strip())
        stamps.append(status_json(lbctl)["updated"])
        time.sleep(0.05)

    assert lbctl("rollback", "edge", "--to", "previous", "--yes").code == 0
    assert lab.weight("web1") == 20
    head = git(store, "log", "-1", "--format=%B")
    assert f"Lbctl-Restores: {shas[1]}" in head and f"Lbctl-Rollback-Of: {shas[2]}" in head
    assert lbctl("rollback", "edge", "--to", "~3", "--yes").code == 0  # live history: 20, 30, 20, 10
    assert lab.weight("web1") == 10
    assert lbctl("rollback", "edge", "--to", shas[2][:12], "--yes").code == 0
    assert lab.weight("web1") == 30
    assert lbctl("rollback", "edge", "--to", f"@{stamps[1]}", "--yes").code == 0
    assert lab.weight("web1") == 20
    assert lbctl("rollback", "edge", "--to", "HEAD~1", "--yes").code == 0  # a plain git revision works too
    result = lbctl("rollback", "edge", "--to", "last-good", "--yes")
    assert result.code == 0 and "already at last-good" in result.out
    for bad in ("~99", "deadbeefdeadbeef", "@1999-01-01T00:00:00Z", "@not-a-time"):
        result = lbctl("rollback", "edge", "--to", bad, "--yes")
        assert result.code == 2, (bad, result.err)
        assert "Traceback" not in result.err


def test_second_deploy_of_a_locked_target_exits_5(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    (store / "lbctl.toml").write_text(suite.target_toml(lab, verify_seconds=6))
    git(store, "commit", "-qam", "longer verification")
    first_cfg = write(tmp_path / "a.cfg", lab.config(weights={"web1": 1, "web2": 4, "web3": 4}))
    first = subprocess.Popen(
        [sys.executable, "-m", "lbctl", "deploy", "edge", "--file", str(first_cfg), "--yes"],
        cwd=store,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_line(first, "round 1")
        second_cfg = write(tmp_path / "b.cfg", lab.config(weights={"web1": 2, "web2": 4, "web3": 4}))
        result = lbctl("deploy", "edge", "--file", str(second_cfg), "--yes")
        assert result.code == 5, result.err
        assert "locked" in result.err and "deploy of edge" in result.err
        held = status_json(lbctl)["lock"]
        assert held and "deploy of edge" in held
    finally:
        assert first.wait(30) == 0
    assert lab.weight("web1") == 1


def test_sigint_during_verification_leaves_complete_config(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    (store / "lbctl.toml").write_text(suite.target_toml(lab, verify_seconds=20))
    git(store, "commit", "-qam", "long verification")
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 3, "web2": 3, "web3": 7}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lbctl", "deploy", "edge", "--file", str(new), "--yes"],
        cwd=store,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_line(proc, "round 1")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == 130, err
    assert "runs the NEW config" in err
    assert lab.live_text() == new.read_text()  # complete, and the new one
    assert lab.native_check()  # the LB's own check accepts what is live
    status = status_json(lbctl)
    assert status["status"] == "unverified" and status["live"] == git(store, "rev-parse", "HEAD").strip()
    assert status["drift"] == "none" and status["lock"] is None and status["interrupted_operation"] is None


def test_no_terminal_without_yes_refuses(store: Path, lab: Lab, tmp_path: Path) -> None:
    before = lab.weight("web1")
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 3, "web2": 1, "web3": 1}))
    proc = subprocess.run(
        [sys.executable, "-m", "lbctl", "deploy", "edge", "--file", str(new)],
        cwd=store,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--yes" in proc.stderr
    assert lab.weight("web1") == before != 3


def test_dry_run_shows_the_plan_and_changes_nothing(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    before = lab.weight("web1")
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 4, "web2": 8, "web3": 8}))
    head = git(store, "rev-parse", "HEAD")
    result = lbctl("deploy", "edge", "--file", str(new), "--dry-run", "--json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)["plan"]
    assert lab.server_label("web1") in plan["diff"] or "web" in plan["diff"]
    shares = {s["name"]: s for s in plan["semantic"]["traffic"]["pools"][0]["servers"]}
    web1 = shares[lab.server_label("web1")]
    assert web1["after"] < web1["before"]
    assert lab.weight("web1") == before and git(store, "rev-parse", "HEAD") == head


def test_diff_between_revisions_and_against_live(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    first = write(tmp_path / "1.cfg", lab.config(weights={"web1": 11, "web2": 5, "web3": 5}))
    assert lbctl("deploy", "edge", "--file", str(first), "--yes").code == 0
    source = _source(store)
    source.write_text(lab.config(weights={"web1": 12, "web2": 5, "web3": 5}))
    git(store, "commit", "-qam", "web1 at 12")
    result = lbctl("diff", "edge", "--exit-code")
    assert result.code == 1 and "Traffic shares" in result.out, result.out + result.err
    markdown = lbctl("diff", "edge", "--format", "markdown")
    assert markdown.code in (0, 1) and "|" in markdown.out
    assert lbctl("diff", "edge", "--live", "--exit-code").code == 0  # the LB runs the live revision
    lab.hand_edit("web1", 99)
    drifted = lbctl("diff", "edge", "--live", "--exit-code")
    assert drifted.code == 1, drifted.out + drifted.err
    assert status_json(lbctl)["drift"] == "drifted"


def test_validation_failure_changes_nothing(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    """A config lbctl's parser reads but the LB's own check rejects: refused, nothing changed."""
    live_before = lab.live_text()
    proc_before = lab.proc_state()
    head_before = git(store, "rev-parse", "HEAD")
    broken = write(tmp_path / "broken.cfg", lab.broken_config())

    result = lbctl("deploy", "edge", "--file", str(broken), "-m", "typo", "--yes")

    assert result.code == 3, result.err
    assert "rejected the candidate config" in result.err and "nothing was changed" in result.err
    assert lab.live_text() == live_before
    assert lab.proc_state() == proc_before  # no reload happened
    assert git(store, "rev-parse", "HEAD") == head_before  # no commit left behind
    assert not lab.staged_leftovers()


def test_unparseable_config_is_refused_at_the_plan(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    """Text the parser cannot read (here: HAProxy's syntax) never reaches the LB."""
    live_before = lab.live_text()
    head_before = git(store, "rev-parse", "HEAD")
    broken = write(tmp_path / "broken.cfg", lab.config() + "\nbackend broken\n    server x 127.0.0.1:notaport\n")

    result = lbctl("deploy", "edge", "--file", str(broken), "-m", "typo", "--yes")

    assert result.code == 3, result.err
    assert "nothing was" in result.err and "Traceback" not in result.err, result.err
    assert lab.live_text() == live_before and git(store, "rev-parse", "HEAD") == head_before


def _source(store: Path) -> Path:
    import tomllib

    toml = tomllib.loads((store / "lbctl.toml").read_text())
    return store / toml["targets"]["edge"]["source"]


def test_failed_check_rolls_back_automatically(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    """As the suite's, with the target's own source file instead of configs/edge/haproxy.cfg."""
    good = write(tmp_path / "good.cfg", lab.config(weights={"web1": 2, "web2": 1, "web3": 1}))
    assert lbctl("deploy", "edge", "--file", str(good), "-m", "good", "--yes").code == 0
    good_sha = git(store, "rev-parse", "HEAD").strip()
    bad = write(tmp_path / "bad.cfg", lab.config(route_to="maintenance"))

    # --force: the plan refuses this routing change; one that gets through is caught by verification
    result = lbctl("deploy", "edge", "--file", str(bad), "-m", "route to the new pool", "--yes", "--force")

    assert result.code == 1, result.out + result.err
    assert lab.live_text() == good.read_text()  # the previous config is back
    assert suite.http_get(lab.fe_port) == 200
    commits = git(store, "log", "-3", "--format=%H%x00%B%x1e").split("\x1e")
    restore_sha, restore_msg = commits[0].strip().split("\x00")
    bad_sha = commits[1].strip().split("\x00")[0]
    assert f"Lbctl-Rollback-Of: {bad_sha}" in restore_msg and f"Lbctl-Restores: {good_sha}" in restore_msg
    assert _source(store).read_text() == good.read_text()  # the store says what is live
    status = status_json(lbctl)
    assert status["live"] == restore_sha and status["status"] == "good" and bad_sha in status["bad"]
    events = json.loads(lbctl("log", "edge", "--json").out)["events"]
    assert [(e["op"], e["verdict"]) for e in events[:2]] == [("auto-rollback", "good"), ("deploy", "failed")]
    assert events[1]["checks"][0]["ok"] is False
    assert lbctl("rollback", "edge", "--to", "last-good", "--yes").code == 0
    assert status_json(lbctl)["live"] == restore_sha
