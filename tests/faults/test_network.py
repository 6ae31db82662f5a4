"""A flaky or silent network between lbctl and the LB: documented exit codes, no traceback, no leftovers."""

from __future__ import annotations

import pytest

from lbctl.lab.netfaults import Blackhole, CuttingRelay
from tests.faults.conftest import Scene, Sshd


@pytest.mark.parametrize("cut_after", [2_500, 12_000, 90_000])  # the lock, the upload, later steps
def test_every_connection_cut_is_exit_6_or_a_restore_never_130(ssh_scene: Scene, cut_after: int) -> None:
    good = ssh_scene.file(100)
    assert ssh_scene.lbctl("deploy", "edge", "--file", str(good), "--yes")[0] == 0
    direct = ssh_scene.store.joinpath("lbctl.toml").read_text()
    new = ssh_scene.file(40, pad=1500)  # ~100 kB: cuts land in the handshake, the upload or later steps
    relay = CuttingRelay(ssh_scene.sshd_port, cut_after)
    try:
        ssh_scene.via_port(relay.port)
        done = ssh_scene.spawn("deploy", "edge", "--file", str(new), "--yes", timeout=120)
    finally:
        relay.close()
    assert relay.cut >= 1
    assert done.returncode in (0, 1, 6, 7), (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and "aborted" not in done.stderr, done.stderr
    assert ssh_scene.assert_complete(good.read_text(), new.read_text())
    if done.returncode == 6:
        assert ssh_scene.live() == good.read_text()  # exit 6: nothing was changed
    ssh_scene.store.joinpath("lbctl.toml").write_text(direct)
    ssh_scene.commit_all("reach edge directly again")
    ssh_scene.assert_recovers(good.read_text())


def test_a_listener_that_never_answers_is_exit_6_without_a_traceback(ssh_scene: Scene) -> None:
    hole = Blackhole()
    try:
        toml = ssh_scene.store / "lbctl.toml"
        toml.write_text(
            toml.read_text().replace("[targets.edge]\n", "[targets.edge]\nconnect_timeout = 0.5\nretries = 1\n")
        )
        ssh_scene.via_port(hole.port)
        for args in (["deploy", "edge", "--file", str(ssh_scene.file(40)), "--yes"], ["status", "edge"]):
            done = ssh_scene.spawn(*args, timeout=120)
            assert "Traceback" not in done.stderr and "paramiko" not in done.stderr, done.stderr
            if args[0] == "deploy":
                assert done.returncode == 6, done.stderr
    finally:
        hole.close()


def test_an_eof_escaping_a_command_is_a_lost_connection_not_an_abort(monkeypatch: pytest.MonkeyPatch) -> None:
    """click turns an EOFError into Abort ("aborted", 130); lbctl says what it is: a lost link, exit 6."""
    from lbctl import cli

    def lost(*args: object, **kwargs: object) -> None:
        raise EOFError

    monkeypatch.setattr(cli, "_workspace", lost)
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["status", "--offline"])
    assert code == 6 and "connection to the load balancer was lost" in err.getvalue()
    assert "aborted" not in err.getvalue() and "Traceback" not in err.getvalue()


def test_an_early_connection_lost_on_its_way_is_a_transient_error(ssh_scene: Scene) -> None:
    """A connection started ahead that paramiko loses with a bare EOFError is retried like any drop."""
    from lbctl.errors import TransientError
    from lbctl.store.workspace import open_workspace
    from lbctl.transports.ssh import SshTransport

    target = open_workspace(str(ssh_scene.store)).target("edge")
    original = SshTransport._ready

    def lost(self: SshTransport) -> object:
        raise EOFError

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SshTransport, "_ready", lost)
        SshTransport.connect_ahead(target)
        transport = SshTransport(target)
        with pytest.raises(TransientError):
            transport._take_over_early()
    assert SshTransport._ready is original


def test_sshd_child_killed_mid_upload(ssh_scene: Scene, sshd: Sshd) -> None:
    """The LB host's sshd session dies while the candidate streams in: a retry completes it, or exit 6."""
    import threading
    import time

    good = ssh_scene.file(100)
    assert ssh_scene.lbctl("deploy", "edge", "--file", str(good), "--yes")[0] == 0
    new = ssh_scene.file(40, pad=20000)  # ~1.4 MB: long enough to be cut while it lands
    killed: list[int] = []
    stop = threading.Event()

    def kill_when_staging() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            staged = [p for p in ssh_scene.lb_dir.glob(".haproxy.cfg.lbctl-stage-*") if p.stat().st_size > 0]
            if staged:
                killed.append(sshd.cut_connections())
                return
            time.sleep(0.0005)

    watcher = threading.Thread(target=kill_when_staging, daemon=True)
    watcher.start()
    try:
        code, out, err = ssh_scene.lbctl("deploy", "edge", "--file", str(new), "--yes")
    finally:
        stop.set()
        watcher.join()
    assert killed and killed[0] >= 1, "the upload was never seen in flight"
    assert code in (0, 6), out + err
    assert "Traceback" not in err
    live = ssh_scene.assert_complete(good.read_text(), new.read_text())
    assert live == (new.read_text() if code == 0 else good.read_text())
    ssh_scene.assert_clean()
    ssh_scene.assert_recovers(live)
