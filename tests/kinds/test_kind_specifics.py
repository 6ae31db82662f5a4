"""What only nginx or only Caddy does: nginx's access-log balance check, Caddyfile sources,
Caddy's admin endpoint kept, its ETag guard, and its own refusal of a config at load time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbctl.config import target_from
from lbctl.drivers.caddy import CaddyDriver
from lbctl.errors import Refused
from lbctl.kinds.base import ReloadFailed
from lbctl.kinds.caddy import CaddyKind
from lbctl.lab.processes import Load
from lbctl.lab.webservers import LOG_FORMAT
from lbctl.store.bundle import Bundle
from lbctl.transports.http import HttpTransport
from tests.conftest import LbctlRunner, write
from tests.kinds.conftest import (
    CADDY_SOURCE,
    NGINX_SOURCE,
    CaddyLab,
    NginxLab,
    caddy_target_toml,
    make_store,
    nginx_target_toml,
)

BALANCE = """
[[targets.edge.checks]]
type = "balance"
max_share = 0.6
min_requests = 30
"""


@pytest.fixture
def nginx_store(tmp_path: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    toml = nginx_target_toml(nginx_lab, verify_seconds=1.0) + BALANCE
    return make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=NGINX_SOURCE, content=nginx_lab.live_text())


def test_nginx_balance_counts_the_access_log_and_catches_all_on_one(
    nginx_store: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    load = Load(f"http://127.0.0.1:{nginx_lab.fe_port}/", rate=50, max_seconds=20).start()
    try:
        fine = write(tmp_path / "fine.conf", nginx_lab.config(weights={"web1": 2, "web2": 2, "web3": 2}))
        ok = lbctl("deploy", "edge", "--file", str(fine), "--yes", "--json")
        assert ok.code == 0, ok.out + ok.err
        balance = next(c for c in json.loads(ok.out)["checks"] if c["name"] == "balance")
        shares = balance["figures"]["backends"]["web"]["servers"]
        assert all(0.2 < s["share"] < 0.5 for s in shares.values()), shares

        # The outage's shape on nginx: two of three servers `down`, traffic all on one.
        bad = write(tmp_path / "bad.conf", nginx_lab.config(weights={"web1": 1, "web2": 0, "web3": 0}))
        result = lbctl("deploy", "edge", "--file", str(bad), "--yes", "--force")
        assert result.code == 1, result.out + result.err
        assert "takes 100%" in result.out + result.err
        assert nginx_lab.live_text() == fine.read_text()
    finally:
        load.stop()


def test_nginx_balance_without_upstream_addr_in_the_log_is_refused_before_the_swap(
    tmp_path: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = nginx_lab.config().replace(LOG_FORMAT, "log_format lbctl '$remote_addr $status';")
    nginx_lab.nginx.config.write_text(plain)
    toml = nginx_target_toml(nginx_lab) + BALANCE
    make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=NGINX_SOURCE, content=plain)
    new = write(tmp_path / "new.conf", plain.replace("weight=1;  # web1", "weight=2;  # web1"))

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")

    assert result.code == 2, result.err
    assert "$upstream_addr" in result.err and "log_format lbctl" in result.err
    assert nginx_lab.live_text() == plain


@pytest.fixture
def caddy_store(tmp_path: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    toml = caddy_target_toml(caddy_lab, verify_seconds=0.5)
    return make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=CADDY_SOURCE, content=caddy_lab.live_text())


def test_caddyfile_source_is_adapted_and_deployed(
    tmp_path: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = caddy_target_toml(caddy_lab, verify_seconds=0.5).replace(CADDY_SOURCE, "configs/edge/Caddyfile")
    make_store(tmp_path / "store", lbctl, toml, monkeypatch, source="configs/edge/Caddyfile", content="# empty\n")
    ports = caddy_lab.backends.ports
    caddyfile = write(
        tmp_path / "Caddyfile",
        f"{{\n\tadmin 127.0.0.1:{caddy_lab.caddy.admin_port}\n\tauto_https off\n}}\n\n"
        f"http://127.0.0.1:{caddy_lab.fe_port} {{\n\treverse_proxy 127.0.0.1:{ports['web1']} "
        f"127.0.0.1:{ports['web2']}\n}}\n",
    )

    result = lbctl("deploy", "edge", "--file", str(caddyfile), "--yes")

    assert result.code == 0, result.out + result.err
    running = caddy_lab.caddy.running()
    upstreams = json.dumps(running["apps"]["http"])
    assert f"127.0.0.1:{ports['web1']}" in upstreams and f"127.0.0.1:{ports['web3']}" not in upstreams
    assert lbctl("diff", "edge", "--live", "--exit-code").code == 0  # the Caddyfile is what runs


def test_caddy_config_that_would_move_the_admin_api_is_refused(
    caddy_store: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    config = json.loads(caddy_lab.config())
    del config["admin"]
    new = write(tmp_path / "no-admin.json", json.dumps(config))
    before = caddy_lab.live_text()

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")

    assert result.code == 3, result.err
    assert "admin API" in result.err and "nothing was changed" in result.err
    assert caddy_lab.live_text() == before


def test_caddy_refusing_a_config_at_load_time_is_a_failed_reload_and_rolled_back(
    caddy_store: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    """`caddy validate` passes a listener Caddy cannot bind; the load fails (400), lbctl restores."""
    before = caddy_lab.live_text()
    config = json.loads(caddy_lab.config())
    config["apps"]["http"]["servers"]["www"]["listen"].append("192.0.2.1:8080")  # not an address of ours
    new = write(tmp_path / "unbindable.json", json.dumps(config))

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")

    assert result.code == 1, result.out + result.err
    assert "Caddy refused the config" in result.out + result.err
    assert caddy_lab.live_text() == before


def test_caddy_change_made_by_someone_else_meanwhile_is_not_overwritten(caddy_lab: CaddyLab) -> None:
    target = target_from(
        {"name": "edge", "kind": "caddy", "transport": "http", "api": caddy_lab.caddy.api, "source": "c.json"}
    )
    theirs = json.loads(caddy_lab.config(weights={"web1": 3, "web2": 1, "web3": 1}))
    with CaddyDriver(target, CaddyKind(target), HttpTransport(target)) as driver:
        driver.stage(Bundle(caddy_lab.config(weights={"web1": 1, "web2": 2, "web3": 1}).encode()))
        driver.swap()  # lbctl has read the running config and its ETag
        caddy_lab.caddy.load(theirs)  # ...and someone changes it meanwhile
        with pytest.raises(Refused, match="If-Match"):
            driver.reload(driver.snapshot())
    assert caddy_lab.caddy.running() == theirs


def test_reload_failed_is_raised_for_a_target_on_the_wrong_transport() -> None:
    target = target_from(
        {"name": "edge", "kind": "caddy", "transport": "local", "path": "/tmp/x.json", "source": "c.json"}
    )
    from lbctl.errors import ConfigError
    from lbctl.transports.local import LocalTransport

    with pytest.raises(ConfigError, match='transport = "http"'):
        CaddyKind(target).reload(LocalTransport(target))
    assert ReloadFailed  # (imported for the reader: load-time refusals are ReloadFailed)
