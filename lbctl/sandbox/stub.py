"""The stand-in for every server of a sandboxed config, and the keeper of the sandbox's LB.

Run as `python -m lbctl.sandbox.stub`, with the listening sockets already bound by the
parent (inherited file descriptors, so no port can be taken in between). On stdin:
one JSON line `[[fd, backend, server], ...]`, answered `ready` once it serves; then one
JSON line `{"argv", "env", "cwd", "log"}`, the LB to start in a session of its own,
answered `started PID` (and `exited CODE` when it ends). When stdin closes, the stubs stop,
the LB's process group is terminated and the sandbox's directory (the LB's `cwd`) removed:
lbctl's end of the pipe closes however lbctl ends (SIGKILL too), so nothing outlives it.

Each answer is `200` with `X-Lbctl-Backend` and `X-Lbctl-Server` headers (and the same
as its body), over HTTP/1.1 keep-alive. asyncio protocols keep it to a few tens of
microseconds a request, in a process of its own so that it does not share the client's GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from lbctl.sandbox import BACKEND_HEADER, SERVER_HEADER


def _header_value(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)


class _Answer(asyncio.Protocol):
    def __init__(self, response: bytes, head_response: bytes) -> None:
        self.response = response
        self.head_response = head_response
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            head = buffer[:end].lower()
            length = 0
            if b"content-length:" in head:  # bodies are rare (a case's requests have none)
                length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0].strip() or b"0")
            if len(buffer) < end + 4 + length:
                break
            buffer = buffer[end + 4 + length :]
            assert self.transport is not None
            self.transport.write(self.head_response if head.startswith(b"head ") else self.response)
            if b"connection: close" in head:
                self.transport.close()
                break
        self.buffer = buffer


def _responses(backend: str, server: str) -> tuple[bytes, bytes]:
    body = f"{backend}/{server}\n".encode()
    head = (
        "HTTP/1.1 200 OK\r\n"
        f"{BACKEND_HEADER}: {_header_value(backend)}\r\n"
        f"{SERVER_HEADER}: {_header_value(server)}\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body, head


_said = threading.Lock()


def _say(line: str) -> None:
    with _said:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _start_lb(spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    with open(spec["log"], "wb") as log:
        proc = subprocess.Popen(
            spec["argv"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **spec["env"]},
            cwd=spec["cwd"],
            start_new_session=True,
        )
    _say(f"started {proc.pid}")
    threading.Thread(target=lambda: _say(f"exited {proc.wait()}"), daemon=True).start()
    return proc


def _stop_lb(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # anything it left in its group
        os.killpg(proc.pid, signal.SIGKILL)


async def _serve(plan: list[list[object]]) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for fd, backend, server in plan:
        sock = socket.socket(fileno=int(str(fd)))
        sock.setblocking(False)
        full, head = _responses(str(backend), str(server))
        servers.append(await loop.create_server(lambda f=full, h=head: _Answer(f, h), sock=sock))  # type: ignore[misc]
    _say("ready")
    lb = None
    spec: dict[str, Any] = {}
    try:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip():
            spec = json.loads(line)
            try:
                lb = _start_lb(spec)
            except OSError as exc:  # e.g. the binary vanished: lbctl says so
                _say(f"failed {exc}")
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin (or dies)
    finally:
        if lb is not None:
            _stop_lb(lb)
        for server in servers:
            server.close()
        if spec.get("cwd"):  # the sandbox's directory: lbctl removes it too, unless it was killed
            shutil.rmtree(spec["cwd"], ignore_errors=True)


def main() -> None:
    plan = json.loads(sys.stdin.readline())
    asyncio.run(_serve(plan))


if __name__ == "__main__":
    main()
