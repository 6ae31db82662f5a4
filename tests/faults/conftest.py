"""Fault injection against a real HAProxy (local, and over a private sshd): what must hold after each.

`Scene` wraps one target and its store: it runs lbctl as a real subprocess (so SIGKILL is a real
death), in-process for the recovery commands, and checks the promises after a fault (a complete
config live, recovery without --force, status and log telling the truth, a clean store, no
leftovers on the LB host).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config
from tests.conftest import git
from tests.ssh.conftest import Sshd, isolated_home, sshd, write_store  # noqa: F401 - fixtures for the ssh scenes

LEFTOVER_MARKS = ("lbctl-stage", "lbctl-restore", ".tmp-", "lbctl-tmp", ".lbctl.lock.d.")


@dataclass
class Scene:
    """A real HAProxy, a store whose target `edge` reaches it (local or ssh), and the promises to check."""

    haproxy: Haproxy
    store: Path
    frontend_port: int
    dead_port: int
    backends: Backends
    transport: str
    sshd_port: int = 0

    def config(self, weight: int, *, pad: int = 0) -> str:
        text = haproxy_config(
            frontend_port=self.frontend_port,
            backends=self.backends.ports,
            stats_socket=self.haproxy.stats_socket,
            weights={"web1": 100, "web2": weight, "web3": 100},
            extra_backends=f"\nbackend maintenance\n    server sorry 127.0.0.1:{self.dead_port} check inter 1s\n",
        )
        return text + "".join(f"# padding line {i:08d} {'.' * 48}\n" for i in range(pad))

    def file(self, weight: int, *, pad: int = 0) -> Path:
        path = self.store.parent / f"w{weight}-{pad}.cfg"
        path.write_text(self.config(weight, pad=pad))
        return path

    @property
    def lb_dir(self) -> Path:
        return self.haproxy.config.parent

    def via_port(self, port: int) -> None:
        """Reach the LB's sshd through `port` (a relay or a blackhole on loopback) from now on."""
        import re

        toml = self.store / "lbctl.toml"
        toml.write_text(re.sub(r"(?m)^port = \d+$", f"port = {port}", toml.read_text()))
        known = Path(re.search(r'known_hosts = "([^"]+)"', toml.read_text()).group(1))  # type: ignore[union-attr]
        key = known.read_text().splitlines()[0].split(" ", 1)[1]
        with known.open("a") as f:
            f.write(f"[127.0.0.1]:{port} {key}\n")
        git(self.store, "commit", "-qam", f"reach edge through port {port}")

    def commit_all(self, message: str) -> None:
        git(self.store, "commit", "-qam", message)

    def live(self) -> str:
        return self.haproxy.config.read_text()

    def lbctl(self, *args: str) -> tuple[int, str, str]:
        """lbctl in-process (its real entry point), as the on-call engineer runs it next."""
        import io
        from contextlib import redirect_stderr, redirect_stdout

        from lbctl.cli import main

        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main([*args, "--store", str(self.store)])
        return code, out.getvalue(), err.getvalue()

    def spawn(self, *args: str, fault: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """lbctl as its own process (so it can really die), optionally killed at `fault`."""
        env = {**os.environ, "LBCTL_STORE": str(self.store)}
        env.pop("LBCTL_FAULT_AT", None)
        if fault:
            env["LBCTL_FAULT_AT"] = fault
        return subprocess.run(
            [sys.executable, "-m", "lbctl", *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    def status(self) -> dict[str, object]:
        """The target's status; the exit code is the gate's: 0 healthy, 1 degraded (an interrupted run)."""
        code, out, err = self.lbctl("status", "edge", "--json")
        data: dict[str, object] = json.loads(out)["targets"][0]
        assert code == (0 if data["verdict"] == "healthy" else 1), err + str(data)
        return data

    def events(self) -> list[dict[str, object]]:
        code, out, err = self.lbctl("log", "edge", "--json", "-n", "50")
        assert code == 0, err
        events: list[dict[str, object]] = json.loads(out)["events"]
        return events

    def content_at(self, rev: str) -> str:
        return git(self.store, "show", f"{rev}:configs/edge/haproxy.cfg")

    def assert_complete(self, *choices: str) -> str:
        """The LB's file is byte-equal to one of `choices` and HAProxy accepts it."""
        live = self.live()
        assert live in choices, live[:300]
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(self.haproxy.config)], capture_output=True)
        assert check.returncode == 0, check.stderr
        return live

    def assert_clean(self) -> None:
        """`git fsck --strict` is clean and nothing lbctl staged or half-made is left on the LB host."""
        fsck = subprocess.run(["git", "-C", str(self.store), "fsck", "--strict"], capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        left = [p.name for p in self.lb_dir.iterdir() if any(mark in p.name for mark in LEFTOVER_MARKS)]
        assert not left, left
        records = self.store / ".git" / "lbctl" / "inflight"
        assert not (records.is_dir() and list(records.iterdir())), list(records.iterdir())

    def assert_recovers(self, good: str) -> None:
        """The runbook's one command, without --force, puts `good` live and HEAD says so."""
        code, out, err = self.lbctl("rollback", "edge", "--to", "last-good", "--yes")
        assert code == 0, out + err
        assert self.live() == good
        assert self.content_at("HEAD") == good  # the store's HEAD says what is live
        status = self.status()
        assert status["status"] == "good" and status["drift"] == "none", status
        assert status["verdict"] == "healthy", status
        assert self.content_at(str(status["live"])) == good
        self.assert_clean()


def _start(tmp_path: Path, backends: Backends) -> tuple[Haproxy, int, int]:
    frontend_port, dead_port = free_port(), free_port()
    lb_dir = tmp_path / "lb"
    text = haproxy_config(
        frontend_port=frontend_port,
        backends=backends.ports,
        stats_socket=lb_dir / "admin.sock",
        weights={"web1": 100, "web2": 100, "web3": 100},
        extra_backends=f"\nbackend maintenance\n    server sorry 127.0.0.1:{dead_port} check inter 1s\n",
    )
    return Haproxy.start(lb_dir, text), frontend_port, dead_port


@contextlib.contextmanager
def local_scene_in(tmp_path: Path, backends: Backends) -> Iterator[Scene]:
    """A scene on the local transport, its LB in `tmp_path/lb` (which may be a mount made before)."""
    from lbctl.cli import main
    from tests.conftest import haproxy_target_toml

    haproxy, frontend_port, dead_port = _start(tmp_path, backends)
    store = tmp_path / "store"
    try:
        assert main(["init", str(store), "--quiet"]) == 0
        toml = "[defaults]\nverify_seconds = 0\ncheck_interval = 0.2\nretries = 2\n\n" + haproxy_target_toml(
            "edge", haproxy, f"http://127.0.0.1:{frontend_port}/", probes=2
        )
        (store / "lbctl.toml").write_text(toml)
        git(store, "add", "lbctl.toml")
        git(store, "commit", "-q", "-m", "Add target edge")
        yield Scene(haproxy, store, frontend_port, dead_port, backends, "local")
    finally:
        haproxy.stop()


@contextlib.contextmanager
def ssh_scene_in(tmp_path: Path, sshd: Sshd, backends: Backends) -> Iterator[Scene]:  # noqa: F811
    """A scene over the private sshd, its LB in `tmp_path/lb`."""
    haproxy, frontend_port, dead_port = _start(tmp_path, backends)
    store = tmp_path / "store"
    try:
        write_store(store, haproxy, sshd, frontend_port)
        yield Scene(haproxy, store, frontend_port, dead_port, backends, "ssh", sshd.port)
    finally:
        haproxy.stop()


@pytest.fixture
def local_scene(tmp_path: Path, backends: Backends) -> Iterator[Scene]:
    with local_scene_in(tmp_path, backends) as scene:
        yield scene


@pytest.fixture
def ssh_scene(tmp_path: Path, sshd: Sshd, backends: Backends) -> Iterator[Scene]:  # noqa: F811
    with ssh_scene_in(tmp_path, sshd, backends) as scene:
        yield scene
