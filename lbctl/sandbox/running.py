"""A sandbox while it runs: its processes, and the requests sent through it.

The stub process (`lbctl.sandbox.stub`) is started first with the stubs' sockets; it then
starts the LB, reports its exit, and stops it when its stdin closes. Requests go over
keep-alive connections, one per listener per thread (`send_all` spreads a list over a
pool of threads); an answer names the backend and server that the stub said answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from lbctl.errors import SandboxUnavailable
from lbctl.sandbox import (
    BACKEND_HEADER,
    SERVER_HEADER,
    START_TIMEOUT,
    Answer,
    Launch,
    Listener,
    Request,
    Setup,
)
from lbctl.sandbox.client import Connection, request_head


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
        errors = self.setup.directory / "keeper.log"
        with errors.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lbctl.sandbox.stub"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                pass_fds=fds,
                start_new_session=True,
            )
        self._procs.append(proc)
        plan = [[sock.fileno(), backend, server] for sock, backend, server in self.setup.stubs]
        if self._tell(proc, json.dumps(plan)) != "ready":
            last = errors.read_text(errors="replace").strip().splitlines()[-1:]
            raise SandboxUnavailable("the sandbox's server stubs did not start" + (f": {last[0]}" if last else ""))
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
        kept = True
        for proc in self._procs:
            kept = _stop(proc) and kept  # closing its stdin makes the keeper stop the LB, then itself
            if self._reader is not None:
                self._reader.join(2)
            if proc.stdout is not None:
                proc.stdout.close()
        self._procs.clear()
        if self._lb_pid is not None and not kept:  # the keeper was killed before it stopped the LB
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


def _stop(keeper: subprocess.Popen[bytes]) -> bool:
    """End of stdin tells the keeper to stop the LB and the stubs; a keeper that does not is killed
    (then False: the LB may still run)."""
    if keeper.stdin is not None:
        with contextlib.suppress(OSError):
            keeper.stdin.close()
    try:
        return keeper.wait(15) == 0
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(keeper.pid, signal.SIGKILL)
        keeper.wait(5)
        return False
