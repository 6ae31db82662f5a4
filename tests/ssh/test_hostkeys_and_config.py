"""Host keys, authentication and ~/.ssh/config, as OpenSSH would treat them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from lbctl.config import Target, target_from
from lbctl.errors import AuthenticationFailed, ExitCode, HostKeyChanged, HostKeyUnknown
from lbctl.transports.ssh import SshTransport
from lbctl.transports.ssh_config import resolve
from tests.ssh.conftest import Lab, Sshd, start_sshd

OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _target(sshd: Sshd, **overrides: object) -> Target:
    values: dict[str, object] = {
        "name": "edge",
        "kind": "haproxy",
        "transport": "ssh",
        "source": "configs/edge/haproxy.cfg",
        "path": "/tmp/lbctl-ssh-test/haproxy.cfg",
        "host": "127.0.0.1",
        "port": sshd.port,
        "identity_file": str(sshd.client_key),
        "known_hosts": str(sshd.known_hosts),
        "master_socket": "/tmp/none.sock",
        "retries": 1,
        **overrides,
    }
    return target_from(values)


def _retarget(lab: Lab, old: str, new: str) -> None:
    toml = lab.store / "lbctl.toml"
    toml.write_text(toml.read_text().replace(old, new))
    subprocess.run(["git", "-C", str(lab.store), "commit", "-qam", "retarget"], check=True)


def test_unknown_host_key_is_refused_and_the_lb_is_untouched(ssh_lab: Lab, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    _retarget(ssh_lab, str(ssh_lab.sshd.known_hosts), str(empty))
    before = ssh_lab.live()
    new = tmp_path / "new.cfg"
    new.write_text(ssh_lab.config(weight=10))
    start = time.monotonic()

    assert ssh_lab.lbctl("deploy", "edge", "--file", str(new), "--yes") == ExitCode.UNREACHABLE

    assert time.monotonic() - start < 3  # refused at once, not retried
    assert ssh_lab.live() == before
    assert empty.read_text() == ""


def test_unknown_host_key_message_names_the_fingerprint_and_the_opt_in(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "kh"
    empty.write_text("")
    with pytest.raises(HostKeyUnknown) as caught, SshTransport(_target(sshd, known_hosts=str(empty))):
        pass
    assert "SHA256:" in str(caught.value) and "LBCTL_SSH_TRUST_NEW=1" in str(caught.value)


def test_trust_on_first_use_is_opt_in_and_records_the_key(
    sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = tmp_path / "sub" / "known_hosts"
    monkeypatch.setenv("LBCTL_SSH_TRUST_NEW", "1")
    with SshTransport(_target(sshd, known_hosts=str(known))) as t:
        assert t.run(["true"]).code == 0
    assert known.read_text() == sshd.known_hosts_line()
    monkeypatch.delenv("LBCTL_SSH_TRUST_NEW")
    with SshTransport(_target(sshd, known_hosts=str(known))) as t:  # now known: no opt-in needed
        assert t.run(["true"]).code == 0


def test_changed_host_key_is_refused_with_exit_2(sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = tmp_path / "kh"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {OTHER_KEY}\n")
    monkeypatch.setenv("LBCTL_SSH_TRUST_NEW", "1")  # trust-on-first-use never overrides a changed key
    with pytest.raises(HostKeyChanged) as caught, SshTransport(_target(sshd, known_hosts=str(wrong))):
        pass
    assert caught.value.exit_code == ExitCode.USAGE
    assert "CHANGED" in str(caught.value) and "ssh-keygen -R" in str(caught.value)


def test_a_key_the_host_refuses_fails_at_once(sshd: Sshd, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    start = time.monotonic()
    with pytest.raises(AuthenticationFailed), SshTransport(_target(sshd, identity_file=str(stranger), retries=3)):
        pass
    assert time.monotonic() - start < 2


def test_ssh_config_alias_hostname_user_port_and_identity(sshd: Sshd, isolated_home: Path) -> None:
    (isolated_home / ".ssh" / "config").write_text(f"""\
Host lb-alias
    HostName 127.0.0.1
    Port {sshd.port}
    User root
    IdentityFile {sshd.client_key}
    UserKnownHostsFile {sshd.known_hosts}
""")
    target = _target(sshd, host="lb-alias", port=None, identity_file=None, known_hosts=None)
    with SshTransport(target) as t:
        assert t.where == f"root@127.0.0.1:{sshd.port}"
        assert t.run(["printf", "%s", "hi"]).stdout == "hi"


def test_explicit_target_keys_win_over_ssh_config(isolated_home: Path) -> None:
    (isolated_home / ".ssh" / "config").write_text("""\
Host edge1
    HostName 10.0.0.5
    User deploy
    Port 2222
    IdentityFile ~/.ssh/edge
    ProxyJump jumper@bastion:2200,inner
Host inner
    HostName 10.9.0.1
Host bastion
    ProxyJump gate
""")
    route = resolve("edge1", user="ops")
    assert (route.target.hostname, route.target.port, route.target.user) == ("10.0.0.5", 2222, "ops")
    assert route.target.identity_files == (str(isolated_home / ".ssh" / "edge"),)
    assert route.target.known_hosts == str(isolated_home / ".ssh" / "known_hosts")
    assert [(j.hostname, j.port, j.user.split("@")[0]) for j in route.jumps][:2] == [
        ("gate", 22, route.jumps[0].user),
        ("bastion", 2200, "jumper"),
    ]
    assert route.jumps[2].hostname == "10.9.0.1"
    assert resolve("edge1", proxy_jump="none").jumps == ()


def test_proxyjump_through_a_second_sshd(sshd: Sshd, tmp_path: Path, isolated_home: Path) -> None:
    jump = start_sshd(tmp_path / "jump", client_key=sshd.client_key)
    try:
        known = tmp_path / "known_hosts"
        known.write_text(sshd.known_hosts_line() + jump.known_hosts_line())
        (isolated_home / ".ssh" / "config").write_text(f"""\
Host bastion
    HostName 127.0.0.1
    Port {jump.port}
    IdentityFile {sshd.client_key}
Host edge-lb
    HostName 127.0.0.1
    Port {sshd.port}
    IdentityFile {sshd.client_key}
    ProxyJump bastion
""")
        target = _target(sshd, host="edge-lb", port=None, identity_file=None, known_hosts=str(known))
        with SshTransport(target) as t:
            assert "via root@127.0.0.1:" in t.where
            assert t.run(["printf", "%s", "through"]).stdout == "through"
            assert jump.sessions(), "the connection should pass through the jump sshd"
    finally:
        jump.stop()
