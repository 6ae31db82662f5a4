"""The contract suite on a real Caddy, through its admin API (transport `http`).

Kind-neutral tests run unchanged, HAProxy-bound ones are replaced by their rewrites
(tests/kinds/suite.py); `show_proc_workers` becomes Caddy's own record (its pid and the
loads its log reports). Caddy-only behaviour (Caddyfile sources, If-Match, the admin
endpoint kept, balance refused) is tested at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LbctlRunner
from tests.integration import test_lifecycle as suite
from tests.integration.test_lifecycle import *  # noqa: F403 - the suite's tests, collected here again
from tests.kinds.conftest import CADDY_SOURCE, CaddyLab, caddy_target_toml, make_store
from tests.kinds.suite import *  # noqa: F403 - kind-neutral rewrites of the HAProxy-bound tests


@pytest.fixture
def lab(caddy_lab: CaddyLab) -> CaddyLab:
    return caddy_lab


@pytest.fixture(autouse=True)
def _suite_speaks_caddy(monkeypatch: pytest.MonkeyPatch, lab: CaddyLab) -> None:
    monkeypatch.setattr(suite, "target_toml", caddy_target_toml)
    monkeypatch.setattr(suite, "show_proc_workers", lambda _lb: lab.proc_state())


@pytest.fixture
def store(tmp_path: Path, lab: CaddyLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    toml = caddy_target_toml(lab)
    return make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=CADDY_SOURCE, content=lab.live_text())
