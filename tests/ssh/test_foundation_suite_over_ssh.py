"""The foundation's deploy/rollback suite (tests/integration/test_lifecycle.py), run over ssh.

One contract suite for every transport: the same test functions, with the `store` fixture
overridden so that target `edge` reaches the same HAProxy through the private sshd.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Lab, LbctlRunner, git, target_toml
from tests.integration import test_lifecycle as suite
from tests.integration.test_lifecycle import *  # noqa: F403 - the suite's tests, collected here again
from tests.ssh.conftest import Sshd


def ssh_target_toml(lab: Lab, sshd: Sshd, **kwargs: float | str) -> str:
    return target_toml(lab, **kwargs).replace(  # type: ignore[arg-type]
        'transport = "local"',
        f'transport = "ssh"\nhost = "127.0.0.1"\nport = {sshd.port}\n'
        f'identity_file = "{sshd.client_key}"\nknown_hosts = "{sshd.known_hosts}"',
    )


@pytest.fixture(autouse=True)
def _suite_writes_ssh_targets(monkeypatch: pytest.MonkeyPatch, sshd: Sshd) -> None:
    """Tests that rewrite lbctl.toml mid-way (lock, SIGINT) keep the target on ssh."""
    monkeypatch.setattr(suite, "target_toml", lambda lab, **kwargs: ssh_target_toml(lab, sshd, **kwargs))


@pytest.fixture
def store(tmp_path: Path, lab: Lab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch, sshd: Sshd) -> Path:
    root = tmp_path / "store"
    assert lbctl("init", str(root)).code == 0
    (root / "lbctl.toml").write_text(ssh_target_toml(lab, sshd))
    git(root, "add", "lbctl.toml")
    git(root, "commit", "-q", "-m", "Add target edge over ssh")
    monkeypatch.chdir(root)
    return root


def test_the_store_really_targets_ssh(store: Path, lab: Lab) -> None:
    assert 'transport = "ssh"' in (store / "lbctl.toml").read_text()
    assert 'transport = "ssh"' in suite.target_toml(lab, verify_seconds=6)
