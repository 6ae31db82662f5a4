"""`lbctl demo` runs to completion on a real HAProxy and stops what it started."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_to_completion_and_cleans_up() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lbctl", "demo"], capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "== Timeline" in out and "every process it started has been stopped" in out
    assert "exit 1" in out and "Restored" in out  # the bad change was caught and undone
    assert "already at last-good" in out
    tmp = next(line.split("everything in ")[1].strip() for line in out.splitlines() if "everything in " in line)
    leftover = subprocess.run(["pgrep", "-f", tmp], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", f"processes left behind: {leftover.stdout}"
