"""Network faults on loopback for the tests and bench/faults.py: a relay that cuts, a port that never answers.

`CuttingRelay` is the lab's relay (`lbctl.lab.netproxy.Relay`) set to cut connections as a dropped
link would (RST both ways) once a client has sent `cut_after` bytes, for its first `cuts`
connections (or all of them). `Blackhole` accepts connections and never says a word, as a stalled
host or a half-open firewall does. Both run in daemon threads and stop with `close()`.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from lbctl.lab.netproxy import Relay


def CuttingRelay(upstream: int, cut_after: int, *, cuts: int | None = None) -> Relay:
    """A relay to `upstream` that cuts each of its first `cuts` connections after `cut_after` client bytes."""
    return Relay(upstream, cut_after=cut_after, cuts=cuts).start()


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
