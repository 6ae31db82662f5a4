"""The stand-in for every server of a sandboxed config: it answers with its backend and server name.

Run as `python -m lbctl.sandbox.stub`, with the listening sockets already bound by the
parent (inherited file descriptors, so no port can be taken in between) and, on stdin,
one JSON line `[[fd, backend, server], ...]`. It prints `ready` once it serves, and exits
when stdin closes: the parent's death ends it too, so no stub outlives a sandbox.

Each answer is `200` with `X-Lbctl-Backend` and `X-Lbctl-Server` headers (and the same
as its body), over HTTP/1.1 keep-alive. asyncio protocols keep it to a few tens of
microseconds a request, in a process of its own so that it does not share the client's GIL.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys

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
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip() or b"0")
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            self.transport.write(self.head_response if head.startswith(b"HEAD ") else self.response)
            if close:
                self.transport.close()
                return


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


async def _serve(plan: list[list[object]]) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for fd, backend, server in plan:
        sock = socket.socket(fileno=int(str(fd)))
        sock.setblocking(False)
        full, head = _responses(str(backend), str(server))
        servers.append(await loop.create_server(lambda f=full, h=head: _Answer(f, h), sock=sock))  # type: ignore[misc]
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin (or dies)
    for server in servers:
        server.close()


def main() -> None:
    plan = json.loads(sys.stdin.readline())
    asyncio.run(_serve(plan))


if __name__ == "__main__":
    main()
