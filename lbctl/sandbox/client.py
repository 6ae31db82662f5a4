"""A small HTTP/1.1 client for the sandbox: keep-alive connections, no redirects followed.

The standard library's `http.client` costs several times more per request than this; with
thousands of replayed requests, the client is most of the time a replay takes.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lowercase (HAProxy lowercases them anyway)


class ClosedEarly(Exception):
    """The connection closed before a whole response came (retried once on a fresh connection)."""


@dataclass
class Connection:
    """One keep-alive connection to `address`, over TLS when `tls`; reopened when the server closed it."""

    address: tuple[str, int]
    tls: bool = False
    server_name: str | None = None
    timeout: float = 10.0
    _sock: socket.socket | None = None
    _buffer: bytes = b""
    _reused: bool = field(default=False)

    def request(self, head: bytes, *, bodiless: bool = False) -> Response:
        """Send one request (`head`, without a body) and read its answer; `bodiless` for HEAD."""
        for attempt in (1, 2):
            fresh = self._sock is None
            try:
                sock = self._open()
                sock.sendall(head)
                return self._read(bodiless)
            except (ClosedEarly, ConnectionResetError, BrokenPipeError):
                self.close()
                if fresh or attempt == 2:  # a new connection that fails is an answer, not a stale socket
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._buffer = b""

    def _open(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection(self.address, timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # the sandbox's own throwaway certificate
                sock = context.wrap_socket(sock, server_hostname=self.server_name)
            self._sock = sock
        return self._sock

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ClosedEarly()
        self._buffer += chunk

    def _read(self, bodiless: bool) -> Response:
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = self._buffer[:end].decode("latin-1")
        self._buffer = self._buffer[end + 4 :]
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ClosedEarly()
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if bodiless or status in (204, 304) or status < 200:
            pass
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            self._skip_chunked()
        elif "content-length" in headers:
            self._skip(int(headers["content-length"]))
        else:
            self._drain()  # no length: the body ends when the connection does
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers)

    def _skip(self, length: int) -> None:
        while len(self._buffer) < length:
            self._fill()
        self._buffer = self._buffer[length:]

    def _skip_chunked(self) -> None:
        while True:
            while (end := self._buffer.find(b"\r\n")) < 0:
                self._fill()
            size = int(self._buffer[:end].split(b";")[0].strip() or b"0", 16)
            self._buffer = self._buffer[end + 2 :]
            if size == 0:
                while (end := self._buffer.find(b"\r\n")) < 0:
                    self._fill()
                line = self._buffer[:end]
                self._buffer = self._buffer[end + 2 :]
                if not line:
                    return
                continue
            self._skip(size + 2)

    def _drain(self) -> None:
        try:
            while True:
                self._fill()
        except (ClosedEarly, OSError):
            self._buffer = b""


def request_head(method: str, path: str, host: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
