"""Network faults on loopback for the tests and bench/faults.py: a relay that cuts, a port that never answers.

`CuttingRelay` forwards TCP to an upstream port and cuts connections as a dropped link would
(RST both ways) once a client has sent `cut_after` bytes, for its first `cuts` connections (or
all of them). `Blackhole` accepts connections and never says a word, as a stalled host or a
half-open firewall does. Both run in daemon threads and stop with `close()`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


class CuttingRelay:
    """A TCP relay to `upstream` that cuts each of its first `cuts` connections after `cut_after` client bytes.

    `cuts=None` cuts every connection. `self.cut` counts the cuts made.
    """

    def __init__(self, upstream: int, cut_after: int, *, cuts: int | None = None) -> None:
        self.upstream, self.cut_after, self.cuts = upstream, cut_after, cuts
        self.cut = 0
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="lab-cutting-relay").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                cutting = self.cuts is None or self.connections <= self.cuts
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            limit = self.cut_after if cutting else None
            pair = (client, server)
            threading.Thread(target=self._pump, args=(client, server, limit, pair), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, None, pair), daemon=True).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, limit: int | None, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if limit is not None and sent + len(data) > limit:
                    with contextlib.suppress(OSError):
                        dst.sendall(data[: max(0, limit - sent)])
                    with self._lock:
                        self.cut += 1
                    for s in pair:  # RST both ways, as a dropped link or a killed sshd would
                        with contextlib.suppress(OSError):
                            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
                            s.close()
                    return
                sent += len(data)
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


class Blackhole:
    """A port that accepts connections and never answers (nor closes them until `close()`)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name="lab-blackhole").start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.accepted:
            with contextlib.suppress(OSError):
                conn.close()
