"""The lab's latency relay: bytes pass unchanged, each way is delayed, and round trips are counted."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from lbctl.lab.netproxy import Relay


def echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_relay_delays_each_way_and_counts_round_trips() -> None:
    server, port = echo_server()
    with server, Relay(port, delay=0.03) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port))
        with client:
            start = time.monotonic()
            for word in (b"one", b"two", b"three"):
                client.sendall(word)
                assert client.recv(100) == word.upper()
            elapsed = time.monotonic() - start
        stats = proxy.reset()
    assert elapsed >= 3 * 2 * 0.03  # a lower bound only: latency is never less than the delay
    assert stats.round_trips == 3
    assert stats.bytes_up == stats.bytes_down == len(b"onetwothree")
    assert stats.connections == 1


def test_cut_drops_open_connections() -> None:
    server, port = echo_server()
    with server, Relay(port) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port))
        with client:
            client.sendall(b"x")
            assert client.recv(10) == b"X"
            assert proxy.drop_all() == 1
            client.settimeout(5)
            with contextlib.suppress(ConnectionResetError):  # a reset is how a cut link ends too
                assert client.recv(10) == b""
