"""A candidate config run by the LB's real binary on lbctl's machine, with stubs for servers.

`open_sandbox` rewrites the config so that it can run here and tell where each request
went: listeners move to free ports on a loopback address of its own (127.x.y.z, drawn at
random, so nothing else on the machine shares it even though the LBs set SO_REUSEPORT),
every server or upstream becomes a stub that answers with its backend and server name
(`lbctl.sandbox.stub`), and what belongs to the LB host is neutralised: users, chroot,
daemon mode, pid files, sockets, logs; certificates are replaced by a generated one and
the files a config loads (maps, ACL lists) come from the store when it has them. What the
kind's module cannot neutralise, the binary refuses, and its words become the reason the
sandbox could not run (`SandboxUnavailable`): a Lua file, a module, a file that is missing.

A sandbox is a context manager: leaving it stops the LB and the stubs and removes its
directory, whatever happened. The stub process keeps the LB (it starts it, and stops its
process group when lbctl's end of the pipe closes), so even a killed lbctl leaves neither.
"""

from __future__ import annotations

import contextlib
import json
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from lbctl.errors import ExitCode, LbctlError
from lbctl.sandbox.client import Connection, request_head

BACKEND_HEADER = "X-Lbctl-Backend"  # how a stub says which backend and server answered
SERVER_HEADER = "X-Lbctl-Server"
START_TIMEOUT = 15.0
FindFile = Callable[[str], "bytes | None"]  # a file the config names (a map, an ACL list) → its bytes, if known


class SandboxUnavailable(LbctlError):
    """The sandbox could not start; the message names what is missing (exit 3 for `lbctl test`)."""

    exit_code = ExitCode.VALIDATION


@dataclass(frozen=True)
class Listener:
    """Where the config accepts requests: named as the kind names it, moved to `address`."""

    label: str  # HAProxy: the frontend or listen section; nginx: ":PORT"; Caddy: the server's name
    port: int | None  # the port it has on the LB
    address: tuple[str, int]  # where it listens in the sandbox
    tls: bool = False


@dataclass(frozen=True)
class Request:
    path: str
    method: str = "GET"
    host: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    source: str | None = None  # the client's address, as the LB should see it
    port: int | None = None  # the LB port it arrives on (default: the sandbox's first listener)
    listener: str | None = None  # or the listener's label (a HAProxy log names its frontend)


@dataclass(frozen=True)
class Answer:
    listener: str
    status: int | None  # None: no HTTP answer (then `error` says what happened)
    backend: str | None  # None: the LB answered itself (deny, redirect, return) or nothing answered
    server: str | None
    error: str | None = None

    @property
    def endpoint(self) -> str:
        """Where the request ended, as one word: `backend/server`, or the LB's own status."""
        if self.backend is not None:
            return f"{self.backend}/{self.server}"
        return f"({self.status})" if self.status is not None else "(no answer)"


@dataclass
class Setup:
    """What a kind's module works with while it rewrites a config (`rewrite(main, setup)`)."""

    directory: Path
    address: str
    includes: dict[str, bytes]  # the bundle's included files, relative to the main file
    find_file: FindFile
    stubs: list[tuple[socket.socket, str, str]] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    reserved: list[socket.socket] = field(default_factory=list)  # listener ports, held until the LB starts
    _cert: Path | None = None

    def stub(self, backend: str, server: str) -> str:
        """A stub that answers as `backend`/`server`: its `host:port`."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.address, 0))
        sock.listen(512)
        self.stubs.append((sock, backend, server))
        return f"{self.address}:{sock.getsockname()[1]}"

    def listen(self, label: str, port: int | None, *, tls: bool = False) -> tuple[str, int]:
        """A free port on the sandbox's address for the listener `label` (original `port`)."""
        # Bound (not listening) until the LB starts, so that no stub's port-0 bind is given the same port.
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.bind((self.address, 0))
        self.reserved.append(probe)
        address = (self.address, int(probe.getsockname()[1]))
        self.listeners.append(Listener(label, port, address, tls))
        return address

    def release(self) -> None:
        """Close what the sandbox's process holds now (or will never need): reserved ports, stub sockets."""
        for sock in (*self.reserved, *(s for s, _, _ in self.stubs)):
            with contextlib.suppress(OSError):
                sock.close()
        self.reserved.clear()

    def certificate(self) -> Path:
        """A throwaway self-signed certificate and key, in one PEM file (HAProxy's `crt` form)."""
        if self._cert is None:
            self._cert = self.directory / "sandbox.pem"
            self._cert.write_bytes(_self_signed())
        return self._cert

    def write(self, rel: str, data: bytes) -> Path:
        path = self.directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


@dataclass(frozen=True)
class Launch:
    """How to run the rewritten config: the command, its environment, how a client's source is told."""

    argv: list[str]
    source_header: str  # the request header the rewritten config reads the client's address from
    env: dict[str, str] = field(default_factory=dict)
    check_argv: list[str] | None = None  # a native check of the rewritten config, run first for its messages


class Sandbox:
    """A running sandbox; `send` one request, `send_all` many over keep-alive connections."""

    def __init__(self, kind: str, setup: Setup, launch: Launch) -> None:
        self.kind = kind
        self.setup = setup
        self.launch = launch
        self.listeners = tuple(setup.listeners)
        self._procs: list[subprocess.Popen[bytes]] = []
        self._local = threading.local()
        self._connections: list[Connection] = []  # every client connection, closed with the sandbox
        self._lb_pid: int | None = None
        self._reader: threading.Thread | None = None  # the keeper's news (`exited CODE`)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def pids(self) -> tuple[int, ...]:
        """The keeper's (stubs) and the LB's process ids."""
        return (*(p.pid for p in self._procs), *((self._lb_pid,) if self._lb_pid else ()))

    def start(self) -> None:
        if self.launch.check_argv is not None:
            checked = subprocess.run(
                self.launch.check_argv,
                capture_output=True,
                text=True,
                env={**os.environ, **self.launch.env},
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
            if checked.returncode != 0:
                raise SandboxUnavailable(self._refusal(checked.stdout + checked.stderr))
        keeper = self._start_keeper()
        for sock in self.setup.reserved:  # the LB binds these ports now
            sock.close()
        self.setup.reserved.clear()
        spec = {
            "argv": self.launch.argv,
            "env": self.launch.env,
            "cwd": str(self.setup.directory),
            "log": str(self.setup.directory / "lb.log"),
        }
        said = self._tell(keeper, json.dumps(spec))
        if not said.startswith("started "):
            raise SandboxUnavailable(f"{self.kind} could not be started: {said or 'no answer'}")
        self._lb_pid = int(said.split()[1])
        exited: list[str] = []
        assert keeper.stdout is not None
        stdout = keeper.stdout
        self._reader = threading.Thread(target=lambda: exited.extend(line.decode() for line in stdout), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        waiting = list(self.listeners)
        while waiting:
            if exited:
                raise SandboxUnavailable(self._refusal(self._log()))
            try:
                with socket.create_connection(waiting[0].address, timeout=0.5):
                    waiting.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SandboxUnavailable(f"{self.kind} did not listen within {START_TIMEOUT:.0f} s\n{self._log()}")
            time.sleep(0.005)

    def _start_keeper(self) -> subprocess.Popen[bytes]:
        """The process that serves the stubs and starts, watches and stops the LB (`lbctl.sandbox.stub`)."""
        fds = [sock.fileno() for sock, _, _ in self.setup.stubs]
        proc = subprocess.Popen(
            [sys.executable, "-m", "lbctl.sandbox.stub"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=fds,
            start_new_session=True,
        )
        self._procs.append(proc)
        plan = [[sock.fileno(), backend, server] for sock, backend, server in self.setup.stubs]
        if self._tell(proc, json.dumps(plan)) != "ready":
            raise SandboxUnavailable("the sandbox's server stubs did not start")
        for sock, _, _ in self.setup.stubs:
            sock.close()  # the keeper holds them now
        return proc

    @staticmethod
    def _tell(proc: subprocess.Popen[bytes], line: str) -> str:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
        except OSError:
            return ""
        return proc.stdout.readline().decode().strip()

    def _log(self) -> str:
        try:
            return (self.setup.directory / "lb.log").read_text(errors="replace").strip()
        except OSError:
            return ""

    def _refusal(self, output: str) -> str:
        """The binary's reasons, in the LB's own names for files (not the sandbox's)."""
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        important = [
            line for line in lines if any(w in line for w in ("ALERT", "emerg", "error", "Error", "unknown", "failed"))
        ]
        shown = "\n".join((important or lines)[-12:]).replace(str(self.setup.directory) + "/", "")
        return f"{self.kind} refused the sandbox's copy of the config:\n{shown}"

    def close(self) -> None:
        for conn in self._connections:
            with contextlib.suppress(OSError):
                conn.close()
        for proc in self._procs:
            _stop(proc)  # closing its stdin makes the keeper stop the LB, then itself
            if self._reader is not None:
                self._reader.join(2)
            if proc.stdout is not None:
                proc.stdout.close()
        self._procs.clear()
        if self._lb_pid is not None:  # in case the keeper could not
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._lb_pid, signal.SIGKILL)
            self._lb_pid = None
        self.setup.release()
        shutil.rmtree(self.setup.directory, ignore_errors=True)

    # -- requests --------------------------------------------------------------------------

    def listener_for(self, request: Request) -> Listener:
        if not self.listeners:
            raise SandboxUnavailable(f"the {self.kind} config has no listener to send requests to")
        if request.listener is not None:
            for listener in self.listeners:
                if listener.label == request.listener:
                    return listener
        if request.port is not None:
            for listener in self.listeners:
                if listener.port == request.port:
                    return listener
            raise SandboxUnavailable(
                f"no listener on port {request.port} in the {self.kind} config",
                hint="ports: " + ", ".join(sorted({str(lst.port) for lst in self.listeners})),
            )
        return self.listeners[0]

    def send(self, request: Request) -> Answer:
        listener = self.listener_for(request)
        pool: dict[tuple[str, int], Connection] = self._local.__dict__.setdefault("pool", {})
        conn = pool.get(listener.address)
        host = request.host or f"{listener.address[0]}:{listener.address[1]}"
        if conn is None:
            name = request.host if listener.tls and request.host and not request.host[0].isdigit() else None
            conn = Connection(listener.address, tls=listener.tls, server_name=name)
            self._connections.append(conn)
            if not listener.tls:  # TLS connections carry one SNI: not shared between hosts
                pool[listener.address] = conn
        headers = dict(request.headers)
        if request.source is not None:
            headers[self.launch.source_header] = request.source
        head = request_head(request.method.upper(), request.path, host, headers)
        try:
            response = conn.request(head, bodiless=request.method.upper() == "HEAD")
        except OSError as exc:
            conn.close()
            return Answer(listener.label, None, None, None, error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a garbled answer: the request's result, not lbctl's bug
            conn.close()
            return Answer(listener.label, None, None, None, error=f"no HTTP answer ({type(exc).__name__})")
        finally:
            if listener.tls:
                conn.close()
        backend = response.headers.get(BACKEND_HEADER.lower())
        server = response.headers.get(SERVER_HEADER.lower())
        return Answer(listener.label, response.status, backend, server)

    def send_all(self, requests: Sequence[Request], *, workers: int = 8) -> list[Answer]:
        """Every request's answer, in order, over `workers` threads with a keep-alive connection each."""
        if len(requests) < 2 * workers:
            return [self.send(r) for r in requests]
        from concurrent.futures import ThreadPoolExecutor

        size = (len(requests) + workers - 1) // workers
        chunks = [requests[i : i + size] for i in range(0, len(requests), size)]

        def run(chunk: Sequence[Request]) -> list[Answer]:
            try:
                return [self.send(r) for r in chunk]
            finally:
                for conn in self._local.__dict__.pop("pool", {}).values():
                    conn.close()

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(run, chunks))
        return [answer for chunk in results for answer in chunk]


@contextlib.contextmanager
def open_sandbox(
    kind: str,
    main: bytes,
    *,
    filename: str,
    includes: dict[str, bytes] | None = None,
    find_file: FindFile = lambda path: None,
) -> Iterator[Sandbox]:
    """Run `main` (and its `includes`) with the `kind`'s binary; `SandboxUnavailable` when it cannot."""
    import importlib

    module = importlib.import_module(f"lbctl.sandbox.{kind}")  # haproxy.py, nginx.py, caddy.py
    directory = Path(tempfile.mkdtemp(prefix="lbctl-sandbox-"))
    setup = Setup(directory, _loopback_address(), dict(includes or {}), find_file)
    sandbox: Sandbox | None = None
    try:
        try:
            launch: Launch = module.rewrite(main, setup, filename=filename)
        except SandboxUnavailable:
            raise
        except LbctlError as exc:  # e.g. a config that does not parse
            raise SandboxUnavailable(f"the config could not be prepared for a sandbox: {exc.message}") from None
        except Exception as exc:  # the routing gate must not stop a deploy on lbctl's own bug: say it
            raise SandboxUnavailable(
                f"lbctl could not rewrite this {kind} config for a sandbox ({type(exc).__name__}: {exc})",
                hint="please report it with the config; run with --debug for details",
            ) from exc
        sandbox = Sandbox(kind, setup, launch)
        sandbox.start()
        yield sandbox
    finally:
        if sandbox is not None:
            sandbox.close()
        else:
            setup.release()
            shutil.rmtree(directory, ignore_errors=True)


def binary(name: str) -> str:
    """The LB's binary on this machine, or `SandboxUnavailable` naming it."""
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if found is None:
        raise SandboxUnavailable(f"{name} is not installed on this machine", hint=f"install {name} where lbctl runs")
    return found


def _loopback_address() -> str:
    """A loopback address of the sandbox's own, away from 127.0.0.x where most things listen."""
    rng = random.SystemRandom()
    return f"127.{rng.randint(64, 127)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _stop(keeper: subprocess.Popen[bytes]) -> None:
    """End of stdin tells the keeper to stop the LB and the stubs; a keeper that does not is killed."""
    if keeper.stdin is not None:
        with contextlib.suppress(OSError):
            keeper.stdin.close()
    try:
        keeper.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(keeper.pid, signal.SIGKILL)
        keeper.wait(5)


def _self_signed() -> bytes:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lbctl-sandbox")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def request_of(route: object) -> Request:
    """A `Request` from a routing case of lbctl.toml (`config.Route`)."""
    from lbctl.config import Route

    assert isinstance(route, Route)
    return Request(
        path=route.path,
        method=route.method,
        host=route.host,
        headers=tuple(route.headers.items()),
        source=route.source,
        port=route.port,
    )
