"""A TCP relay on loopback that adds latency, cuts connections and counts round trips, for tests and benchmarks.

Kernel traffic shaping (netem) is not available on these machines, so the lab puts its own relay
between lbctl and the LB host:

- `delay`: every chunk read on one side is delivered to the other `delay` seconds later (one-way
  latency, order kept, no throughput cap), as a link to a remote site would;
- `cut_after`: once a client has sent that many bytes on a connection, the relay forwards up to
  the limit and then resets both sides (RST), as a dropped link or a killed sshd would; only the
  first `cuts` connections are cut (all of them with `cuts=None`); `cut` counts the cuts made;
- **round trips**: a turn is counted each time data starts to flow back to the client after the
  client sent something, which is what a request/response protocol pays one latency round for.
  SSH's own key exchange counts too, as it does on a real link.

`Blackhole` (in `lbctl.lab.netfaults`) is the other fault: a port that never answers.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from lbctl.lab.processes import free_port

_CHUNK = 65536
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset
_CUT = b"\0cut"  # queued after the last bytes a cut connection may still pass


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
    limit: int | None  # client bytes allowed before the cut (None: never cut)
    sent_up: int = 0
    last_up: bool = False  # the last data seen went client -> server
    lock: threading.Lock = field(default_factory=threading.Lock)


class Relay:
    """Relay 127.0.0.1:`port` to 127.0.0.1:`target_port`; see the module's docstring for the options."""

    def __init__(
        self,
        target_port: int,
        *,
        delay: float = 0.0,
        cut_after: int | None = None,
        cuts: int | None = None,
        port: int | None = None,
    ) -> None:
        self.target_port = target_port
        self.delay = delay
        self.cut_after, self.cuts = cut_after, cuts
        self.port = port or free_port()
        self.stats = Stats()
        self.cut = 0  # connections cut so far
        self.connections = 0  # connections accepted so far
        self._stats_lock = threading.Lock()
        self._conns: list[_Conn] = []
        self._closing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._accept, name="lab-relay", daemon=True)

    def __enter__(self) -> Relay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Relay:
        return self.__enter__()

    def reset(self) -> Stats:
        """Return the counters so far and start new ones."""
        with self._stats_lock:
            old, self.stats = self.stats, Stats()
        return old

    def drop_all(self) -> int:
        """Drop every open connection at once, as a network cut would; returns how many."""
        conns, self._conns = self._conns, []
        for conn in conns:
            self._reset(conn)
        return len(conns)

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.drop_all()

    @staticmethod
    def _reset(conn: _Conn) -> None:
        for sock in (conn.client, conn.upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
            with contextlib.suppress(OSError):  # wakes the relay's own thread blocked in recv() on it
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._stats_lock:
                self.connections += 1
                self.stats.connections += 1
                cutting = self.cut_after is not None and (self.cuts is None or self.connections <= self.cuts)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client, upstream, self.cut_after if cutting else None)
            self._conns.append(conn)
            for up in (True, False):
                src, dst = (client, upstream) if up else (upstream, client)
                pending: queue.Queue[tuple[float, bytes]] = queue.Queue()
                threading.Thread(target=self._read, args=(conn, src, pending, up), daemon=True).start()
                threading.Thread(target=self._deliver, args=(conn, dst, pending), daemon=True).start()

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
                        if conn.limit is not None and conn.sent_up + len(data) > conn.limit:
                            pending.put((stamp, data[: max(0, conn.limit - conn.sent_up)]))
                            pending.put((stamp, _CUT))
                            self.cut += 1
                            return
                        conn.sent_up += len(data)
                    else:
                        self.stats.bytes_down += len(data)
                        if conn.last_up:
                            self.stats.round_trips += 1
                    conn.last_up = up
            pending.put((stamp, data))
            if not data:
                return

    def _deliver(self, conn: _Conn, dst: socket.socket, pending: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            stamp, data = pending.get()
            wait = stamp - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if data is _CUT:
                    self._reset(conn)  # RST both ways, after the bytes the limit let through
                    return
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
            except OSError:
                return
