"""A store watching the lab's real HAProxy, and the real Prometheus and Alertmanager of Debian's packages."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lbctl.lab.monitoring import Alertmanager
from lbctl.lab.processes import Haproxy, Load
from tests.conftest import Lab, LbctlRunner, git


def watch_toml(**settings: Any) -> str:
    lines = ["", "[watch]"]
    for key, value in settings.items():
        lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def admin(haproxy: Haproxy, command: str) -> str:
    """One command on HAProxy's runtime API (the stats socket)."""
    return haproxy.runtime_command(command)


def worker_pid(haproxy: Haproxy) -> str:
    info = admin(haproxy, "show info")
    return next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Pid:")), "")


def reload_and_wait(haproxy: Haproxy) -> None:
    """Reload through the master CLI and wait until the stats socket answers from a new worker."""
    before = worker_pid(haproxy)
    haproxy.master_command("reload")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if worker_pid(haproxy) not in ("", before):
                return
        time.sleep(0.05)
    raise RuntimeError("no new HAProxy worker after reload")


@dataclass
class Watched:
    root: Path
    lab: Lab

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.lab.fe_port}/"

    def load(self, *, rate: float = 40, max_seconds: float = 60) -> Load:
        return Load(self.url, rate=rate, concurrency=2, max_requests=int(rate * max_seconds), max_seconds=max_seconds)

    def set_watch(self, **settings: Any) -> None:
        toml = self.root / "lbctl.toml"
        text = toml.read_text().split("\n[watch]\n")[0].rstrip("\n") + "\n"
        toml.write_text(text + watch_toml(**settings))


@pytest.fixture
def watched(store: Path, lab: Lab, lbctl: LbctlRunner) -> Watched:
    """The lab's HAProxy adopted into the store (`lbctl pull`), so it has a live revision."""
    result = lbctl("pull", "edge")
    assert result.code == 0, result.err
    git(store, "add", "-A")
    with contextlib.suppress(subprocess.CalledProcessError):
        git(store, "commit", "-q", "-m", "adopt")
    watched = Watched(store, lab)
    watched.set_watch(interval="1s", window="3s", **{"for": "2s"}, min_requests=20)
    return watched


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    started = Alertmanager.start(tmp_path / "alertmanager")
    yield started
    started.stop()


class Running:
    """`lbctl watch` (its core loop) in a thread, as the command runs it."""

    def __init__(self, root: Path, **overrides: Any) -> None:
        import dataclasses
        import threading

        from lbctl.store.workspace import open_workspace
        from lbctl.watch.evaluate import Change
        from lbctl.watch.runner import TargetInfo, WatchResult, run

        ws = open_workspace(str(root))
        settings = dataclasses.replace(ws.config.watch, **overrides)
        self.stop = threading.Event()
        self.changes: list[tuple[float, Change]] = []
        self.rounds: list[WatchResult] = []
        self.rollbacks: list[tuple[str, object]] = []

        def changed(change: Change, info: TargetInfo | None) -> None:
            self.changes.append((time.time(), change))

        self.thread = threading.Thread(
            target=run,
            args=(ws, list(ws.config.targets.values()), settings),
            kwargs={
                "stop": self.stop,
                "on_change": changed,
                "on_round": self.rounds.append,
                "on_rollback": lambda target, outcome: self.rollbacks.append((target, outcome)),
            },
            daemon=True,
        )
        self.thread.start()

    def wait_rounds(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.rounds)
        while len(self.rounds) < start + n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.rounds) >= start + n, "the watch loop stopped making rounds"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
