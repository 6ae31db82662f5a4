"""Routing mistakes on a real nginx and a real Caddy: refused by `check` and `deploy` before any push.

nginx: a regex location that now shadows a prefix one (`location ~ ^/api` above `/api/`).
Caddy: the catch-all route moved above the `/api/*` one. Both move a whole upstream's
traffic; a harmless change passes, and `check` works on a Caddy target reached through
its admin API (transport `http`), as deploy does.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from lbctl.lab.webservers import admin_section, nginx_preamble
from tests.conftest import LbctlRunner, git, write
from tests.kinds.conftest import CADDY_SOURCE, NGINX_SOURCE, CaddyLab, NginxLab, make_store, nginx_target_toml


def send(port: int, path: str, n: int) -> None:
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        assert conn.getresponse().status == 200
        conn.close()


# -- nginx -------------------------------------------------------------------------------------


def nginx_routes(lab: NginxLab, extra_location: str = "", location_setting: str = "") -> str:
    ports = lab.backends.ports
    return f"""\
{nginx_preamble()}

    upstream web {{
        server 127.0.0.1:{ports["web1"]};
        server 127.0.0.1:{ports["web2"]};
        server 127.0.0.1:{ports["web3"]};
    }}
    upstream api {{
        server 127.0.0.1:{ports["web2"]};
    }}
    upstream legacy {{
        server 127.0.0.1:{ports["web1"]};
    }}
    server {{
        listen 127.0.0.1:{lab.fe_port};
        {extra_location}
        location /api/ {{
            proxy_pass http://api;
        }}
        location / {{
            proxy_pass http://web;
            {location_setting}
        }}
    }}
}}
"""


@pytest.fixture
def nginx_store(tmp_path: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    store = make_store(
        tmp_path / "store",
        lbctl,
        nginx_target_toml(nginx_lab),
        monkeypatch,
        source=NGINX_SOURCE,
        content=nginx_routes(nginx_lab),
    )
    deployed = lbctl("deploy", "edge", "--yes")
    assert deployed.code == 0, deployed.err
    return store


def test_nginx_regex_location_shadowing_a_prefix_is_refused(
    nginx_store: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    send(nginx_lab.fe_port, "/api/items", 10)
    send(nginx_lab.fe_port, "/", 10)
    bad = write(
        tmp_path / "bad.conf", nginx_routes(nginx_lab, extra_location="location ~ ^/api { proxy_pass http://legacy; }")
    )
    checked = lbctl("check", "edge", "--file", str(bad))
    assert checked.code == 3, checked.out + checked.err
    assert (
        "requests matching `server _ › location /api/` now go to upstream legacy (was upstream api): "
        "the regex `server _ › location ~ ^/api` is tried first and shadows it"
    ) in checked.out, checked.out
    assert "max_traffic_moved: 100% of api's requests now go to legacy" in checked.out
    assert "of nginx listen 127.0.0.1:" in checked.out and "requests move from upstream api (1 server)" in checked.out
    head, live, before = git(nginx_store, "rev-parse", "HEAD"), nginx_lab.live_text(), nginx_lab.proc_state()
    deployed = lbctl("deploy", "edge", "--file", str(bad), "--yes")
    assert deployed.code == 4 and "max_traffic_moved" in deployed.err, deployed.err
    assert git(nginx_store, "rev-parse", "HEAD") == head and nginx_lab.live_text() == live
    assert nginx_lab.proc_state() == before  # no reload


def test_nginx_harmless_change_passes(
    nginx_store: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    good = write(tmp_path / "good.conf", nginx_routes(nginx_lab, location_setting="proxy_read_timeout 5s;"))
    checked = lbctl("check", "edge", "--file", str(good))
    assert checked.code == 0, checked.out
    assert lbctl("deploy", "edge", "--file", str(good), "--yes").code == 0


# -- Caddy -------------------------------------------------------------------------------------


def caddy_routes(lab: CaddyLab, *, api_first: bool = True, extra_upstream: bool = False) -> str:
    ports = lab.backends.ports
    web = [{"dial": f"127.0.0.1:{ports[n]}"} for n in ("web1", "web2", "web3")]
    if extra_upstream:
        web.append({"dial": f"127.0.0.1:{ports['web1']}"})
    api_route: dict[str, Any] = {
        "match": [{"path": ["/api/*"]}],
        "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": f"127.0.0.1:{ports['web2']}"}]}],
    }
    web_route: dict[str, Any] = {"handle": [{"handler": "reverse_proxy", "upstreams": web}]}
    server = {
        "listen": [f"127.0.0.1:{lab.fe_port}"],
        "automatic_https": {"disable": True},
        "routes": [api_route, web_route] if api_first else [web_route, api_route],
    }
    config = {"admin": admin_section(lab.caddy.admin_port), "apps": {"http": {"servers": {"www": server}}}}
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


@pytest.fixture
def caddy_store(tmp_path: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Caddy target with the default safety thresholds, running the routes above."""
    toml = f"""\
[defaults]
verify_seconds = 0.5
check_interval = 0.25
retries = 2

[targets.edge]
kind = "caddy"
transport = "http"
api = "{caddy_lab.caddy.api}"
path = "/config/"
source = "{CADDY_SOURCE}"

[[targets.edge.checks]]
type = "http"
url = "http://127.0.0.1:{caddy_lab.fe_port}/"
probes = 2
"""
    store = make_store(
        tmp_path / "store", lbctl, toml, monkeypatch, source=CADDY_SOURCE, content=caddy_routes(caddy_lab)
    )
    deployed = lbctl("deploy", "edge", "--yes")
    assert deployed.code == 0, deployed.err
    return store


def test_caddy_route_order_is_refused(
    caddy_store: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    bad = write(tmp_path / "bad.json", caddy_routes(caddy_lab, api_first=False))
    checked = lbctl("check", "edge", "--file", str(bad))
    assert checked.code == 3, checked.out + checked.err
    assert "order swapped: requests matching both `path /api/*` and `(all)`" in checked.out, checked.out
    assert "validated with local caddy" in checked.out
    assert "max_traffic_moved" in checked.out and "up to 100% of server www's requests" in checked.out
    head, live, before = git(caddy_store, "rev-parse", "HEAD"), caddy_lab.live_text(), caddy_lab.proc_state()
    deployed = lbctl("deploy", "edge", "--file", str(bad), "--yes")
    assert deployed.code == 4 and "max_traffic_moved" in deployed.err, deployed.err
    assert git(caddy_store, "rev-parse", "HEAD") == head and caddy_lab.live_text() == live
    assert caddy_lab.proc_state() == before  # nothing was loaded


def test_caddy_check_over_the_admin_api(
    caddy_store: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    good = write(tmp_path / "good.json", caddy_routes(caddy_lab, extra_upstream=True))
    checked = lbctl("check", "edge", "--file", str(good))
    assert checked.code == 0, checked.out + checked.err
    assert "passes for edge (validated with local caddy)" in checked.out
    assert lbctl("check", "edge").code == 0  # the store's HEAD
    broken = write(tmp_path / "broken.json", caddy_routes(caddy_lab).replace('"reverse_proxy"', '"reverse_proxyy"'))
    refused = lbctl("check", "edge", "--file", str(broken))
    assert refused.code == 3 and "caddy rejected the candidate config" in refused.out, refused.out
    assert lbctl("deploy", "edge", "--file", str(good), "--yes").code == 0
