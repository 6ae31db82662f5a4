"""What lbctl needs to know about one brand of load balancer.

A kind turns the generic lifecycle (stage → validate → swap → reload → confirm) into
the LB's own commands, and does all I/O through the target's transport. Contract:

- `validate(transport, staged)`: run the LB's native check on a staged file on the LB
  host; raise `ValidationFailed` carrying the LB's own messages. Never touches the live file.
- `reload_marker(transport)`: a snapshot of the LB's process state taken before a reload.
- `reload(transport)`: ask the running LB to load the live file.
- `confirm_reload(transport, marker)`: wait until the reload took (new worker, new
  generation) or raise `ReloadFailed` if the LB kept its old config.
- `traffic_snapshot(transport)`: per-server counters from the LB's own view of traffic.
- `prepare(content)` / `canonical(content)`: what is pushed for a store file, and the form
  in which a running config and the store's are compared.
- `include_patterns(content)`: the relative paths (globs allowed) a config includes, for a
  kind whose configs span several files (`lbctl.bundle` deploys the store's ones with it).
- `config_origin(transport)`: the config file(s) the running LB was started with, or why
  that cannot be known (`lbctl.conformance`).
- `conformance(transport, deployed)`: whether the LB's running state is `deployed`'s.
- `validate_argv` / `reload_argv`: a target's `validate` / `reload` strings are split
  like a shell would (no shell runs them) and `{path}` is replaced as one argument.
"""

from __future__ import annotations

import posixpath
import shlex
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from lbctl.checks.counters import Snapshot
from lbctl.config import Target
from lbctl.errors import ConfigError, ValidationFailed
from lbctl.transports.base import Transport

if TYPE_CHECKING:
    from lbctl.bundle import Bundle
    from lbctl.conformance import Conformance, Origin


class ReloadFailed(Exception):
    """The LB did not take the new config (it still runs the old one, or none)."""


class Kind(ABC):
    name: ClassVar[str]
    default_validate: ClassVar[tuple[str, ...]]
    # A kind whose traffic readings are lbctl's own probes (Caddy) counts them in `probes_sent`;
    # the balance check then sends no top-up probes of its own.
    probes_itself: ClassVar[bool] = False
    # A kind whose configs may `include` other files: its targets deploy a bundle (`lbctl.bundle`).
    follows_includes: ClassVar[bool] = False
    probes_sent: int = 0
    # What `conformance` imports, loaded in the background while the LB validates.
    conformance_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, target: Target) -> None:
        self.target = target

    def validate_argv(self, path: str) -> list[str]:
        template = (
            shlex.split(self.target.validate_command) if self.target.validate_command else list(self.default_validate)
        )
        return [arg.replace("{path}", path) for arg in template]

    def reload_argv(self) -> list[str] | None:
        if not self.target.reload:
            return None
        try:
            argv = shlex.split(self.target.reload)
        except ValueError as exc:
            raise ConfigError(f"targets.{self.target.name}.reload: {exc}") from None
        return [arg.replace("{path}", self.target.path or "") for arg in argv]

    def validate(self, transport: Transport, staged: str) -> str:
        """Native validation of `staged`; returns the LB's output, raises `ValidationFailed`."""
        argv = self.validate_argv(staged)
        result = transport.run(argv, timeout=60)
        if result.code == 127:
            # The environment, not the candidate: nothing is marked bad for it.
            raise ConfigError(
                f"cannot validate on {transport.where}: {argv[0]} not found",
                hint=f"install {self.name} there, or set targets.{self.target.name}.validate",
            )
        if result.code != 0:
            live = self.target.path or ""
            details = result.output
            if live:  # the live names, also for the files of a staged tree (`lbctl.placement`)
                details = details.replace(staged, live)
                details = details.replace(posixpath.dirname(staged) + "/", posixpath.dirname(live) + "/")
            raise ValidationFailed(
                f"{self.name} rejected the candidate config (`{' '.join(argv[:-1])} ...` exited {result.code});"
                " nothing was changed on the LB",
                details=details,
            )
        return result.output

    def prepare(self, content: bytes) -> bytes:
        """The bytes to push for a store file's `content` (e.g. a Caddyfile adapted to JSON)."""
        return content

    def include_patterns(self, content: bytes) -> list[str]:
        """Paths (globs as the LB expands them) that `content` includes, relative to its directory.

        Only those: absolute paths and paths with variables are the LB host's business. A
        kind whose configs are one file returns none, and its targets deploy one file.
        """
        return []

    def canonical(self, content: bytes) -> bytes:
        """A form in which two equivalent configs are equal bytes (drift and no-op detection).

        File-based kinds compare bytes as they are; an API kind that reads back its running
        config reformatted (Caddy's JSON) normalises both sides here.
        """
        return content

    def traffic_snapshot(self, transport: Transport) -> Snapshot:
        """Per-server traffic counters read from the LB itself (for the `balance` check)."""
        raise ConfigError(f"targets.{self.target.name}: the {self.name} kind cannot read traffic counters yet")

    def balance_algorithms(self, transport: Transport) -> dict[str, str]:
        """Each backend's load-balancing algorithm in the live config (empty when unknown)."""
        return {}

    @abstractmethod
    def reload_marker(self, transport: Transport) -> object: ...

    @abstractmethod
    def reload(self, transport: Transport) -> None: ...

    @abstractmethod
    def confirm_reload(self, transport: Transport, marker: object) -> str:
        """Block until the reload took; returns a one-line detail for the record."""

    def config_origin(self, transport: Transport) -> Origin:
        """The file(s) the running LB reads (its master's command line), or why that is unknown."""
        from lbctl.conformance import origin_unknown

        return origin_unknown(f"lbctl cannot ask a running {self.name} which file it reads")

    def conformance(self, transport: Transport, deployed: Bundle) -> Conformance:
        """Whether what the LB runs is `deployed` (as pushed); never raises for what cannot be known."""
        from lbctl.conformance import unknown

        return unknown(f"lbctl cannot read a running {self.name}'s state")
