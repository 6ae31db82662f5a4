"""A TCP relay on loopback that adds latency and counts round trips, for tests and benchmarks.

Kernel traffic shaping (netem) is not available on these machines, so the lab puts its own relay
between lbctl and the LB host: every chunk read on one side is delivered to the other `delay`
seconds later (one-way latency, order kept, no throughput cap), as a link to a remote site would.

It also counts **round trips**: a turn is counted each time data starts to flow back to the
client after the client sent something, which is what a request/response protocol pays one
latency round for. SSH's own key exchange counts too, as it does on a real link.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from dataclasses import dataclass, field

from lbctl.lab.processes import free_port

_CHUNK = 65536


@dataclass
class Stats:
    """What went through the relay since the last `reset()`."""

    connections: int = 0
    round_trips: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass
class _Conn:
    client: socket.socket
    upstream: socket.socket
    last_up: bool = False  # the last data seen went client -> server
    lock: threading.Lock = field(default_factory=threading.Lock)


class LatencyProxy:
    """Relay 127.0.0.1:`port` to 127.0.0.1:`target_port` with `delay` seconds each way."""

    def __init__(self, target_port: int, *, delay: float = 0.0, port: int | None = None) -> None:
        self.target_port = target_port
        self.delay = delay
        self.port = port or free_port()
        self.stats = Stats()
        self._stats_lock = threading.Lock()
        self._conns: list[_Conn] = []
        self._closing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._thread = threading.Thread(target=self._accept, name="latency-proxy", daemon=True)

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> LatencyProxy:
        return self.__enter__()

    def reset(self) -> Stats:
        """Return the counters so far and start new ones."""
        with self._stats_lock:
            old, self.stats = self.stats, Stats()
        return old

    def cut(self) -> int:
        """Drop every open connection at once, as a network cut would; returns how many."""
        conns, self._conns = self._conns, []
        for conn in conns:
            for sock in (conn.client, conn.upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        return len(conns)

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client, upstream)
            self._conns.append(conn)
            with self._stats_lock:
                self.stats.connections += 1
            for up in (True, False):
                src, dst = (client, upstream) if up else (upstream, client)
                pending: queue.Queue[tuple[float, bytes]] = queue.Queue()
                threading.Thread(target=self._read, args=(conn, src, pending, up), daemon=True).start()
                threading.Thread(target=self._deliver, args=(dst, pending), daemon=True).start()

    def _read(self, conn: _Conn, src: socket.socket, pending: queue.Queue[tuple[float, bytes]], up: bool) -> None:
        while True:
            try:
                data = src.recv(_CHUNK)
            except OSError:
                data = b""
            stamp = time.monotonic() + self.delay
            if data:
                with conn.lock, self._stats_lock:
                    if up:
                        self.stats.bytes_up += len(data)
                    else:
                        self.stats.bytes_down += len(data)
                        if conn.last_up:
                            self.stats.round_trips += 1
                    conn.last_up = up
            pending.put((stamp, data))
            if not data:
                return

    def _deliver(self, dst: socket.socket, pending: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            stamp, data = pending.get()
            wait = stamp - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return
