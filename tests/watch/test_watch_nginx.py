"""`lbctl watch --once` on a real nginx: per-server traffic counted from its access log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbctl.lab.processes import Load
from tests.conftest import LbctlRunner
from tests.kinds.conftest import NGINX_SOURCE, NginxLab, make_store, nginx_lab, nginx_target_toml
from tests.watch.conftest import watch_toml

__all__ = ["nginx_lab"]  # the fixture


def test_nginx_spread_is_judged_from_its_access_log(
    tmp_path: Path, nginx_lab: NginxLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = nginx_target_toml(nginx_lab) + watch_toml(interval="1s", min_requests=20)
    make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=NGINX_SOURCE, content=nginx_lab.live_text())

    quiet = lbctl("watch", "edge", "--once", "--window", "1s", "--json")
    assert quiet.code == 0, quiet.out + quiet.err
    assert json.loads(quiet.out)["targets"][0]["verdict"] == "inconclusive"

    load = Load(f"http://127.0.0.1:{nginx_lab.fe_port}/", rate=40, concurrency=2, max_requests=400, max_seconds=30)
    load.start()
    try:
        result = lbctl("watch", "edge", "--once", "--window", "2s", "--json")
    finally:
        load.stop()
    assert result.code == 0, result.out + result.err
    data = json.loads(result.out)
    web = next(b for b in data["targets"][0]["backends"] if b["name"] == "web")
    assert web["verdict"] == "ok" and web["requests"] >= 20
    assert sorted(s["name"] for s in web["servers"]) == sorted(
        nginx_lab.server_label(n) for n in ("web1", "web2", "web3")
    )
    for server in web["servers"]:
        assert server["intended"] == 0.3333
        assert abs(server["actual"] - 1 / 3) < 0.1
