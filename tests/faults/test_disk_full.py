"""The LB's disk full when lbctl stages a candidate: "disk is full, nothing was changed", exit 6.

The LB's directory is a small tmpfs mounted by the test (as root) and unmounted after it; a filler
file leaves less room than the candidate needs, so the write comes up short and then fails.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbctl.lab.processes import Backends
from tests.faults import conftest as scenes
from tests.faults.conftest import Scene


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "lb"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def full_local(small_disk: Path, tmp_path: Path, backends: Backends) -> Iterator[Scene]:
    with scenes.local_scene_in(tmp_path, backends) as scene:
        yield scene


@pytest.fixture
def full_ssh(small_disk: Path, tmp_path: Path, sshd: scenes.Sshd, backends: Backends) -> Iterator[Scene]:
    with scenes.ssh_scene_in(tmp_path, sshd, backends) as scene:
        yield scene


def fill(directory: Path, leave: int) -> Path:
    """Fill `directory`'s filesystem but `leave` bytes."""
    filler = directory / "filler"
    free = subprocess.run(["stat", "-f", "-c", "%a %S", str(directory)], capture_output=True, text=True, check=True)
    blocks, size = (int(x) for x in free.stdout.split())
    filler.write_bytes(b"\0" * max(0, blocks * size - leave))
    return filler


def disk_full_then_recovered(scene: Scene) -> None:
    good = scene.file(100)
    assert scene.lbctl("deploy", "edge", "--file", str(good), "--yes")[0] == 0
    head = scenes.git(scene.store, "rev-parse", "HEAD")
    big = scene.file(40, pad=3000)  # ~200 kB
    filler = fill(scene.lb_dir, leave=64 * 1024)

    done = scene.spawn("deploy", "edge", "--file", str(big), "--yes")
    assert done.returncode == 6, done.stderr
    assert "the LB's disk is full" in done.stderr and "nothing was changed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "rejected" not in done.stderr
    assert scene.assert_complete(good.read_text()) == good.read_text()
    assert scenes.git(scene.store, "rev-parse", "HEAD") == head  # no commit for a change that did not go out
    scene.assert_clean()

    filler.unlink()
    scene.assert_recovers(good.read_text())
    code, out, err = scene.lbctl("deploy", "edge", "--file", str(big), "--yes")
    assert code == 0, out + err
    assert scene.live() == big.read_text()


def test_local_disk_full(full_local: Scene) -> None:
    disk_full_then_recovered(full_local)


def test_ssh_disk_full(full_ssh: Scene) -> None:
    disk_full_then_recovered(full_ssh)
