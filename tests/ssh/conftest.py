"""A private OpenSSH server and a real HAProxy on loopback, for the ssh transport's tests.

The sshd runs from its own temp dir (host key, authorized_keys, config), pubkey only; the
client key and a known_hosts holding the host key are generated beside it. HOME is a temp
dir in every test, so the user's ~/.ssh (config, keys, known_hosts) is never read, and
ssh-agent is unset. Every process started here is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config, stop, wait_listening

SSHD = "/usr/sbin/sshd"  # installed by scripts/test (bootstrap.sh); missing, these tests fail, never skip


@dataclass
class Sshd:
    dir: Path
    port: int
    host_public: str  # "ssh-ed25519 AAAA..."
    client_key: Path
    known_hosts: Path  # holds this server's key under [127.0.0.1]:port
    proc: subprocess.Popen[bytes]

    def known_hosts_line(self, port: int | None = None) -> str:
        return f"[127.0.0.1]:{port or self.port} {self.host_public}\n"

    def sessions(self) -> list[int]:
        """PIDs of the per-connection sshd children (each serves one client connection)."""
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def cut_connections(self) -> int:
        """SIGKILL every session child: the clients' connections drop as on a network cut."""
        pids = self.sessions()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def stop(self) -> None:
        stop(self.proc)


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lbctl-test", "-f", str(path)], check=True)


def start_sshd(workdir: Path, *, client_key: Path | None = None, extra: str = "") -> Sshd:
    workdir.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    host_key = workdir / "host_ed25519"
    _keygen(host_key)
    if client_key is None:
        client_key = workdir / "client_ed25519"
        _keygen(client_key)
    (workdir / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        textwrap.dedent(f"""\
        ListenAddress 127.0.0.1
        Port {port}
        HostKey {host_key}
        PidFile {workdir}/sshd.pid
        AuthorizedKeysFile {workdir}/authorized_keys
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        UsePAM no
        PermitRootLogin prohibit-password
        StrictModes no
        UseDNS no
        SetEnv SHLVL=1
        Subsystem sftp internal-sftp
        LogLevel ERROR
        """)
        + extra
    )
    log = (workdir / "sshd.log").open("ab")
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    try:
        wait_listening(port, timeout=10)
    except RuntimeError:
        stop(proc)
        raise RuntimeError(f"sshd did not start: {(workdir / 'sshd.log').read_text()}") from None
    public = " ".join(Path(f"{host_key}.pub").read_text().split()[:2])
    known_hosts = workdir / "known_hosts"
    sshd = Sshd(workdir, port, public, client_key, known_hosts, proc)
    known_hosts.write_text(sshd.known_hosts_line())
    return sshd


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
