"""The contract suite on a real nginx reached over ssh (the private sshd of tests/ssh).

Same tests as tests/kinds/test_nginx_local.py; only the target's transport differs, so
`nginx -t`, the swap, `nginx -s reload`, the pid file, `ps` and the access log are all
reached through paramiko.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LbctlRunner
from tests.integration import test_lifecycle as suite
from tests.integration.test_lifecycle import *  # noqa: F403 - the suite's tests, collected here again
from tests.kinds.conftest import NGINX_SOURCE, NginxLab, make_store, nginx_target_toml
from tests.kinds.suite import *  # noqa: F403 - kind-neutral rewrites of the HAProxy-bound tests
from tests.ssh.conftest import Sshd


def ssh_toml(lab: NginxLab, sshd: Sshd, **kwargs: float | str) -> str:
    return nginx_target_toml(lab, **kwargs).replace(  # type: ignore[arg-type]
        'transport = "local"',
        f'transport = "ssh"\nhost = "127.0.0.1"\nport = {sshd.port}\n'
        f'identity_file = "{sshd.client_key}"\nknown_hosts = "{sshd.known_hosts}"',
    )


@pytest.fixture
def lab(nginx_lab: NginxLab) -> NginxLab:
    return nginx_lab


@pytest.fixture(autouse=True)
def _suite_speaks_nginx_over_ssh(monkeypatch: pytest.MonkeyPatch, lab: NginxLab, sshd: Sshd) -> None:
    monkeypatch.setattr(suite, "target_toml", lambda lab, **kwargs: ssh_toml(lab, sshd, **kwargs))
    monkeypatch.setattr(suite, "show_proc_workers", lambda _lb: lab.proc_state())


@pytest.fixture
def store(tmp_path: Path, lab: NginxLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch, sshd: Sshd) -> Path:
    toml = ssh_toml(lab, sshd)
    return make_store(tmp_path / "store", lbctl, toml, monkeypatch, source=NGINX_SOURCE, content=lab.live_text())


def test_the_store_really_targets_ssh(store: Path, lab: NginxLab) -> None:
    assert 'transport = "ssh"' in (store / "lbctl.toml").read_text()
    assert 'transport = "ssh"' in suite.target_toml(lab, verify_seconds=6)
