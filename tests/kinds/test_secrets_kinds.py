"""Secrets in nginx and Caddy configs stay masked through a real nginx and a real Caddy: deploy,
check, log, status, diff and the journal (the scenario of tests/integration/test_secrets.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given

from tests.conftest import LbctlRunner
from tests.integration.test_secrets import REAL, ROUNDS, secrets_stay_masked
from tests.kinds.conftest import (
    CADDY_SOURCE,
    NGINX_SOURCE,
    CaddyLab,
    NginxLab,
    caddy_target_toml,
    canonical,
    make_store,
    nginx_target_toml,
)
from tests.semantic.secret_configs import fill

# What this nginx (no headers-more module) accepts, in `location /`.
NGINX_SECRETS = """\
            proxy_set_header Authorization "Basic {s0} {s1}";
            proxy_set_header X-Api-Key {s2};
            add_header Set-Cookie "sid={s3}; Path=/" always;
            secure_link_secret {s4};
            fastcgi_param HTTP_AUTHORIZATION "Bearer {s5}";
            proxy_set_header X-Auth-Request-Token
                "Bearer {s6}";
"""


@pytest.fixture
def nginx_store(tmp_path: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    toml = nginx_target_toml(nginx_lab)
    return make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=NGINX_SOURCE, content=nginx_lab.live_text())


@pytest.fixture
def caddy_store(tmp_path: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    toml = caddy_target_toml(caddy_lab)
    return make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=CADDY_SOURCE, content=caddy_lab.live_text())


@REAL
@given(rounds=ROUNDS)
def test_nginx_secrets_stay_masked(
    nginx_store: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, tmp_path: Path, rounds: list[list[str]]
) -> None:
    def config(secrets: list[str], rejected: bool) -> str:
        lines = fill(NGINX_SECRETS, secrets)
        if rejected:  # a module this nginx does not have
            lines += f'            more_set_headers "X-Api-Key: {secrets[0]}7";\n'
        return nginx_lab.config().replace("        location / {\n", "        location / {\n" + lines, 1)

    secrets_stay_masked(lbctl, nginx_store, tmp_path, config, rounds, nginx_lab.live_text)


@REAL
@given(rounds=ROUNDS)
def test_caddy_secrets_stay_masked(
    caddy_store: Path, caddy_lab: CaddyLab, lbctl: LbctlRunner, tmp_path: Path, rounds: list[list[str]]
) -> None:
    def config(secrets: list[str], rejected: bool) -> str:
        s = fill("{s0} {s1} {s2} {s3}", secrets).split()
        data = json.loads(caddy_lab.config())
        route = data["apps"]["http"]["servers"]["www"]["routes"][0]
        proxy = route["handle"][0]
        proxy["headers"]["request"] = {"set": {"Authorization": [f"Bearer {s[0]}"], "X-Api-Key": [s[1]]}}
        route["handle"].insert(0, {"handler": "headers", "request": {"set": {"Cookie": [f"session={s[2]}"]}}})
        if rejected:  # a key Caddy cannot load
            pem = f"-----BEGIN PRIVATE KEY-----\n{s[3]}\n-----END PRIVATE KEY-----\n"
            cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
            data["apps"]["tls"] = {"certificates": {"load_pem": [{"certificate": cert, "key": pem}]}}
        return canonical(data)

    secrets_stay_masked(lbctl, caddy_store, tmp_path, config, rounds, caddy_lab.live_text)
