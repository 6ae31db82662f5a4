"""Staging a candidate on the local transport: short writes completed, a full disk said so (pure logic)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from lbctl.errors import DiskFull, ExitCode
from lbctl.transports import local


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(local.os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))  # 7 bytes a call
    path = tmp_path / "staged"
    local._write_new(path, b"x" * 1000 + b"end\n", 0o644)
    assert path.read_bytes() == b"x" * 1000 + b"end\n"


def test_enospc_is_a_full_disk_and_leaves_no_staged_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    calls: list[int] = []

    def filling(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data[:10]))  # the disk fills after 10 bytes

    monkeypatch.setattr(local.os, "write", filling)
    (tmp_path / "lb").mkdir()
    live = tmp_path / "lb" / "haproxy.cfg"
    live.write_text("old\n")
    transport = local.LocalTransport.__new__(local.LocalTransport)
    with pytest.raises(DiskFull) as caught:
        transport.write_staged(str(live), b"a candidate that does not fit\n")
    assert caught.value.exit_code == ExitCode.UNREACHABLE
    assert "the LB's disk is full" in str(caught.value) and "nothing was changed" in str(caught.value)
    assert sorted(p.name for p in live.parent.iterdir()) == ["haproxy.cfg"]
    assert live.read_text() == "old\n"
