"""Does the load balancer run what lbctl deployed, read from the file lbctl deploys to?

Two questions that the config file on disk cannot answer, asked of the running LB:

- **origin**: which config file(s) the running LB was started with (its master's command
  line, `/proc/<pid>/cmdline`, read on the LB host through the transport). A target whose
  `path` is not one of them is refused (exit 2, naming the real file): lbctl would push,
  reload and "verify" a file the LB never reads.
- **conformance**: whether the LB's running state is the deployed config's (HAProxy:
  servers, addresses, weights, admin state from its runtime API; nginx: a worker generation
  started after its config files last changed; Caddy: `GET /config/`). A reload that did
  not take, or a weight set by hand through the runtime API, shows as running drift.

Each answer may be "unknown, because ...": lbctl says so rather than guess. The kinds do
the LB-specific reading (`Kind.config_origin`, `Kind.conformance`); this module holds the
values and the comparison of paths.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lbctl.errors import ConfigError

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.kinds.base import Kind
    from lbctl.store.bundle import Bundle
    from lbctl.transports.base import Transport


@dataclass(frozen=True)
class Conformance:
    """Running state vs the deployed config: `differences` when `checked`, else `detail` says why not."""

    checked: bool
    differences: tuple[str, ...] = ()
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.checked and not self.differences

    @property
    def summary(self) -> str:
        if not self.checked:
            return f"not checked: {self.detail}"
        if not self.differences:
            return f"in sync ({self.detail})" if self.detail else "in sync"
        return "; ".join(self.differences)

    def __str__(self) -> str:
        return self.summary

    def to_json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "in_sync": self.ok if self.checked else None,
            "differences": list(self.differences),
            "detail": self.detail,
        }


def unknown(why: str) -> Conformance:
    return Conformance(False, (), why)


@dataclass(frozen=True)
class Started:
    """How the running LB was started: a pid, its arguments, and where relative paths start."""

    pid: int
    argv: tuple[str, ...]
    cwd: str  # "" when the LB host would not say (another user's process)
    target_real: str  # the target's `path` with symlinks resolved on the LB host
    how: str  # where the pid came from, for messages


@dataclass(frozen=True)
class Origin:
    """The config file(s) the running LB reads, and whether the target's `path` is one of them."""

    known: bool
    files: tuple[str, ...] = ()
    matches: bool | None = None  # None: not known
    detail: str = ""

    @property
    def summary(self) -> str:
        if not self.known:
            return f"not checked: {self.detail}"
        shown = ", ".join(self.files)
        return f"the LB reads {shown}" + (f" ({self.detail})" if self.detail else "")

    def __str__(self) -> str:
        return self.summary

    def to_json(self) -> dict[str, Any]:
        return {"known": self.known, "files": list(self.files), "matches": self.matches, "detail": self.detail}


def origin_unknown(why: str) -> Origin:
    return Origin(False, (), None, why)


# Prints the target path resolved on the LB host, the process's cwd, then its NUL-separated argv.
_READ_CMDLINE = (
    'realpath -m -- "$2" 2>/dev/null || printf "%s\\n" "$2"; '
    'readlink "/proc/$1/cwd" 2>/dev/null || echo; '
    'cat "/proc/$1/cmdline" || exit 3'
)


def read_started(transport: Transport, target: Target, pid: int, how: str) -> Started | None:
    """The command line of process `pid` on the LB host (None if it is gone)."""
    path = target.path or ""
    result = transport.run(["sh", "-c", _READ_CMDLINE, "lbctl-origin", str(pid), path], timeout=15)
    if result.code != 0:
        return None
    real, _, rest = result.stdout.partition("\n")
    cwd, _, raw = rest.partition("\n")
    argv = tuple(a for a in raw.split("\0") if a != "") if raw else ()
    if not argv:
        return None
    return Started(pid, argv, cwd.strip(), real.strip() or path, how)


def judge(transport: Transport, target: Target, started: Started, files: list[str]) -> Origin:
    """Is the target's `path` one of `files` (absolute paths; a directory means its `*.cfg` files)?"""
    path = posixpath.normpath(target.path or "")
    wanted = {path, posixpath.normpath(started.target_real)}
    if _among(wanted, files):
        return Origin(True, tuple(files), True, started.how)
    # Symlinks on the LB host: compare real paths before refusing.
    result = transport.run(["realpath", "-m", "--", *files], timeout=15)
    reals = result.stdout.splitlines() if result.code == 0 else []
    if len(reals) == len(files) and _among(wanted, reals):
        return Origin(True, tuple(files), True, started.how)
    return Origin(True, tuple(files), False, started.how)


def _among(wanted: set[str], files: list[str]) -> bool:
    for name in files:
        name = posixpath.normpath(name)
        if name in wanted:
            return True
        if any(posixpath.dirname(w) == name and w.endswith(".cfg") for w in wanted):
            return True  # `-f DIR`: HAProxy reads DIR's *.cfg files
    return False


def absolute(name: str, base: str) -> str:
    return posixpath.normpath(name if name.startswith("/") or not base else posixpath.join(base, name))


def check_origin(kind: Kind, transport: Transport, target: Target) -> Origin:
    """Which file(s) the running LB reads; never raises for what cannot be known."""
    from lbctl.errors import TransientError

    if not target.path or target.transport == "http":
        return origin_unknown("the target has no config file")
    try:
        return kind.config_origin(transport)
    except (TransientError, OSError) as exc:
        return origin_unknown(f"could not ask the running {kind.name}: {exc}")


def require_origin(kind: Kind, transport: Transport, target: Target) -> Origin:
    """`check_origin`, refusing (exit 2) a target whose `path` is not the file the LB reads."""
    origin = check_origin(kind, transport, target)
    if origin.matches is False:
        raise wrong_path(target, origin)
    return origin


def wrong_path(target: Target, origin: Origin) -> ConfigError:
    real = origin.files[0] if len(origin.files) == 1 else ", ".join(origin.files)
    return ConfigError(
        f"targets.{target.name}.path is {target.path}, but the running {target.kind} reads {real} "
        f"({origin.detail}): lbctl would change a file the load balancer does not read; nothing was changed",
        hint=f'set path = "{origin.files[0]}" for {target.name} in lbctl.toml' if origin.files else None,
    )


def settled(
    kind: Kind, transport: Transport, deployed: Bundle, *, attempts: int = 8, pause: float = 0.1
) -> Conformance:
    """`kind.conformance` right after a reload: asked again briefly while the new worker settles."""
    import time

    result = kind.conformance(transport, deployed)
    for _ in range(attempts):
        if not result.differences:
            break
        time.sleep(0.1)
        result = kind.conformance(transport, deployed)
    return result
