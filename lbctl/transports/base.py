"""How lbctl reaches a load balancer's host.

A transport moves bytes and runs commands on the LB host; it knows nothing of
HAProxy or nginx (that is the kind's job, see `lbctl.kinds`). Contract:

- A transport is a context manager: `open()` connects (lazily, once), `close()` disconnects.
  One transport instance serves a whole operation, every step reusing one connection.
- `run(argv)` runs a command from an argument list, never through a shell string
  built by concatenation; remote transports quote each argument.
- A file transport (local, ssh) also stages files; one without files (http: Caddy's admin
  API, changed by its driver, `lbctl.drivers.caddy`) refuses these with a `ConfigError`:
- `write_staged(path, data)` writes a complete new file *next to* `path` (same directory,
  so the same filesystem) and returns its name: never writes over `path` itself.
- `swap(staged, path, keep)` makes `staged` the live `path` atomically (rename), after
  hard-linking the current `path` to `keep` so the previous config can be restored at once.
- `restore(keep, path)` puts the kept file back atomically, leaving `keep` in place.
- `remove(path)` removes a file if it exists (a staged one after a failed validation).
- `put_file(path, data, like=)` writes a complete new file at exactly `path` (its directory
  must exist), with the permissions of `like` if that exists: for staging a tree of files
  (`lbctl.drivers.placement`), whose other steps are `run` scripts.
- `read_ahead(files=, requests=)` is a hint: these reads come next. A transport that pays a
  round trip per command may make them with its next command (the LB lock) and serve each
  answer once, to its first asking, until it next writes to the LB or a few seconds pass.
- `lock(name, info)` holds an exclusive lock on the LB host for the operation's life;
  `lock_holder(name)` reads who holds it, `break_lock(name, holder)` removes a stale one.
- Failures worth retrying raise `TransientError`; a command that ran and failed returns
  its exit code (or raises `CommandFailed` with `check=True`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from lbctl.config import Target
from lbctl.errors import ConfigError, TransientError


class SocketUnavailable(TransientError):
    """Nothing answers at a UNIX socket on the LB host; `reason` says why (as the OS put it)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# How the OS (and socat) word the failures that mean "nothing answers at that path".
SOCKET_UNAVAILABLE = ("No such file or directory", "Connection refused", "Permission denied", "not a socket")


@dataclass(frozen=True)
class RunResult:
    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


class Transport(ABC):
    name: str = ""

    def __init__(self, target: Target) -> None:
        self.target = target

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @classmethod
    def connect_ahead(cls, target: Target) -> None:
        """Start connecting to `target` in the background, if that saves time (a hint; may do nothing)."""

    def open(self) -> None:
        """Connect; idempotent."""

    def close(self) -> None:
        """Disconnect; idempotent."""

    @property
    def where(self) -> str:
        """Where the target lives, for messages (`local`, `deploy@10.0.0.5:22`)."""
        return self.name

    @abstractmethod
    def run(self, argv: Sequence[str], *, check: bool = False, timeout: float = 60.0) -> RunResult: ...

    @abstractmethod
    def read_file(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""

    def write_staged(self, path: str, data: bytes) -> str:
        """Write `data` to a new temporary file beside `path`; return the temp file's path."""
        raise self._without("files")

    def swap(self, staged: str, path: str, keep: str) -> None:
        """Atomically replace `path` with `staged`, hard-linking the old `path` to `keep` first."""
        raise self._without("files")

    def restore(self, keep: str, path: str) -> None:
        """Atomically put `keep` back as `path` (keep stays, for a second restore)."""
        raise self._without("files")

    def put_file(self, path: str, data: bytes, *, like: str) -> None:
        """Write `data` as a new file `path` (mode of `like`, else 0644); a retry rewrites it whole."""
        raise NotImplementedError(f"the {self.name} transport cannot stage a tree of files")

    def _without(self, what: str) -> ConfigError:
        return ConfigError(f"targets.{self.target.name}: the {self.name} transport has no {what} on the LB host")

    def remove(self, path: str) -> None:
        """Remove a file if it exists (a staged file after a failed validation)."""
        raise self._without("files")

    def read_ahead(self, *, files: Sequence[str] = (), requests: Sequence[tuple[str, str]] = ()) -> None:
        """Hint that `read_file(f)` for `files` and `unix_request(socket, line)` for `requests` come next."""

    @abstractmethod
    def lock(self, name: str, info: str) -> AbstractContextManager[None]:
        """Hold an exclusive lock named `name` on the LB host; `Locked` if someone has it."""

    def lock_holder(self, name: str) -> tuple[str, int | None] | None:
        """(holder line, age in seconds or None) of the lock `name` on the LB host, or None if free."""
        return None

    def break_lock(self, name: str, holder: str) -> bool:
        """Remove the lock `name` if `holder` (as `lock_holder` read it) still holds it; True if free now."""
        return self.lock_holder(name) is None
