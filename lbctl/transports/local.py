"""The `local` transport: the load balancer runs on the machine lbctl runs on."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from lbctl.errors import CommandFailed, DiskFull, TransientError
from lbctl.lock import flock_holder, hold_flock
from lbctl.transports.base import RunResult, SocketUnavailable, Transport

_TRANSIENT_ERRNOS = (ConnectionResetError, BrokenPipeError)
_UNAVAILABLE_ERRNOS = (errno.ENOENT, errno.ECONNREFUSED, errno.EACCES, errno.EPERM, errno.ENOTSOCK, errno.ENOTDIR)


class LocalTransport(Transport):
    name = "local"

    def run(self, argv: Sequence[str], *, check: bool = False, timeout: float = 60.0) -> RunResult:
        try:
            proc = subprocess.run(
                list(argv), capture_output=True, text=True, errors="replace", timeout=timeout, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            result = RunResult(tuple(argv), 127, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired:
            raise TransientError(f"{argv[0]} did not finish within {timeout:.0f} s") from None
        else:
            result = RunResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
        if check and result.code != 0:
            raise CommandFailed(list(argv), result.code, result.stdout, result.stderr)
        return result

    def read_file(self, path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def write_staged(self, path: str, data: bytes) -> str:
        live = Path(path)
        live.parent.mkdir(parents=True, exist_ok=True)
        staged = live.with_name(f".{live.name}.lbctl-stage-{os.getpid()}")
        try:
            _write_new(staged, data, _mode_of(live))
        except BaseException:
            with contextlib.suppress(OSError):  # a partial file must not stay
                staged.unlink()
            raise
        return str(staged)

    def put_file(self, path: str, data: bytes, *, like: str) -> None:
        _write_new(Path(path), data, _mode_of(Path(like)))

    def swap(self, staged: str, path: str, keep: str) -> None:
        if os.path.exists(path):
            _link_over(path, keep)
        os.rename(staged, path)
        _fsync_dir(path)

    def restore(self, keep: str, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if os.path.samefile(keep, path):
                return  # restored already (a repeat): renaming a second name of one file does nothing
        tmp = f"{path}.lbctl-restore-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.link(keep, tmp)
        os.rename(tmp, path)
        _fsync_dir(path)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def unix_request(self, socket_path: str, command: str, *, timeout: float = 5.0) -> str:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(socket_path)
                sock.sendall(command.rstrip("\n").encode() + b"\n")
                # HAProxy's master CLI answers only once it sees the end of our input.
                sock.shutdown(socket.SHUT_WR)
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except _TRANSIENT_ERRNOS as exc:
            raise TransientError(f"{socket_path}: {exc.strerror or exc}") from None
        except TimeoutError:
            raise TransientError(f"{socket_path}: no answer within {timeout:.0f} s") from None
        except OSError as exc:
            if exc.errno in _UNAVAILABLE_ERRNOS:
                reason = exc.strerror or str(exc)
                raise SocketUnavailable(f"{socket_path}: {reason}", reason) from None
            raise
        return b"".join(chunks).decode("utf-8", "replace")

    @contextlib.contextmanager
    def lock(self, name: str, info: str) -> Iterator[None]:
        with hold_flock(Path(name), info):
            yield

    def lock_holder(self, name: str) -> tuple[str, int | None] | None:
        found = flock_holder(Path(name), where="lb")  # a dead holder's flock is released by the kernel
        return None if found is None else (Path(name).read_text(encoding="utf-8", errors="replace").strip(), None)

    def break_lock(self, name: str, holder: str) -> bool:
        return self.lock_holder(name) is None  # a live flock cannot be broken, only its holder stopped


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write `data` as `path` whole, and prove it (size and sha256 read back), or raise.

    A full disk is `DiskFull` (exit 6, nothing changed): `os.write` may write less than asked
    (then ENOSPC on the next call), and a quota may only show on `fsync`.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(path, len(data)) from None
        raise
    finally:
        os.close(fd)
    landed = path.read_bytes()
    if len(landed) != len(data) or hashlib.sha256(landed).digest() != hashlib.sha256(data).digest():
        raise _disk_full(path, len(data))


def _disk_full(path: Path, size: int) -> DiskFull:
    free = ""
    with contextlib.suppress(OSError):
        st = os.statvfs(path.parent)
        free = f" ({st.f_bavail * st.f_frsize} bytes free, the candidate needs {size})"
    return DiskFull(
        f"the LB's disk is full: {path.parent}{free} could not hold the candidate: nothing was changed",
        hint="free space on the LB host, then run the same command again",
    )


def _mode_of(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o644


def _link_over(src: str, dst: str) -> None:
    """Make `dst` a hard link to `src`, replacing `dst` atomically."""
    if os.path.exists(dst) and os.path.samefile(src, dst):
        return  # after a restore both names are one file; rename() would do nothing and leave tmp behind
    tmp = f"{dst}.tmp-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.link(src, tmp)
    os.rename(tmp, dst)


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
