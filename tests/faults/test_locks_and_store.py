"""Locks left by a killed lbctl, `lbctl unlock`, and a damaged journal: said clearly, recoverable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from lbctl.lock import holder_info
from tests.conftest import git
from tests.faults.conftest import Scene


def _plant_lb_lock(scene: Scene, *, holder: str | None = None, pid: int = 2**22 + 12345) -> Path:
    lock_dir = scene.lb_dir / ".haproxy.cfg.lbctl.lock.d"
    lock_dir.mkdir()
    info = json.loads(holder_info("deploy", "edge"))
    info["pid"] = pid
    if holder:
        info["holder"] = holder
    (lock_dir / "info").write_text(json.dumps(info) + "\n")
    return lock_dir


def test_status_shows_the_lb_lock_of_a_killed_deploy_and_unlock_breaks_it(ssh_scene: Scene) -> None:
    good = ssh_scene.file(100)
    assert ssh_scene.lbctl("deploy", "edge", "--file", str(good), "--yes")[0] == 0
    lock_dir = _plant_lb_lock(ssh_scene)  # as a deploy killed on this machine leaves it

    status = ssh_scene.status()
    [lock] = status["locks"]  # type: ignore[misc]
    assert lock["where"] == "lb" and lock["dead"] is True and lock["operation"] == "deploy"
    assert lock["pid"] == 2**22 + 12345 and lock["age_seconds"] is not None and lock["host"]
    code, out, _ = ssh_scene.lbctl("status", "edge")
    assert "held on the LB" in out and "lbctl unlock edge" in out

    code, out, err = ssh_scene.lbctl("unlock", "edge")
    assert code == 0 and "broke the lock" in out, out + err
    assert not lock_dir.exists()
    [event] = [e for e in ssh_scene.events() if e["op"] == "unlock"]
    assert event["verdict"] == "unlocked" and event["who"] and str(2**22 + 12345) in str(event["message"])
    assert ssh_scene.lbctl("unlock", "edge")[1].startswith("nothing holds edge")
    assert ssh_scene.status()["locks"] == []


def test_unlock_refuses_a_lock_that_may_be_live_without_force(ssh_scene: Scene) -> None:
    lock_dir = _plant_lb_lock(ssh_scene, holder="ops@another-machine")  # its process cannot be checked
    code, _, err = ssh_scene.lbctl("unlock", "edge")
    assert code == 5 and "--force" in err and "Traceback" not in err
    assert lock_dir.exists()
    assert ssh_scene.lbctl("unlock", "edge", "--force")[0] == 0
    assert not lock_dir.exists()


def test_a_deploy_blocked_by_a_live_lock_hints_at_unlock_not_ssh(ssh_scene: Scene) -> None:
    _plant_lb_lock(ssh_scene, holder="ops@another-machine")
    code, _, err = ssh_scene.lbctl("deploy", "edge", "--file", str(ssh_scene.file(50)), "--yes")
    assert code == 5 and "lbctl unlock edge" in err and "ssh " not in err.replace("ssh transport", "")


def test_local_store_lock_of_a_running_lbctl_is_not_broken(local_scene: Scene) -> None:
    lock = local_scene.store / ".git" / "lbctl" / "locks" / "edge.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "30"])  # a live process on this machine holds it
    try:
        info = json.loads(holder_info("deploy", "edge"))
        info["pid"] = holder.pid
        lock.write_text(json.dumps(info))
        import fcntl

        fd = os.open(lock, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            assert local_scene.status()["locks"][0]["dead"] is False  # type: ignore[index]
            code, _, err = local_scene.lbctl("unlock", "edge", "--force")
            assert code == 5 and f"kill {holder.pid}" in err
        finally:
            os.close(fd)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def _corrupt(store: Path, how: str) -> None:
    tip = git(store, "rev-parse", "refs/lbctl/journal").strip()
    objects = store / ".git" / "objects"
    if how == "missing-object":
        (objects / tip[:2] / tip[2:]).unlink()
    elif how == "garbage-object":
        path = objects / tip[:2] / tip[2:]
        path.chmod(0o644)
        path.write_bytes(b"this is not a git object")
    elif how == "missing-tree":
        tree = git(store, "rev-parse", "refs/lbctl/journal^{tree}").strip()
        (objects / tree[:2] / tree[2:]).unlink()
    elif how == "garbage-ref":
        (store / ".git" / "refs" / "lbctl" / "journal").write_text("garbage\n")


@pytest.mark.parametrize("how", ["missing-object", "garbage-object", "missing-tree", "garbage-ref"])
def test_a_damaged_journal_is_said_to_be_damaged_and_fetching_it_again_repairs_it(
    local_scene: Scene, tmp_path: Path, how: str
) -> None:
    good = local_scene.file(100)
    assert local_scene.lbctl("deploy", "edge", "--file", str(good), "--yes")[0] == 0
    remote = tmp_path / "remote.git"
    git(local_scene.store, "clone", "-q", "--bare", "--no-local", str(local_scene.store), str(remote))
    git(local_scene.store, "remote", "add", "origin", str(remote))
    git(local_scene.store, "push", "-q", "origin", "refs/lbctl/*:refs/lbctl/*")
    _corrupt(local_scene.store, how)

    for args in (["log", "edge"], ["status", "edge", "--offline"], ["rollback", "edge", "--yes"]):
        code, out, err = local_scene.lbctl(*args)
        assert code == 2, (args, code, out, err)
        assert "refs/lbctl/journal is damaged" in err and "git fetch origin" in err, err
        assert ("rm -- " if how == "garbage-ref" else "git update-ref -d refs/lbctl/journal") in err
        assert "no deploy events" not in out and "internal error" not in err

    if how in ("missing-object", "garbage-object", "missing-tree"):  # the objects come back with the ref
        objects = local_scene.store / ".git" / "objects"
        for path in objects.glob("??/*"):
            if how == "garbage-object" and path.read_bytes() == b"this is not a git object":
                path.unlink()
    if how == "garbage-ref":  # the hint's repair, word for word: git cannot delete a broken ref itself
        (local_scene.store / ".git" / "refs" / "lbctl" / "journal").unlink()
    else:
        git(local_scene.store, "update-ref", "-d", "refs/lbctl/journal")
    git(local_scene.store, "fetch", "-q", "origin", "+refs/lbctl/*:refs/lbctl/*")
    code, out, err = local_scene.lbctl("log", "edge")
    assert code == 0 and "good" in out, out + err
    local_scene.assert_recovers(good.read_text())
