"""Fixtures shared by every test: an isolated HOME and git identity, real processes on loopback."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config, haproxy_target_toml

DEAD_BACKEND = """
backend maintenance
    server sorry 127.0.0.1:{dead_port} check inter 1s
"""


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads the user's HOME, git config or store."""
    home = tmp_path / "home"
    home.mkdir()
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Test Operator\n\temail = operator@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in (
        "LBCTL_STORE",
        "XDG_CACHE_HOME",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


LbctlRunner = Callable[..., Result]


@pytest.fixture
def lbctl() -> LbctlRunner:
    """Run lbctl in-process through its real entry point, capturing its output."""
    from lbctl.cli import main

    def run(*args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
        return Result(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    started = Backends.start(["web1", "web2", "web3"])
    yield started
    started.stop()


@dataclass
class Lab:
    """A real HAProxy master-worker in front of three real backends."""

    haproxy: Haproxy
    backends: Backends
    fe_port: int
    dead_port: int
    workdir: Path

    def config(self, *, route_to: str = "web", weights: dict[str, int] | None = None) -> str:
        return haproxy_config(
            frontend_port=self.fe_port,
            backends=self.backends.ports,
            stats_socket=self.haproxy.stats_socket,
            extra_backends=DEAD_BACKEND.format(dead_port=self.dead_port),
            route_to=route_to,
            weights=weights,
        )

    def live_text(self) -> str:
        return self.haproxy.config.read_text()


@pytest.fixture
def lab(tmp_path: Path, backends: Backends) -> Iterator[Lab]:
    workdir = tmp_path / "lb"
    fe_port, dead_port = free_port(), free_port()
    text = haproxy_config(
        frontend_port=fe_port,
        backends=backends.ports,
        stats_socket=workdir / "admin.sock",
        extra_backends=DEAD_BACKEND.format(dead_port=dead_port),
    )
    haproxy = Haproxy.start(workdir, text)
    yield Lab(haproxy, backends, fe_port, dead_port, workdir)
    haproxy.stop()


def target_toml(lab: Lab, *, verify_seconds: float = 1.0, name: str = "edge") -> str:
    defaults = f"[defaults]\nverify_seconds = {verify_seconds}\ncheck_interval = 0.25\nretries = 2\n\n"
    return defaults + haproxy_target_toml(name, lab.haproxy, f"http://127.0.0.1:{lab.fe_port}/", probes=2)


def git(store: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(store), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def store(tmp_path: Path, lab: Lab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real store with target `edge` pointing at the lab's HAProxy; cwd is the store."""
    root = tmp_path / "store"
    assert lbctl("init", str(root)).code == 0
    (root / "lbctl.toml").write_text(target_toml(lab))
    git(root, "add", "lbctl.toml")
    git(root, "commit", "-q", "-m", "Add target edge")
    monkeypatch.chdir(root)
    return root


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def python() -> str:
    return sys.executable


def pytest_configure(config: pytest.Config) -> None:
    """Deliver SIGINT to the lbctl processes tests start, however pytest itself was started.

    A shell without job control starts background commands with SIGINT ignored, and an ignored
    signal stays ignored across exec: every lbctl a test interrupts would then run on. A Python
    handler here is reset to the default in each child instead.
    """
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
