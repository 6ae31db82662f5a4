"""The contract suite on a real nginx, reached locally.

The suite's tests run unchanged where they are kind-neutral; those that read HAProxy's
text are replaced by their kind-neutral rewrites (tests/kinds/suite.py). `show_proc_workers`
asks nginx instead of HAProxy's master CLI: master pid, reloads and failed reloads from
nginx's error log, and the current worker generation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LbctlRunner
from tests.integration import test_lifecycle as suite
from tests.integration.test_lifecycle import *  # noqa: F403 - the suite's tests, collected here again
from tests.kinds.conftest import NGINX_SOURCE, NginxLab, make_store, nginx_target_toml
from tests.kinds.suite import *  # noqa: F403 - kind-neutral rewrites of the HAProxy-bound tests


@pytest.fixture
def lab(nginx_lab: NginxLab) -> NginxLab:
    return nginx_lab


@pytest.fixture(autouse=True)
def _suite_speaks_nginx(monkeypatch: pytest.MonkeyPatch, lab: NginxLab) -> None:
    monkeypatch.setattr(suite, "target_toml", nginx_target_toml)
    monkeypatch.setattr(suite, "show_proc_workers", lambda _lb: lab.proc_state())


@pytest.fixture
def store(tmp_path: Path, lab: NginxLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    toml = nginx_target_toml(lab)
    return make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=NGINX_SOURCE, content=lab.live_text())
