"""A private OpenSSH server on a free loopback port, for the ssh tests and the SSH benchmark.

It runs from its own directory (host key, authorized_keys, config), public keys only; a client
key and a known_hosts holding the host key are generated beside it. It is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from lbctl.lab.processes import free_port, stop, wait_listening

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
