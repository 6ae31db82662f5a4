"""Every ```sh example of the README's "Use it", the runbook and the reference runs as written,
with bash, against a real HAProxy: a new store adopts it, then the runbook's steps work on it.

`$EDITOR` is the one stand-in: a script that writes what a person would type (the lab's target
in lbctl.toml, a drained server in the config). `deploy` and `rollback` without `--yes` ask on a
terminal, so the examples run with a terminal as stdin, answered "y".
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lbctl.lab.processes import haproxy_target_toml
from tests.conftest import Lab

ROOT = Path(__file__).parents[2]


def sh_blocks(doc: str, section: str | None = None) -> list[str]:
    """The ```sh blocks of `doc` (under the `## section` heading only, when given)."""
    text = (ROOT / doc).read_text()
    if section is not None:
        start = text.index(f"## {section}\n")
        end = text.find("\n## ", start + 1)
        text = text[start : end if end != -1 else len(text)]
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def run_block(block: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    leader, follower = pty.openpty()
    try:
        os.write(leader, b"y\n" * 8)  # the answers to "Apply this change?", read line by line
        return subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block],
            cwd=cwd,
            env=env,
            stdin=follower,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        os.close(follower)
        os.close(leader)


@pytest.fixture
def shell_env(tmp_path: Path, lab: Lab) -> dict[str, str]:
    """PATH with this lbctl first, and an $EDITOR that writes what the examples' reader would."""
    edits = tmp_path / "edits"
    edits.mkdir()
    toml = "[defaults]\nverify_seconds = 1\ncheck_interval = 0.25\nretries = 2\n\n" + haproxy_target_toml(
        "edge1", lab.haproxy, f"http://127.0.0.1:{lab.fe_port}/", source="configs/edge1/haproxy.cfg", probes=2
    )
    (edits / "lbctl.toml").write_text(toml)
    (edits / "haproxy.cfg").write_text(lab.config(weights={"web1": 100, "web2": 100, "web3": 0}))  # drain web3
    editor = tmp_path / "editor"
    editor.write_text(f'#!/bin/sh\ncp "{edits}/$(basename "$1")" "$1"\n')
    editor.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("LBCTL_STORE", "NO_COLOR")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["EDITOR"] = str(editor)
    return env


def test_every_sh_example_runs_as_written(tmp_path: Path, lab: Lab, shell_env: dict[str, str]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    use_it = sh_blocks("README.md", "Use it")
    assert len(use_it) == 1 and "lbctl pull edge1" in use_it[0]
    first = run_block(use_it[0], work, shell_env)
    assert first.returncode == 0, first.stdout + first.stderr
    store = work / "my-store"
    # adopted, edited, deployed (web3 drained), then rolled back to what was adopted
    assert "adopted edge1" in first.stdout and "verified good" in first.stdout
    assert "weight 0" not in lab.live_text() and (store / "configs/edge1/haproxy.cfg").read_text() == lab.live_text()
    log = subprocess.run(["git", "log", "--format=%B"], cwd=store, capture_output=True, text=True).stdout
    assert "Lbctl-Ticket: OPS-42" in log and "Lbctl-Source: pull" in log

    for doc in ("docs/runbook.md", "docs/reference.md"):
        blocks = sh_blocks(doc)
        assert blocks, f"{doc} has no sh examples"
        for block in blocks:
            done = run_block(block, store, shell_env)
            assert done.returncode == 0, f"{doc}:\n{block}\n{done.stdout}{done.stderr}"
    assert "weight 0" not in lab.live_text()
