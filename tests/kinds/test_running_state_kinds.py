"""Running-state conformance and the file the LB reads, on a real nginx and a real Caddy."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

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


def status(lbctl: LbctlRunner) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = lbctl("status", "edge", "--json")
    assert result.out, result.err
    return result.code, json.loads(result.out)["targets"][0]


def test_nginx_workers_older_than_the_file_show_as_running_drift(
    tmp_path: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_store(
        tmp_path / "store",
        lbctl,
        nginx_target_toml(nginx_lab),
        monkeypatch,
        source=NGINX_SOURCE,
        content=nginx_lab.live_text(),
    )
    new = write(tmp_path / "new.conf", nginx_lab.config(weights={"web1": 3, "web2": 1, "web3": 1}))
    assert lbctl("deploy", "edge", "--file", str(new), "-m", "web1 heavier", "--yes").code == 0
    code, edge = status(lbctl)
    assert code == 0, edge["reasons"]
    assert edge["running"]["in_sync"] is True and "worker generation" in edge["running"]["detail"]
    assert edge["origin"]["matches"] is True and edge["origin"]["files"] == [str(nginx_lab.nginx.config)]

    # The file is rewritten with the same bytes but nginx is not reloaded: it runs what it loaded before.
    time.sleep(0.2)
    os.utime(nginx_lab.nginx.config)
    code, edge = status(lbctl)
    assert code == 1 and edge["drift"] == "none"
    assert len(edge["running"]["differences"]) == 1
    assert "no reload since" in edge["running"]["differences"][0]


def test_nginx_path_it_does_not_read_is_refused(
    tmp_path: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = nginx_lab.nginx.config.with_name("nginx.conf.new")
    wrong.write_text(nginx_lab.live_text())
    toml = nginx_target_toml(nginx_lab).replace(f'path = "{nginx_lab.nginx.config}"', f'path = "{wrong}"')
    make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=NGINX_SOURCE, content=nginx_lab.live_text())
    new = write(tmp_path / "new.conf", nginx_lab.config(weights={"web1": 3, "web2": 1, "web3": 1}))

    result = lbctl("deploy", "edge", "--file", str(new), "-m", "to the wrong file", "--yes")

    assert result.code == 2 and f"reads {nginx_lab.nginx.config}" in result.err
    assert wrong.read_text() != new.read_text()
    code, edge = status(lbctl)
    assert code == 2 and edge["verdict"] == "misconfigured"


def test_caddy_config_changed_through_its_api_shows_as_running_drift(
    tmp_path: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_store(
        tmp_path / "store",
        lbctl,
        caddy_target_toml(caddy_lab),
        monkeypatch,
        source=CADDY_SOURCE,
        content=caddy_lab.config(),
    )
    new = write(tmp_path / "new.json", caddy_lab.config(weights={"web1": 2, "web2": 1, "web3": 1}))
    assert lbctl("deploy", "edge", "--file", str(new), "-m", "web1 twice", "--yes").code == 0
    code, edge = status(lbctl)
    assert code == 0, edge["reasons"]
    assert edge["running"]["in_sync"] is True and edge["origin"]["known"] is False

    caddy_lab.hand_edit("web3", 0)  # someone loads another config through the admin API
    code, edge = status(lbctl)
    assert code == 1 and edge["verdict"] == "degraded"
    assert edge["running"]["differences"], edge["running"]
    assert any("deployed → running" in d for d in edge["running"]["differences"])
