"""nginx and Caddy: their own words for refused configs and reloads, reloads confirmed, the API checked first."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from lbctl import retry
from lbctl.lab.processes import free_port
from tests.conftest import LbctlRunner, git, write
from tests.kinds.conftest import (
    CADDY_SOURCE,
    NGINX_SOURCE,
    CaddyLab,
    NginxLab,
    caddy_target_toml,
    make_store,
    nginx_target_toml,
)


@pytest.fixture
def nginx_store(tmp_path: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    toml = nginx_target_toml(nginx_lab)
    return make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=NGINX_SOURCE, content=nginx_lab.live_text())


@pytest.fixture
def caddy_store(tmp_path: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    toml = caddy_target_toml(caddy_lab)
    return make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=CADDY_SOURCE, content=caddy_lab.live_text())


def _typo(lab: NginxLab) -> tuple[str, int]:
    text = lab.broken_config()
    return text, next(i for i, line in enumerate(text.splitlines(), 1) if "proxy_passs_typo" in line)


def _add_to_target(store: Path, lines: str) -> None:
    toml = store / "lbctl.toml"
    toml.write_text(toml.read_text().replace("[targets.edge]\n", "[targets.edge]\n" + lines, 1))
    git(store, "commit", "-qam", "edge: " + lines.strip())


def test_nginx_validation_failure_names_the_store_file_and_line(
    nginx_store: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    text, line = _typo(nginx_lab)
    bad = write(tmp_path / "bad.conf", text)

    result = lbctl("deploy", "edge", "--file", str(bad), "--yes")

    assert result.code == 3, result.out + result.err
    assert f'unknown directive "proxy_passs_typo" in {NGINX_SOURCE}:{line}' in result.err
    report = json.loads(lbctl("check", "edge", "--file", str(bad), "--json").out)
    assert f"{NGINX_SOURCE}:{line}" in report["validation"] and not report["validation_ok"]


def test_nginx_reload_refused_shows_nginxs_words(
    nginx_store: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    _add_to_target(nginx_store, 'validate = "true"\n')
    text, line = _typo(nginx_lab)
    bad = write(tmp_path / "bad.conf", text)
    live = nginx_lab.live_text()

    result = lbctl("deploy", "edge", "--file", str(bad), "--yes")

    assert result.code == 1, result.out + result.err
    assert f"{NGINX_SOURCE}:{line}" in result.out and "proxy_passs_typo" in result.out
    assert nginx_lab.live_text() == live


def test_nginx_noop_reload_is_caught_and_undone(
    nginx_store: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retry, "POLL", replace(retry.POLL, deadline=2.0))
    _add_to_target(nginx_store, 'reload = "true"\n')
    workers, live = nginx_lab.nginx.workers(), nginx_lab.live_text()
    new = write(tmp_path / "new.conf", nginx_lab.config(weights={"web1": 3, "web2": 1, "web3": 1}))

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")

    assert result.code == 1, result.out + result.err
    assert "nginx did not reload" in result.out and "(healthy)" in result.out
    assert nginx_lab.live_text() == live and nginx_lab.nginx.workers() == workers


def test_nginx_shell_reload_is_confirmed_by_a_new_generation(
    nginx_store: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    _add_to_target(nginx_store, 'reload = "kill -HUP $(cat {prefix}/logs/nginx.pid) && true"\n')
    workers = nginx_lab.nginx.workers()
    new = write(tmp_path / "new.conf", nginx_lab.config(weights={"web1": 2, "web2": 1, "web3": 1}))

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")

    assert result.code == 0, result.out + result.err
    assert "new worker generation" in result.err and not set(nginx_lab.nginx.workers()) & set(workers)


def test_caddy_refusal_shows_caddys_words(
    caddy_store: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    bad = write(tmp_path / "bad.json", caddy_lab.broken_config())

    result = lbctl("deploy", "edge", "--file", str(bad), "--yes")

    assert result.code == 3, result.out + result.err
    assert "reverse_proxyy" in result.err  # Caddy's message names the module it does not know
    error = json.loads(lbctl("deploy", "edge", "--file", str(bad), "--yes", "--json").out)
    assert error["exit_code"] == 3 and "reverse_proxyy" in error["error"]["details"]


def test_an_api_that_is_not_caddys_is_a_config_error(
    caddy_store: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    toml = caddy_store / "lbctl.toml"
    toml.write_text(toml.read_text().replace(caddy_lab.caddy.api, f"http://127.0.0.1:{caddy_lab.fe_port}"))
    git(caddy_store, "commit", "-qam", "api pointed at the frontend")
    new = write(tmp_path / "new.json", caddy_lab.config(weights={"web1": 2, "web2": 1, "web3": 1}))
    live = caddy_lab.live_text()

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")
    assert result.code == 2, result.out + result.err
    assert "targets.edge.api" in result.err and "is not Caddy's admin API" in result.err
    status = lbctl("status", "edge")
    assert status.code == 2 and "targets.edge.api" in status.out

    closed = free_port()
    toml.write_text(toml.read_text().replace(f"http://127.0.0.1:{caddy_lab.fe_port}", f"http://127.0.0.1:{closed}"))
    git(caddy_store, "commit", "-qam", "api pointed at nothing")
    result = lbctl("deploy", "edge", "--file", str(new), "--yes")
    assert result.code == 2, result.out + result.err
    assert f"targets.edge.api: nothing answers at http://127.0.0.1:{closed}" in result.err
    assert caddy_lab.live_text() == live
