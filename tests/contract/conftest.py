"""The backends the contract suite runs against: real HAProxy (local, and over a private
sshd), nginx (local) and Caddy (its admin API), each started on loopback by the labs of
tests/conftest.py, tests/kinds/conftest.py and tests/ssh/conftest.py, and stopped by them.

A `Rig` is what a contract test needs of a backend: the target, candidate configs, what the
LB holds now (read by the test, not through lbctl) and its frontend's port.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lbctl.config import Target, target_from
from lbctl.drivers import driver_for
from lbctl.drivers.base import Driver
from tests.conftest import Lab
from tests.kinds.conftest import CADDY_SOURCE, NGINX_SOURCE, CaddyLab, NginxLab, caddy_lab, nginx_lab
from tests.ssh.conftest import Sshd, isolated_home, sshd

__all__ = ["caddy_lab", "isolated_home", "nginx_lab", "sshd"]  # fixtures, for the tests of this directory


@dataclass
class Rig:
    target: Target
    config: Callable[..., str]  # config(route_to=..., weights=...): a candidate for this LB
    broken: str  # parses, but the LB's own validator refuses it
    live_text: Callable[[], str]  # what the LB holds now, read beside lbctl
    fe_port: int
    leftovers: Callable[[], list[Path]]  # staged files that must not outlive an operation
    servers: tuple[str, ...]  # how the LB's traffic counters name the three backends

    def driver(self) -> Driver:
        return driver_for(self.target)

    def same(self, driver: Driver, got: bytes | None, expected: str) -> bool:
        return got is not None and driver.kind.canonical(got) == driver.kind.canonical(expected.encode())


def status_of(port: int) -> int:
    """The status of one GET / on the LB's frontend (a new connection: the current workers answer)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def answers(port: int, wanted: Callable[[int], bool], within: float = 10.0) -> bool:
    """Whether the frontend comes to answer as `wanted` (polled: a reload hands over its listeners)."""
    deadline = time.monotonic() + within
    while True:
        if wanted(status_of(port)):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def haproxy_rig(lab: Lab, **transport: Any) -> Rig:
    haproxy = lab.haproxy
    values = {
        "name": "edge",
        "kind": "haproxy",
        "transport": "local",
        "source": "configs/edge/haproxy.cfg",
        "path": str(haproxy.config),
        "master_socket": str(haproxy.master_socket),
        "stats_socket": str(haproxy.stats_socket),
        "retries": 2,
        **transport,
    }
    return Rig(
        target_from(values),
        lab.config,
        lab.config().replace("balance roundrobin", "balance roundrobinn"),
        lab.live_text,
        lab.fe_port,
        lambda: list(haproxy.config.parent.glob(".*lbctl-stage*")),
        ("web/web1", "web/web2", "web/web3"),
    )


def ssh_settings(sshd: Sshd) -> dict[str, Any]:
    return {
        "transport": "ssh",
        "host": "127.0.0.1",
        "port": sshd.port,
        "identity_file": str(sshd.client_key),
        "known_hosts": str(sshd.known_hosts),
    }


def nginx_rig(lab: NginxLab) -> Rig:
    values = {
        "name": "edge",
        "kind": "nginx",
        "transport": "local",
        "source": NGINX_SOURCE,
        "path": str(lab.nginx.config),
        "prefix": str(lab.nginx.prefix),
        "retries": 2,
    }
    labels = tuple(f"web/{lab.server_label(name)}" for name in ("web1", "web2", "web3"))
    return Rig(
        target_from(values), lab.config, lab.broken_config(), lab.live_text, lab.fe_port, lab.staged_leftovers, labels
    )


def caddy_rig(lab: CaddyLab) -> Rig:
    values = {
        "name": "edge",
        "kind": "caddy",
        "transport": "http",
        "api": lab.caddy.api,
        "path": "/config/",
        "source": CADDY_SOURCE,
        "retries": 2,
        "checks": [{"type": "http", "url": f"http://127.0.0.1:{lab.fe_port}/", "probes": 2}],
    }
    labels = ("www/web1", "www/web2", "www/web3")  # the server block, and the backend each answer names
    # Caddy's driver writes no file (test_staging_leaves_no_file_for_caddy); the lab's own glob of
    # the machine's temp dir would count other processes' files on a shared machine.
    return Rig(target_from(values), lab.config, lab.broken_config(), lab.live_text, lab.fe_port, list, labels)
