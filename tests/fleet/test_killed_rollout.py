"""lbctl killed mid-rollout: every member it changed reverts by itself (commit-confirm watchdogs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fleet.conftest import FleetFactory, git


def status(store: Path) -> int:
    import contextlib
    import io

    from lbctl.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(["status", "@edge", "--store", str(store)])


def test_sigkill_after_the_first_batch_every_changed_member_reverts(make_fleet: FleetFactory) -> None:
    fleet = make_fleet(3, rollout='canary = 2\ncanary_bake = "60s"\nconfirm_within = "3s"')
    before = {n: fleet.live(n) for n in fleet.names}
    untouched = fleet.workers("edge3")
    head = fleet.commit("Add a spare backend", spare=True)

    proc = subprocess.Popen(
        [sys.executable, "-m", "lbctl", "deploy", "@edge", "--yes"],
        cwd=fleet.store,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # bounded: the canary bakes 60 s, far longer than this takes
            seen.append(line)
            if "@edge" in line and " bake " in line:
                break
        assert any("edge1" in s and "changed" in s for s in seen) and any("edge2" in s and "changed" in s for s in seen)
        # Both canaries run the change, pending confirmation; the rollout keeps their watchdogs armed.
        assert fleet.live("edge1") == fleet.config("edge1", spare=True)
        time.sleep(4)  # longer than confirm_within: the rollout is alive, so nothing reverts
        assert fleet.live("edge1") == fleet.config("edge1", spare=True)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(fleet.live(n) != before[n] for n in ("edge1", "edge2")):
        time.sleep(0.2)
    assert fleet.live("edge1") == before["edge1"] and fleet.live("edge2") == before["edge2"]
    assert fleet.live("edge3") == before["edge3"] and fleet.workers("edge3") == untouched  # never reached
    # The next command that reaches them records what each watchdog did (its result comes after its reload).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and {fleet.state(n).status for n in ("edge1", "edge2")} != {"unverified"}:
        status(fleet.store)
        time.sleep(0.5)
    for name in ("edge1", "edge2"):
        state = fleet.state(name)
        assert state.status == "unverified" and head in state.bad  # back to what it ran before, as pulled
        assert git(fleet.store, "show", f"{state.live}:configs/{name}.cfg") == before[name]  # a forward commit


def test_ctrl_c_during_the_bake_puts_the_canary_back_at_once_exit_130(make_fleet: FleetFactory) -> None:
    fleet = make_fleet(3, rollout='canary_bake = "60s"')
    before = {n: (fleet.live(n), fleet.workers(n)) for n in fleet.names}
    fleet.commit("Add a spare backend", spare=True)

    proc = subprocess.Popen(
        [sys.executable, "-m", "lbctl", "deploy", "@edge", "--yes"],
        cwd=fleet.store,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "@edge" in line and " bake " in line:
                break
        assert fleet.live("edge1") == fleet.config("edge1", spare=True)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    assert proc.returncode == 130, out + err
    assert "interrupted" in out and "restored" in out
    assert fleet.live("edge1") == before["edge1"][0]  # put back by lbctl itself, not by its watchdog later
    for name in ("edge2", "edge3"):
        assert (fleet.live(name), fleet.workers(name)) == before[name]
    assert fleet.state("edge1").status == "good"
