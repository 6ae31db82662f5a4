"""The watchdog script itself, run by `sh` on plain files: once only, superseded, disarm and extend races."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

from lbctl.drivers import watchdog


def armed(tmp_path: Path, *, deadline_in: float = 0.0) -> tuple[Path, Path]:
    live = tmp_path / "lb.cfg"
    live.write_text("new\n")
    d = tmp_path / ".lb.cfg.lbctl-watchdog" / "E1"
    d.mkdir(parents=True)
    (d / "prev").write_text("old\n")
    (d / "new.sha256").write_text(hashlib.sha256(b"new\n").hexdigest() + "\n")
    (d / "reload.sh").write_text(f"echo reloaded >> {tmp_path / 'reloads'}\n")
    (d / "marker.sh").write_text("")
    (d / "deadline").write_text(f"{int((time.time() + deadline_in) * 1000)}\n")
    return live, d


def fire(d: Path, live: Path) -> None:
    script = d / "watchdog.sh"
    script.write_text(watchdog.WATCHDOG)
    subprocess.run(["sh", str(script), str(d), str(live)], check=True, timeout=30)


def result(d: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (d / "result").read_text().splitlines())


def test_it_reverts_once_and_only_once(tmp_path: Path) -> None:
    live, d = armed(tmp_path)
    fire(d, live)
    assert live.read_text() == "old\n" and result(d)["result"] == "reverted"
    live.write_text("new\n")
    fire(d, live)  # a second run (a restarted watchdog) finds fired/ taken and does nothing
    assert live.read_text() == "new\n"
    assert (tmp_path / "reloads").read_text() == "reloaded\n"


def test_a_newer_change_live_is_left_alone(tmp_path: Path) -> None:
    live, d = armed(tmp_path)
    live.write_text("newer\n")
    fire(d, live)
    assert live.read_text() == "newer\n" and result(d)["result"] == "superseded"
    assert not (tmp_path / "reloads").exists()


def test_a_failing_reload_is_said(tmp_path: Path) -> None:
    live, d = armed(tmp_path)
    (d / "reload.sh").write_text("echo 'no socket' >&2; exit 4\n")
    fire(d, live)
    found = result(d)
    assert found["result"] == "reload-failed" and "exited 4: no socket" in found["detail"], found
    assert live.read_text() == "old\n"  # the file is back; only the reload failed


def test_disarmed_before_the_deadline_it_does_nothing(tmp_path: Path) -> None:
    live, d = armed(tmp_path, deadline_in=30)
    script = d / "watchdog.sh"
    script.write_text(watchdog.WATCHDOG)
    proc = subprocess.Popen(["sh", str(script), str(d), str(live)])
    try:
        disarm = subprocess.run(["sh", "-c", watchdog._DISARM, "x", str(d)], timeout=30)
        assert disarm.returncode == 0
        assert proc.wait(timeout=10) is not None
    finally:
        proc.kill()
    assert live.read_text() == "new\n" and not d.exists()


def test_too_late_to_disarm_or_extend_once_fired(tmp_path: Path) -> None:
    live, d = armed(tmp_path)
    fire(d, live)
    assert subprocess.run(["sh", "-c", watchdog._DISARM, "x", str(d)]).returncode == 3
    assert subprocess.run(["sh", "-c", watchdog._EXTEND, "x", str(d), "1"]).returncode == 3
