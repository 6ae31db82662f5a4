"""Start and stop real processes on loopback: backends, HAProxy master-worker, load."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_handed_out: set[int] = set()
_handed_lock = threading.Lock()
# Ports below the kernel's ephemeral range (32768-60999 by default): an outgoing connection
# never takes one as its local port between the moment it is handed out and the bind.
_PORTS = range(20000, 32768)
# Held locks on <tempdir>/lbctl-ports/<port>: another process (a parallel test worker, a demo)
# skips a port one of them names. The most recent ones are kept; older ports are bound by now.
_reserved: deque[int] = deque()
_RESERVED_KEPT = 256
_RESERVED_IN = Path(tempfile.gettempdir()) / "lbctl-ports"  # fixed at import: shared by every process
_random = random.SystemRandom()


def free_port() -> int:
    """A loopback port nobody listens on, never handed out twice by this process nor by two at once.

    HAProxy, nginx and Caddy set SO_REUSEPORT, so a bind would succeed on a port one of
    them holds: we check with a plain bind (no SO_REUSEPORT), which fails if any listener exists.
    Between that check and the caller's bind, a lock file reserves the port against other processes.
    """
    with _handed_lock:
        for _ in range(500):
            port = _random.choice(_PORTS)
            if port in _handed_out or not port_is_free(port) or not _reserve(port):
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError("no free loopback port found")


def _reserve(port: int) -> bool:
    """Hold an exclusive lock naming `port` (released when this process exits); False if another holds it."""
    try:
        _RESERVED_IN.mkdir(mode=0o777, exist_ok=True)
        fd = os.open(_RESERVED_IN / str(port), os.O_CREAT | os.O_RDWR, 0o666)
    except OSError:
        return True  # no shared folder: the bind check alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _reserved.append(fd)
    while len(_reserved) > _RESERVED_KEPT:
        os.close(_reserved.popleft())
    return True


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.01)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM the process (and its session), then SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


@dataclass
class Backends:
    """HTTP backends in one child process; `ports[name]` is where each listens."""

    ports: dict[str, int]
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, names: list[str], *, delay_ms: int = 0) -> Backends:
        ports = {name: free_port() for name in names}
        proc = subprocess.Popen(
            [sys.executable, "-m", "lbctl.lab.backends", *(f"{n}={p}:{delay_ms}" for n, p in ports.items())],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            stop(proc)
            raise RuntimeError(f"backends did not start: {line!r}")
        return cls(ports, proc)

    def stop(self) -> None:
        stop(self.proc)


@dataclass
class Haproxy:
    """A HAProxy master-worker (`-W -S`) run in the foreground of its own session."""

    workdir: Path
    config: Path
    master_socket: Path
    stats_socket: Path
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, workdir: Path, config_text: str, *, config_name: str = "haproxy.cfg") -> Haproxy:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / config_name
        config.write_text(config_text)
        master = workdir / "master.sock"
        log = (workdir / "haproxy.log").open("ab")
        proc = subprocess.Popen(
            [binary, "-W", "-S", f"{master},mode,600", "-f", str(config), "-p", str(workdir / "haproxy.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        haproxy = cls(workdir, config, master, workdir / "admin.sock", proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"haproxy exited {proc.returncode}: {(workdir / 'haproxy.log').read_text()}")
            with contextlib.suppress(OSError):
                if "worker" in haproxy.master_command("show proc"):
                    return haproxy
            time.sleep(0.01)
        haproxy.stop()
        raise RuntimeError("haproxy's master socket did not answer within 10 s")

    def master_command(self, command: str) -> str:
        """One command on the master CLI."""
        return unix_command(self.master_socket, command)

    def runtime_command(self, command: str) -> str:
        """One command on the runtime API (the stats socket), as an operator would send it."""
        return unix_command(self.stats_socket, command)

    def stop(self) -> None:
        stop(self.proc)


@dataclass
class Load:
    """Light, bounded HTTP load on a URL from a background thread."""

    url: str
    rate: float = 20.0  # requests per second, per worker thread
    max_requests: int = 2000  # per worker thread
    max_seconds: float = 120.0
    concurrency: int = 1
    statuses: Counter[str] = field(default_factory=Counter)
    backends: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _count_lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for _ in range(self.concurrency):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def _run(self) -> None:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        started = time.monotonic()
        for _ in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() - started > self.max_seconds:
                return
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2)
            try:
                conn.request("GET", parts.path or "/")
                response = conn.getresponse()
                response.read()
                with self._count_lock:
                    self.statuses[str(response.status)] += 1
                    self.backends[response.getheader("X-Backend") or "-"] += 1
            except OSError as exc:
                with self._count_lock:
                    self.statuses[type(exc).__name__] += 1
            finally:
                conn.close()
            self._stop.wait(1.0 / self.rate)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)


def unix_command(path: Path, command: str) -> str:
    """Send one line to a HAProxy UNIX socket and read the whole answer (it answers once we stop writing)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(command.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def haproxy_config(
    *,
    frontend_port: int,
    backends: dict[str, int],
    stats_socket: Path,
    route_to: str = "web",
    extra_backends: str = "",
    weights: dict[str, int] | None = None,
    server_options: str = "",
) -> str:
    """A small HAProxy config: one frontend, backend `web` over `backends`."""
    servers = "\n".join(
        f"    server {name} 127.0.0.1:{port} check inter 1s weight {(weights or {}).get(name, 100)}"
        + (f" {server_options}" if server_options else "")
        for name, port in backends.items()
    )
    return f"""\
global
    stats socket {stats_socket} mode 600 level admin

defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    retries 1

frontend www
    bind 127.0.0.1:{frontend_port}
    default_backend {route_to}

backend web
    balance roundrobin
{servers}
{extra_backends}"""


@contextlib.contextmanager
def temp_dir(prefix: str, keep: bool = False) -> Iterator[Path]:
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def haproxy_target_toml(
    name: str,
    haproxy: Haproxy,
    url: str,
    *,
    source: str = "configs/edge/haproxy.cfg",
    probes: int | None = None,
    balance: float | bool = False,
    extra: str = "",
) -> str:
    """A `[targets.NAME]` table for a lab HAProxy on the local transport, with an http check on `url`.

    `balance` adds a balance check (a float is its max_share); `extra` adds lines to the target table.
    """
    lines = [
        f"[targets.{name}]",
        'kind = "haproxy"',
        'transport = "local"',
        f'source = "{source}"',
        f'path = "{haproxy.config}"',
        f'master_socket = "{haproxy.master_socket}"',
        f'stats_socket = "{haproxy.stats_socket}"',
        *([extra.strip()] if extra.strip() else []),
        "",
        f"[[targets.{name}.checks]]",
        'type = "http"',
        f'url = "{url}"',
        *([f"probes = {probes}"] if probes is not None else []),
    ]
    if balance is not False:
        lines += ["", f"[[targets.{name}.checks]]", 'type = "balance"']
        if not isinstance(balance, bool):
            lines.append(f"max_share = {balance}")
    return "\n".join(lines) + "\n"
