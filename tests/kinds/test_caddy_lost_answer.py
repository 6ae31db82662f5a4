"""Caddy restarts its admin listener on loads, so a load's answer can be lost after it took.

A relay on loopback sits in front of a real Caddy's admin API: it forwards the first load, waits
for Caddy's answer, and resets the connection instead of passing the answer on. lbctl must see
that the config took (not load it again, which If-Match would refuse with 412) and carry on.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbctl.config import target_from
from lbctl.drivers.caddy import CaddyDriver
from lbctl.kinds.caddy import CaddyKind
from lbctl.lab.processes import free_port
from lbctl.store.bundle import Bundle
from lbctl.transports.http import HttpTransport
from tests.kinds.conftest import CADDY_SOURCE, CaddyLab


class ResetFirstLoad:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.resets = 0
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        # Caddy's admin API accepts only its own address as Host: present it, as a proxy would.
        data = client.recv(65536).replace(
            f"127.0.0.1:{self.port}".encode(), f"127.0.0.1:{self.upstream_port}".encode(), 1
        )
        if data.startswith(b"POST") and self.resets == 0:
            while b"\r\n\r\n" not in data:  # the Host line is in the first packet, with the method
                data += client.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            found = re.search(rb"(?i)content-length:\s*(\d+)", head)
            length = int(found.group(1)) if found else 0
            while len(body) < length:
                body += client.recv(65536)
            upstream.sendall(head + b"\r\n\r\n" + body)
            upstream.recv(65536)  # Caddy answered: the load took
            self.resets += 1
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # a reset, not the answer
            upstream.close()
            return
        upstream.sendall(data)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)

    def close(self) -> None:
        self.server.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay(caddy_lab: CaddyLab) -> Iterator[ResetFirstLoad]:
    relay = ResetFirstLoad(caddy_lab.caddy.admin_port)
    yield relay
    relay.close()


def test_a_load_whose_answer_was_lost_is_not_loaded_twice(
    tmp_path: Path, caddy_lab: CaddyLab, relay: ResetFirstLoad
) -> None:
    # Through the transport itself: a whole deploy would rightly refuse a config whose admin
    # address is not the target's `api` (the relay's), so the load is driven step by step.
    target = target_from(
        {
            "name": "edge",
            "kind": "caddy",
            "transport": "http",
            "api": f"http://127.0.0.1:{relay.port}",
            "path": "/config/",
            "source": CADDY_SOURCE,
        }
    )
    new = caddy_lab.config(weights={"web1": 2, "web2": 1, "web3": 1})
    with CaddyDriver(target, CaddyKind(target), HttpTransport(target)) as driver:
        driver.stage(Bundle(new.encode()))
        driver.swap()  # reads the running config and its ETag
        detail = driver.load()  # POST with If-Match: the answer is lost, the load took

    assert relay.resets == 1  # the answer to the load really was lost
    assert detail == "loaded with If-Match"
    assert caddy_lab.live_text() == new
