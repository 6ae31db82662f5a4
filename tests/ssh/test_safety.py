"""Hostile values, cut connections and the LB-side lock, over a real sshd."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbctl.errors import Locked, TransientError, Unreachable
from lbctl.lab.netproxy import Relay
from lbctl.lock import holder_info
from lbctl.transports.ssh import SshTransport
from tests.ssh.conftest import Lab, Sshd
from tests.ssh.test_hostkeys_and_config import _retarget, _target

HOSTILE = "a b'c\"d;touch CANARY|touch CANARY$(touch CANARY)`touch CANARY`&&x\nnl$HOME*"


def test_hostile_paths_and_arguments_run_nothing(sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # a CANARY created by a broken quote would land here (or in the remote cwd)
    lb_dir = tmp_path / HOSTILE
    lb_dir.mkdir()
    path = str(lb_dir / f"cfg {HOSTILE}")
    Path(path).write_text("old\n")
    keep = path + ".lbctl-prev"
    with SshTransport(_target(sshd, path=path)) as t:
        assert t.run(["printf", "%s", HOSTILE]).stdout == HOSTILE
        staged = t.write_staged(path, b"new\n")
        assert Path(staged).read_bytes() == b"new\n"
        with t.lock(path + ".lock", json.dumps({"holder": HOSTILE})):
            t.swap(staged, path, keep)
        assert t.read_file(path) == b"new\n" and Path(keep).read_text() == "old\n"
        t.restore(keep, path)
        assert Path(path).read_text() == "old\n"
        t.remove(keep)
        assert t.read_file(keep) is None
        with pytest.raises(TransientError):  # socat ran, found no socket; the command is only data on its stdin
            t.unix_request("/nonexistent/sock", "show proc; touch CANARY $(touch CANARY)")
    found = [p for p in (workdir, tmp_path, lb_dir, Path.home(), Path("/root")) if (p / "CANARY").exists()]
    assert found == []
    assert os.listdir(lb_dir) == [f"cfg {HOSTILE}"]


def test_hostile_message_and_ticket_through_the_cli(
    ssh_lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    new = tmp_path / "new.cfg"
    new.write_text(ssh_lab.config(weight=40))
    assert ssh_lab.lbctl("deploy", "edge", "--file", str(new), "-m", HOSTILE, "--ticket", HOSTILE, "--yes") == 0
    assert ssh_lab.live() == new.read_text()
    assert not list(tmp_path.rglob("CANARY")) and not (Path("/root") / "CANARY").exists()


def test_socket_paths_socat_would_parse_are_refused(sshd: Sshd) -> None:
    from lbctl.errors import ConfigError

    with SshTransport(_target(sshd)) as t, pytest.raises(ConfigError):
        t.unix_request("/run/x.sock,unlink-early", "show proc")


@contextlib.contextmanager
def cutting_proxy(sshd: Sshd, cut_after: int) -> Iterator[Relay]:
    """The lab's relay to sshd, cutting its first connection after `cut_after` client bytes."""
    proxy = Relay(sshd.port, cut_after=cut_after, cuts=1).start()
    with sshd.known_hosts.open("a") as f:
        f.write(sshd.known_hosts_line(proxy.port))
    try:
        yield proxy
    finally:
        proxy.close()


def test_connection_cut_mid_upload_leaves_the_old_config_and_a_retry_completes(ssh_lab: Lab, tmp_path: Path) -> None:
    new = tmp_path / "big.cfg"
    new.write_text(ssh_lab.config(weight=30, pad=20000))  # ~1.4 MB: the cut lands inside the upload
    with cutting_proxy(ssh_lab.sshd, cut_after=600_000) as proxy:
        _retarget(ssh_lab, f"port = {ssh_lab.sshd.port}", f"port = {proxy.port}")
        seen: list[str] = []
        lb_dir = ssh_lab.haproxy.config.parent
        original = SshTransport.write_staged

        def watching(self: SshTransport, path: str, data: bytes) -> str:
            try:
                return original(self, path, data)
            finally:
                seen.append(Path(path).read_text()[:200])  # what was live once the upload ended

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(SshTransport, "write_staged", watching)
            assert ssh_lab.lbctl("deploy", "edge", "--file", str(new), "--yes") == 0
        assert proxy.cut == 1
    assert "weight 30" not in seen[0]  # the LB ran the old config while the upload was cut and retried
    assert ssh_lab.live() == new.read_text()
    assert not [p for p in lb_dir.iterdir() if "lbctl-stage" in p.name]


def test_sshd_child_killed_between_steps_reconnects_and_swap_is_idempotent(sshd: Sshd, tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text("old\n")
    keep = f"{path}.lbctl-prev"
    with SshTransport(_target(sshd, path=str(path), retries=3)) as t:
        staged = t.write_staged(str(path), b"new\n")
        assert sshd.cut_connections() >= 1
        t.swap(staged, str(path), keep)  # reconnects
        t.swap(staged, str(path), keep)  # as if the first answer had been lost: must not touch keep
    assert path.read_text() == "new\n"
    assert Path(keep).read_text() == "old\n"


def test_restore_is_idempotent(sshd: Sshd, tmp_path: Path) -> None:
    path = tmp_path / "haproxy.cfg"
    path.write_text("old\n")
    keep = f"{path}.lbctl-prev"
    with SshTransport(_target(sshd, path=str(path))) as t:
        t.swap(t.write_staged(str(path), b"new\n"), str(path), keep)
        t.restore(keep, str(path))
        t.restore(keep, str(path))  # as if the first answer had been lost
    assert path.read_text() == "old\n"
    assert not [p for p in tmp_path.iterdir() if "lbctl-restore" in p.name]


def test_lb_side_lock_names_its_holder_and_how_to_break_it(sshd: Sshd, tmp_path: Path) -> None:
    name = str(tmp_path / ".haproxy.cfg.lbctl.lock")
    with SshTransport(_target(sshd)) as first, SshTransport(_target(sshd)) as second:
        with first.lock(name, holder_info("deploy", "edge")), pytest.raises(Locked) as caught:
            second.lock(name, holder_info("rollback", "edge")).__enter__()
        text = str(caught.value)
        assert "deploy of edge by" in text and "`lbctl unlock edge`" in text and "ssh " not in text
        assert re.search(r"taken [0-5] s ago", text), text  # its age, seconds at most on a busy machine
        with second.lock(name, holder_info("rollback", "edge")):  # released by the first: free again
            pass


def test_stale_lb_lock_is_reported_as_stale(sshd: Sshd, tmp_path: Path) -> None:
    name = str(tmp_path / ".haproxy.cfg.lbctl.lock")
    lock_dir = Path(name + ".d")
    lock_dir.mkdir()
    old = json.loads(holder_info("deploy", "edge"))
    old["holder"] = "deploy@another-machine"  # its process cannot be checked from here: not taken over
    (lock_dir / "info").write_text(json.dumps(old) + "\n")
    hour_ago = time.time() - 3600
    os.utime(lock_dir, (hour_ago, hour_ago))
    with SshTransport(_target(sshd)) as t, pytest.raises(Locked) as caught:
        t.lock(name, holder_info("deploy", "edge")).__enter__()
    # The host's clock in whole seconds: a second may tick between the test's utime and lbctl's reading.
    assert "looks stale" in str(caught.value) and re.search(r"taken 360[01] s ago", str(caught.value))
    assert "`lbctl unlock edge`" in str(caught.value)


def test_lb_lock_of_a_dead_lbctl_on_this_machine_is_taken_over(sshd: Sshd, tmp_path: Path) -> None:
    name = str(tmp_path / ".haproxy.cfg.lbctl.lock")
    lock_dir = Path(name + ".d")
    lock_dir.mkdir()
    dead = json.loads(holder_info("deploy", "edge"))
    dead["pid"] = 2**22 + 12345  # no such process on this host
    (lock_dir / "info").write_text(json.dumps(dead) + "\n")
    mine = holder_info("rollback", "edge")
    with SshTransport(_target(sshd)) as t, t.lock(name, mine):
        assert (lock_dir / "info").read_text().strip() == mine
        assert t.took_over is not None and str(dead["pid"]) in t.took_over
    assert not lock_dir.exists()


def test_cli_exits_5_when_the_lb_is_locked_from_elsewhere(ssh_lab: Lab, tmp_path: Path) -> None:
    lock_dir = ssh_lab.haproxy.config.parent / ".haproxy.cfg.lbctl.lock.d"
    lock_dir.mkdir()
    (lock_dir / "info").write_text(holder_info("deploy", "edge") + "\n")
    new = tmp_path / "new.cfg"
    new.write_text(ssh_lab.config(weight=20))
    before = ssh_lab.live()
    assert ssh_lab.lbctl("deploy", "edge", "--file", str(new), "--yes") == 5
    assert ssh_lab.live() == before


def test_a_connection_started_ahead_is_taken_over_not_doubled(sshd: Sshd) -> None:
    target = _target(sshd)
    before = set(sshd.sessions())  # sessions of earlier tests may still be ending: compare sets
    SshTransport.connect_ahead(target)
    early, thread = SshTransport._ahead[target.name]
    thread.join(10)
    connected, spare = list(early._clients), early._spare
    assert connected and spare is not None  # the early attempt did connect, and opened a session channel
    with SshTransport(target) as t:
        assert t._clients == connected and t._spare is spare  # taken over, not redone
        assert t.run(["true"]).code == 0
        assert t.read_file("/nonexistent") is None
        assert len(set(sshd.sessions()) - before) == 1  # one connection: the one started ahead
    assert SshTransport._ahead == {}


def test_a_failed_early_connection_leaves_the_real_error_to_the_transport(sshd: Sshd, tmp_path: Path) -> None:
    from lbctl.errors import HostKeyUnknown

    empty = tmp_path / "known_hosts"
    empty.write_text("")
    target = _target(sshd, known_hosts=str(empty))
    SshTransport.connect_ahead(target)
    with pytest.raises(HostKeyUnknown):
        SshTransport(target).open()
    assert empty.read_text() == ""


def test_a_connection_started_ahead_and_never_used_is_closed(sshd: Sshd) -> None:
    from lbctl.transports import release_ahead

    target = _target(sshd)
    before = set(sshd.sessions())  # sessions of earlier tests may still be ending: compare sets
    SshTransport.connect_ahead(target)
    SshTransport._ahead[target.name][1].join(10)
    ours = set(sshd.sessions()) - before
    assert len(ours) == 1
    release_ahead()  # what the CLI does when a command ends before it connects (a usage error)
    assert SshTransport._ahead == {}
    deadline = time.monotonic() + 5
    while ours & set(sshd.sessions()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ours & set(sshd.sessions())  # the server saw the connection close


def test_a_failed_early_connection_is_the_first_attempt_not_an_extra_one(sshd: Sshd) -> None:
    from lbctl import retry
    from lbctl.drivers.base import connected as _connect

    accepted: list[int] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def refuse_ssh() -> None:  # accepts and hangs up at once: no SSH banner, a transient failure
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=refuse_ssh, daemon=True).start()
    target = _target(sshd, port=server.getsockname()[1], retries=1)
    original = retry._sleep
    retry._sleep = lambda seconds: None  # the backoff is not what this test is about
    try:
        SshTransport.connect_ahead(target)
        with pytest.raises(Unreachable), _connect(SshTransport(target), target):
            pass
    finally:
        retry._sleep = original
        server.close()
    assert len(accepted) == 2  # retries = 1: two attempts in all, the early one included


def test_hostile_values_in_shell_commands_stay_one_word(
    sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`validate`, `reload` and command checks run by /bin/sh -c: placeholders are quoted, never code."""
    from lbctl.shell import shell_argv

    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / f"cfg {HOSTILE}")
    values: dict[str, str | None] = {"path": path, "target": HOSTILE}
    with SshTransport(_target(sshd, path=path)) as t:
        argv = shell_argv("printf '%s|%s' {path} {target} && printf done", values, key="targets.edge.reload")
        result = t.run(argv)
        assert result.code == 0 and result.stdout == f"{path}|{HOSTILE}done"
        argv = shell_argv("test -e {path} || echo absent > /dev/null", values, key="targets.edge.validate")
        assert t.run(argv).code == 0
    found = [p for p in (tmp_path, Path.home(), Path("/root")) if (p / "CANARY").exists()]
    assert found == []
