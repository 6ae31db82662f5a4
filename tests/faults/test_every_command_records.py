"""Every command that reaches the target records an operation that died on it, before anything else.

`pull`, `diff --live` and `check` do what `status`, `log`, `deploy` and `rollback` do: the deploy
killed just after the swap (`LBCTL_FAULT_AT`) shows in `log` as one `interrupted` event, `status`
says the new config runs unverified, and the runbook's rollback still needs no --force.
"""

from __future__ import annotations

import signal

import pytest

from tests.faults.conftest import Scene

COMMANDS = {
    "pull": ("pull", "edge"),
    "diff --live": ("diff", "edge", "--live"),
    "check": ("check", "edge"),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_command_that_reads_the_target_records_the_interrupted_deploy(local_scene: Scene, command: str) -> None:
    scene = local_scene
    good, new = scene.file(100), scene.file(30)
    code, out, err = scene.lbctl("deploy", "edge", "--file", str(good), "--yes")
    assert code == 0, out + err
    killed = scene.spawn("deploy", "edge", "--file", str(new), "--yes", fault="after:swap")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert scene.live() == new.read_text()

    code, out, err = scene.lbctl(*COMMANDS[command])
    assert code in (0, 1, 3), out + err  # what each command says of the change is its own business
    if command != "pull":
        assert "recorded an interrupted operation: deploy of edge" in out + err, out + err
    interrupted = [e for e in scene.events() if e["verdict"] == "interrupted"]
    assert len(interrupted) == 1, scene.events()
    assert "runs the NEW config" in str(interrupted[0]["message"]) and interrupted[0]["op"] == "deploy"
    if command == "pull":  # the interrupted event comes first, the pull records what runs after it
        verdicts = [e["verdict"] for e in scene.events()]
        assert verdicts.index("adopted") < verdicts.index("interrupted"), verdicts  # newest first
    status = scene.status()
    assert status["status"] == "unverified" and scene.content_at(str(status["live"])) == new.read_text(), status

    scene.assert_recovers(good.read_text())
    assert len([e for e in scene.events() if e["verdict"] == "interrupted"]) == 1  # never twice
