"""Files read and written over SSH by one command each (`cat`, `cat >` with its sha256), and reads
made ahead with the LB lock: whole bytes, the right mode, and answers never served stale."""

from __future__ import annotations

import os
from pathlib import Path

from lbctl.transports.ssh import SshTransport
from tests.ssh.conftest import Sshd
from tests.ssh.test_hostkeys_and_config import _target


def test_a_big_file_is_read_and_written_whole(sshd: Sshd, tmp_path: Path) -> None:
    """sshd may send a command's exit status before the end of a big output: the read waits for the end."""
    live = tmp_path / "haproxy.cfg"
    data = os.urandom(3 * 1024 * 1024)  # any bytes, NULs and invalid UTF-8 included
    live.write_bytes(data)
    live.chmod(0o640)
    with SshTransport(_target(sshd, path=str(live))) as t:
        for _ in range(3):
            assert t.read_file(str(live)) == data
        assert t.read_file(str(tmp_path / "missing.cfg")) is None
        staged = t.write_staged(str(live), data[::-1])
        assert Path(staged).parent == tmp_path and Path(staged).read_bytes() == data[::-1]
        assert Path(staged).stat().st_mode & 0o777 == 0o640  # the live file's mode
        t.remove(staged)
        assert not Path(staged).exists()


def test_a_read_made_ahead_is_served_once_and_never_after_a_write(sshd: Sshd, tmp_path: Path) -> None:
    live = tmp_path / "haproxy.cfg"
    live.write_text("first\n")
    lock = str(tmp_path / ".haproxy.cfg.lbctl.lock")
    with SshTransport(_target(sshd, path=str(live))) as t:
        t.read_ahead(files=[str(live)])
        with t.lock(lock, '{"holder": "test"}'):
            live.write_text("second\n")  # changed behind lbctl's back after the lock's command read it
            assert t.read_file(str(live)) == b"first\n"  # the answer read with the lock
            assert t.read_file(str(live)) == b"second\n"  # once only: then read again

            t.read_ahead(files=[str(live)])
            t.run(["true"])  # the command that carries the read
            staged = t.write_staged(str(live), b"third\n")  # lbctl writes to the LB: answers are dropped
            live.write_text("fourth\n")
            assert t.read_file(str(live)) == b"fourth\n"
            t.remove(staged)
