"""lbctl SIGKILLed at spread-out moments of a deploy, local and over ssh: the next commands recover.

The kill comes from `LBCTL_FAULT_AT` (engine/execute.py), at a named stage: deterministic, unlike a
timer. After each: the LB runs a complete config (old or new, byte-equal, `haproxy -c` passes),
`status` names the revision that runs and says it is unverified, `log` shows the interrupted
operation, `rollback --to last-good --yes` works without --force and leaves HEAD saying what is
live, `git fsck --strict` is clean and no staged file is left on the LB host.
"""

from __future__ import annotations

import signal

import pytest

from tests.faults.conftest import Scene

# (moment, whether the LB's file holds the new config after the kill)
MOMENTS = [
    ("before:stage", False),
    ("after:stage", False),
    ("after:validate", False),
    ("after:snapshot", False),
    ("after:commit", False),
    ("before:swap", False),
    ("after:swap", True),
    ("after:reload", True),
    ("after:land commit", True),
    ("before:verify", True),
    ("before:record", True),
    ("after:record", True),
]
# Ten moments each (bench/faults.py runs all twelve, many times): the two left out here sit next to
# a neighbour that leaves the LB in the same state.
LOCAL_MOMENTS = [m for m in MOMENTS if m[0] not in ("after:snapshot", "after:land commit")]
SSH_MOMENTS = [m for m in MOMENTS if m[0] not in ("after:snapshot", "before:verify")]


def kill_and_recover(scene: Scene, moment: str, runs_new: bool) -> None:
    good, new = scene.file(100), scene.file(30)
    code, out, err = scene.lbctl("deploy", "edge", "--file", str(good), "--yes")
    assert code == 0, out + err
    old_text, new_text = good.read_text(), new.read_text()

    killed = scene.spawn("deploy", "edge", "--file", str(new), "--yes", fault=moment)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    assert scene.assert_complete(old_text, new_text) == (new_text if runs_new else old_text)
    status = scene.status()
    recorded = moment != "after:record"  # killed after its outcome was in the journal: nothing to recover
    if runs_new and recorded:
        assert status["status"] == "unverified", status
        assert "runs the NEW config" in str(status["interrupted_operation"]), status
    elif recorded:
        assert "runs the OLD config" in str(status["interrupted_operation"]), status
    else:
        assert status["interrupted_operation"] is None and status["status"] == "good", status
    assert scene.content_at(str(status["live"])) == (new_text if runs_new else old_text)  # names what runs
    assert status["drift"] == "none", status
    interrupted = [e for e in scene.events() if e["verdict"] == "interrupted"]
    assert len(interrupted) == (1 if recorded else 0), interrupted
    if recorded:
        assert interrupted[0]["who"] and interrupted[0]["started"] and interrupted[0]["op"] == "deploy"

    # Killed after recording `good`, the deploy had finished: last-good is its config.
    scene.assert_recovers(old_text if recorded else new_text)
    assert len([e for e in scene.events() if e["verdict"] == "interrupted"]) == len(interrupted)  # not twice


@pytest.mark.parametrize(("moment", "runs_new"), LOCAL_MOMENTS, ids=[m for m, _ in LOCAL_MOMENTS])
def test_local_deploy_killed(local_scene: Scene, moment: str, runs_new: bool) -> None:
    kill_and_recover(local_scene, moment, runs_new)


@pytest.mark.parametrize(("moment", "runs_new"), SSH_MOMENTS, ids=[m for m, _ in SSH_MOMENTS])
def test_ssh_deploy_killed(ssh_scene: Scene, moment: str, runs_new: bool) -> None:
    kill_and_recover(ssh_scene, moment, runs_new)


def test_local_rollback_killed_after_the_swap(local_scene: Scene) -> None:
    """A rollback is an operation like a deploy: killed half-way, the next one finishes the job."""
    first, second = local_scene.file(100), local_scene.file(60)
    for config in (first, second):
        code, out, err = local_scene.lbctl("deploy", "edge", "--file", str(config), "--yes")
        assert code == 0, out + err
    killed = local_scene.spawn("rollback", "edge", "--to", "previous", "--yes", fault="after:swap")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert local_scene.assert_complete(first.read_text(), second.read_text()) == first.read_text()
    status = local_scene.status()
    assert status["status"] == "unverified" and "runs the NEW config" in str(status["interrupted_operation"])
    [event] = [e for e in local_scene.events() if e["verdict"] == "interrupted"]
    assert event["op"] == "rollback"
    local_scene.assert_recovers(second.read_text())  # last-good is still the second deploy


def test_sigterm_during_verification_is_an_interruption_recorded_as_such(local_scene: Scene) -> None:
    """130 is for the user's own SIGINT/SIGTERM: the event is recorded, the new config named as unverified."""
    import os
    import subprocess
    import sys

    good, new = local_scene.file(100), local_scene.file(70)
    assert local_scene.lbctl("deploy", "edge", "--file", str(good), "--yes")[0] == 0
    toml = local_scene.store / "lbctl.toml"
    toml.write_text(toml.read_text().replace("verify_seconds = 0", "verify_seconds = 20"))
    local_scene.commit_all("a long verification window")
    env = {**os.environ, "LBCTL_STORE": str(local_scene.store)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lbctl", "deploy", "edge", "--file", str(new), "--yes"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # progress lines; SIGTERM once the window is open
        if line.strip().startswith("verify") and "round" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=30) == 130, rest
    assert "interrupted during verification" in rest and "Traceback" not in rest
    assert local_scene.live() == new.read_text()
    status = local_scene.status()
    assert status["status"] == "unverified" and status["interrupted_operation"] is None
    assert local_scene.events()[0]["verdict"] == "interrupted"
    toml.write_text(toml.read_text().replace("verify_seconds = 20", "verify_seconds = 0"))
    local_scene.commit_all("back to one round of checks")
    local_scene.assert_recovers(good.read_text())
