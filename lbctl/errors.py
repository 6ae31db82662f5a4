"""Errors meant for the user, each with the exit code PRODUCT.md documents: all of them live here.

Anything raised that is not an `LbctlError` is a bug: the CLI's error boundary
reports it with exit code 70 and shows the traceback only under `--debug`.
`LbctlError` has no exit code of its own: every subclass names one (or inherits its
parent's), checked when the class is created, so a forgotten code cannot pass for a bug.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar


class ExitCode(IntEnum):
    """The exit codes scripts rely on (PRODUCT.md §3)."""

    OK = 0
    ROLLED_BACK = 1
    USAGE = 2
    VALIDATION = 3
    REFUSED = 4
    LOCKED = 5
    UNREACHABLE = 6
    ROLLBACK_FAILED = 7
    FLEET_MIXED = 8  # `deploy @group`: on_failure = "halt" or max_failures left members on different revisions
    WATCH_ALERT = 9  # `watch --once`: an alert is active
    INTERNAL = 70
    INTERRUPTED = 130


class LbctlError(Exception):
    """An error with a message that says what happened and what to do next.

    Abstract: raise a subclass, which sets `exit_code` (or inherits its parent's).
    """

    exit_code: ClassVar[ExitCode]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(getattr(cls, "exit_code", None), ExitCode):
            raise TypeError(f"{cls.__qualname__} must set `exit_code` (an ExitCode): LbctlError has no default")

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        if type(self) is LbctlError:
            raise TypeError("LbctlError has no exit code: raise one of its subclasses")
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"


class UsageError(LbctlError):
    """Bad flag, unknown target or revision, bad store state."""

    exit_code = ExitCode.USAGE


class ConfigError(LbctlError):
    """`lbctl.toml` is wrong (exit 2), or, raised by a parser, a LB config is malformed.

    `file` and `line` point at the offending place when known.
    """

    exit_code = ExitCode.USAGE

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, hint: str | None = None
    ) -> None:
        where = file if line is None else f"{file}:{line}"
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.file = file
        self.line = line


class StoreError(UsageError):
    """The store is missing, not a git repository, dirty, or has no git identity."""


class ValidationFailed(LbctlError):
    """The candidate config failed parsing, native validation or policy: nothing was pushed."""

    exit_code = ExitCode.VALIDATION

    def __init__(self, message: str, *, details: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.details = details

    def __str__(self) -> str:
        text = self.message + (f"\n{self.details.rstrip()}" if self.details else "")
        return text if self.hint is None else f"{text}\n  hint: {self.hint}"


class ParseError(ValidationFailed):
    """A LB config could not be parsed; names the file and line (exit 3 in check/deploy)."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        where = file if line is None else f"{file}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.line = line


class Refused(LbctlError):
    """Refused for safety (blast radius, staging gate, drift, checksum, no confirmation)."""

    exit_code = ExitCode.REFUSED


class Locked(LbctlError):
    """Another operation holds the target's lock."""

    exit_code = ExitCode.LOCKED


class Unreachable(LbctlError):
    """The target could not be reached after retries; nothing was changed on it."""

    exit_code = ExitCode.UNREACHABLE


class DiskFull(Unreachable):
    """The LB host's disk (or quota) is full: the candidate could not be staged whole; nothing was changed."""


class DamagedStore(StoreError):
    """A ref or object of the store cannot be read (missing, truncated or garbage): said, with the repair."""


class TransientError(Exception):
    """A transport failure worth retrying (connection reset, timeout, socket briefly gone).

    Not an `LbctlError`: retry policies catch it, and when they give up it becomes
    `Unreachable` (before anything changed) or fails the stage it happened in.
    """


class RolledBack(LbctlError):
    """The change failed verification; the previous revision was restored and is healthy."""

    exit_code = ExitCode.ROLLED_BACK


class RollbackFailed(LbctlError):
    """The restore itself failed or left the target unhealthy: page a human."""

    exit_code = ExitCode.ROLLBACK_FAILED


class Interrupted(LbctlError):
    """Interrupted by the user; the target runs a complete config and the message says which."""

    exit_code = ExitCode.INTERRUPTED


class CannotArm(LbctlError):
    """`--confirm-within` asked for a target lbctl cannot arm a watchdog on (exit 2)."""

    exit_code = ExitCode.USAGE


class RemoteFileError(LbctlError):
    """A file on the host could not be read or written (permissions, a directory in the way)."""

    exit_code = ExitCode.USAGE


class TreeStepFailed(LbctlError):
    """A step of a tree's staging, swap or restore failed on the host (permissions, a directory in the way)."""

    exit_code = ExitCode.USAGE


class HostKeyChanged(LbctlError):
    """The host's key differs from known_hosts: possibly an attack, refused (exit 2)."""

    exit_code = ExitCode.USAGE


class HostKeyUnknown(Unreachable):
    """The host's key is not in known_hosts: refused (exit 6), nothing was changed."""


class AuthenticationFailed(Unreachable):
    """No identity was accepted by the host (exit 6); not retried."""


class SandboxUnavailable(LbctlError):
    """The sandbox could not start; the message names what is missing (exit 3 for `lbctl test`)."""

    exit_code = ExitCode.VALIDATION


class ApiRefused(LbctlError):
    """Caddy answered a load with 4xx/5xx; it keeps running its previous config.

    Exit 3 (the LB refused the config, as its own validation would): the Caddy kind turns it
    into a failed reload before it can reach the user.
    """

    exit_code = ExitCode.VALIDATION

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Caddy refused the config (HTTP {status}): {message}")
        self.status = status


class CommandFailed(Exception):
    """A command run by a transport exited non-zero (carries its output)."""

    def __init__(self, argv: list[str], code: int, stdout: str, stderr: str) -> None:
        super().__init__(f"{argv[0]} exited {code}: {stderr.strip() or stdout.strip()}")
        self.argv = argv
        self.code = code
        self.stdout = stdout
        self.stderr = stderr


class CannotHost(UsageError):
    """A drill's target config has nothing the scenario can break (exit 2)."""
