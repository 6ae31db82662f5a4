"""Exclusive locks that the kernel releases if their holder dies (`flock`).

A lock file keeps a JSON line naming the holder, the operation and the start time,
so whoever finds it taken is told by whom and since when.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbctl.clock import timestamp
from lbctl.errors import Locked

if TYPE_CHECKING:
    from lbctl.config import Target


def holder_info(operation: str, target: str) -> str:
    return json.dumps(
        {
            "holder": f"{getpass.getuser()}@{socket.gethostname()}",
            "pid": os.getpid(),
            "operation": operation,
            "target": target,
            "started": timestamp(),
        }
    )


def lb_lock_path(target: Target) -> str:
    """The lock beside the live file: it also stops operators working from other stores."""
    directory, _, name = (target.path or f"/tmp/lbctl-{target.name}").rpartition("/")
    return f"{directory}/.{name}.lbctl.lock"


def describe_holder(raw: str) -> str:
    try:
        info = json.loads(raw)
        return (
            f"{info['operation']} of {info['target']} by {info['holder']} (pid {info['pid']}) since {info['started']}"
        )
    except (ValueError, KeyError, TypeError):
        return raw.strip() or "an unknown holder"


@dataclass(frozen=True)
class LockInfo:
    """One lock that holds a target: where it is, who took it for what, and whether its holder is gone.

    `dead` is proof, not a guess: the holder ran on this machine and its process no longer exists.
    """

    where: str  # "store" (this machine's lbctl) or "lb" (beside the live config on the LB host)
    path: str
    holder: str
    operation: str
    target: str
    host: str
    pid: int | None
    started: str | None
    age_seconds: int | None
    dead: bool

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def describe(self) -> str:
        age = f", {self.age_seconds} s ago" if self.age_seconds is not None else ""
        pid = f" (pid {self.pid})" if self.pid is not None else ""
        state = "; its holder is gone (stale)" if self.dead else ""
        return f"{self.operation} of {self.target} by {self.holder}{pid} since {self.started or '?'}{age}{state}"


def lock_info(raw: str, *, where: str, path: str, age_seconds: int | None = None) -> LockInfo:
    """A lock's holder line (`holder_info`), read from a lock file or directory."""
    try:
        info = json.loads(raw)
        holder = str(info["holder"])
        pid: int | None = int(info["pid"])
        operation, target, started = str(info["operation"]), str(info["target"]), str(info["started"])
    except (ValueError, KeyError, TypeError):
        holder, pid, operation, target, started = raw.strip() or "an unknown holder", None, "?", "?", None
    host = holder.rpartition("@")[2]
    return LockInfo(where, path, holder, operation, target, host, pid, started, age_seconds, holder_is_gone(host, pid))


def holder_is_gone(host: str, pid: int | None) -> bool:
    """True only when the holder ran on this machine and its process is gone."""
    if pid is None or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _unlock_hint(raw: str) -> str:
    try:
        target = str(json.loads(raw)["target"])
    except (ValueError, KeyError, TypeError):
        return "wait for that operation to finish; `lbctl status` shows the holder"
    return f"wait for that operation to finish; if its holder is gone, `lbctl unlock {target}` breaks the lock"


@contextlib.contextmanager
def hold_flock(path: Path, info: str) -> Iterator[None]:
    """Hold an exclusive flock on `path` or raise `Locked` (exit 5) naming the holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = path.read_text(encoding="utf-8", errors="replace")
            raise Locked(f"locked: {describe_holder(raw)}", hint=_unlock_hint(raw)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def flock_holder(path: Path, *, where: str) -> LockInfo | None:
    """The live holder of the flock at `path`, or None when it is free (see `current_holder`)."""
    try:
        raw = path.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None
    if not raw:
        return None
    found = lock_info(raw, where=where, path=str(path))
    return None if found.dead else found  # the kernel released a dead holder's flock


def current_holder(path: Path) -> str | None:
    """Who holds the lock at `path` now, or None if it is free.

    Read without touching the lock itself (probing it would make a concurrent deploy see
    it taken): a holder writes its line on taking it and empties it on release, and a
    holder killed outright leaves a line whose pid is gone.
    """
    try:
        raw = path.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None
    if not raw:
        return None
    try:
        info = json.loads(raw)
        host, pid = str(info["holder"]).rpartition("@")[2], int(info["pid"])
    except (ValueError, KeyError, TypeError):
        return describe_holder(raw)
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return describe_holder(raw)


@contextlib.contextmanager
def serialized(path: Path, timeout: float = 30.0) -> Iterator[None]:
    """A short exclusive section shared by every lbctl process on this machine (waits its turn)."""
    import time

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Locked(f"{path} stayed locked for {timeout:.0f} s") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)
