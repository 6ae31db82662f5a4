"""A private OpenSSH server and a real HAProxy on loopback, for the ssh transport's tests.

The sshd runs from its own temp dir (host key, authorized_keys, config), pubkey only; the
client key and a known_hosts holding the host key are generated beside it. HOME is a temp
dir in every test, so the user's ~/.ssh (config, keys, known_hosts) is never read, and
ssh-agent is unset. Every process started here is stopped by its PID.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config
from lbctl.lab.sshd import Sshd, start_sshd

__all__ = ["Sshd", "start_sshd"]  # imported from here by the ssh tests


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME with an empty ~/.ssh: the user's keys, config and agent are never used."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("LBCTL_SSH_TRUST_NEW", raising=False)
    monkeypatch.delenv("LBCTL_STORE", raising=False)
    for var in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{var}_NAME", "lbctl test")
        monkeypatch.setenv(f"GIT_{var}_EMAIL", "test@lbctl.invalid")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    return home


@dataclass
class Lab:
    """A HAProxy on loopback reached over ssh, and a store whose target `edge` points at it."""

    haproxy: Haproxy
    sshd: Sshd
    store: Path
    frontend_port: int
    dead_port: int
    backends: Backends

    def config(self, *, route_to: str = "web", weight: int = 100, pad: int = 0) -> str:
        text = haproxy_config(
            frontend_port=self.frontend_port,
            backends=self.backends.ports,
            stats_socket=self.haproxy.stats_socket,
            route_to=route_to,
            weights={"web1": 100, "web2": weight, "web3": 100},
            extra_backends=f"\nbackend maintenance\n    server sorry 127.0.0.1:{self.dead_port} check inter 1s\n",
        )
        if pad:  # comments make a big file, to cut a connection in the middle of its upload
            text += "".join(f"# padding line {i:08d} {'.' * 48}\n" for i in range(pad))
        return text

    def live(self) -> str:
        return self.haproxy.config.read_text()

    def workers(self) -> str:
        return self.haproxy.master_command("show proc")

    def lbctl(self, *args: str) -> int:
        from lbctl.cli import main

        return main([*args, "--store", str(self.store)])


def write_store(store: Path, haproxy: Haproxy, sshd: Sshd, frontend_port: int, *, extra: str = "") -> None:
    from lbctl.cli import main

    assert main(["init", str(store), "--quiet"]) == 0
    (store / "lbctl.toml").write_text(f"""\
[defaults]
verify_seconds = 0
check_interval = 0.2
retries = 3

[targets.edge]
kind = "haproxy"
transport = "ssh"
host = "127.0.0.1"
port = {sshd.port}
identity_file = "{sshd.client_key}"
known_hosts = "{sshd.known_hosts}"
source = "configs/edge/haproxy.cfg"
path = "{haproxy.config}"
master_socket = "{haproxy.master_socket}"
stats_socket = "{haproxy.stats_socket}"
{extra}
[[targets.edge.checks]]
type = "http"
url = "http://127.0.0.1:{frontend_port}/"
expect_status = 200
probes = 2
timeout = 1.0
""")
    subprocess.run(["git", "-C", str(store), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(store), "commit", "-q", "-m", "Add target edge"], check=True)


@pytest.fixture
def ssh_lab(tmp_path: Path, sshd: Sshd, backends: Backends) -> Iterator[Lab]:
    """(Named apart from the shared `lab` fixture, which the foundation suite over ssh reuses.)"""
    frontend_port, dead_port = free_port(), free_port()
    lb_dir = tmp_path / "ssh-lb"
    placeholder = Lab(None, sshd, tmp_path / "store", frontend_port, dead_port, backends)  # type: ignore[arg-type]
    # The stats socket path is known before HAProxy starts: it lives in the LB's own dir.
    placeholder.haproxy = Haproxy(lb_dir, lb_dir / "haproxy.cfg", lb_dir / "master.sock", lb_dir / "admin.sock")
    haproxy = Haproxy.start(lb_dir, placeholder.config())
    placeholder.haproxy = haproxy
    try:
        write_store(placeholder.store, haproxy, sshd, frontend_port)
        yield placeholder
    finally:
        haproxy.stop()
        shutil.rmtree(lb_dir, ignore_errors=True)
