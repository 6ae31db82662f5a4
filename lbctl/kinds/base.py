"""What lbctl needs to know about one brand of load balancer.

A kind turns the generic lifecycle (stage → validate → swap → reload → confirm) into
the LB's own commands, and does all I/O through the target's transport. Contract:

- `validate(transport, staged)`: run the LB's native check on a staged file on the LB
  host; raise `ValidationFailed` carrying the LB's own messages. Never touches the live file.
- `reload_marker(transport)`: a snapshot of the LB's process state taken before a reload.
- `reload(transport)`: ask the running LB to load the live file.
- `confirm_reload(transport, marker)`: wait until the reload took (new worker, new
  generation) or raise `ReloadFailed` if the LB kept its old config.
- `still_running(transport, marker)`: True when the LB has not reloaded at all since
  `marker` (a reload command that did nothing): it still runs what it ran before the swap.
- `check_endpoints(transport)`: before anything changes, test that the sockets or API the
  target's settings name answer as they should; a wrong one is a `ConfigError` naming the key.
- `traffic_snapshot(transport)`: per-server counters from the LB's own view of traffic.
- `prepare(content)` / `canonical(content)`: what is pushed for a store file, and the form
  in which a running config and the store's are compared.
- `include_patterns(content)`: the relative paths (globs allowed) a config includes, for a
  kind whose configs span several files (`lbctl.store.bundle` deploys the store's ones with it).
- `config_origin(transport)`: the config file(s) the running LB was started with, or why
  that cannot be known (`lbctl.kinds.conformance`).
- `conformance(transport, deployed)`: whether the LB's running state is `deployed`'s.
- `validate_argv` / `reload_argv`: a target's `validate` / `reload` strings are shell
  commands, run by `/bin/sh -c` on the LB host with their placeholders quoted
  (`lbctl.shell`); the kind's defaults are plain argument lists.
- `shown_names(text, staged)`: the LB's messages with the staged and live file names
  replaced by the store's (`configs/edge/haproxy.cfg:12`), so an error points at the line to fix.
"""

from __future__ import annotations

import posixpath
import shlex
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from lbctl.config import Target
from lbctl.errors import ConfigError, ValidationFailed
from lbctl.shell import shell_argv, values_for
from lbctl.transports.base import Transport

if TYPE_CHECKING:  # types only: kinds produce counters and checks consume them, neither imports the other at run time
    from lbctl.checks.counters import Snapshot
    from lbctl.kinds.conformance import Conformance, Origin
    from lbctl.store.bundle import Bundle

STAGE_MARK = ".lbctl-stage-"  # in the name of a staged file, or of a staged tree's directory


class ReloadFailed(Exception):
    """The LB did not take the new config (it still runs the old one, or none)."""


class ReloadNotConfirmed(ReloadFailed):
    """The reload command ran, but the LB shows no sign of a reload: it runs what it ran before."""


class Kind(ABC):
    name: ClassVar[str]
    default_validate: ClassVar[tuple[str, ...]]
    # A kind whose traffic readings are lbctl's own probes (Caddy) counts them in `probes_sent`;
    # the balance check then sends no top-up probes of its own.
    probes_itself: ClassVar[bool] = False
    # A kind whose configs may `include` other files: its targets deploy a bundle (`lbctl.store.bundle`).
    follows_includes: ClassVar[bool] = False
    probes_sent: int = 0
    # What `conformance` imports, loaded in the background while the LB validates.
    conformance_modules: ClassVar[tuple[str, ...]] = ()
    # Lines of a failed validation's output that say nothing about the config (version banners).
    validation_noise: ClassVar[tuple[str, ...]] = ()

    def __init__(self, target: Target) -> None:
        self.target = target

    def default_validate_argv(self, path: str) -> list[str]:
        return [arg.replace("{path}", path) for arg in self.default_validate]

    def validate_argv(self, path: str) -> list[str]:
        if self.target.validate_command:
            key = f"targets.{self.target.name}.validate"
            return shell_argv(self.target.validate_command, values_for(self.target, path=path), key=key)
        return self.default_validate_argv(path)

    def validate_shown(self) -> str:
        """The validate command as the user knows it (for messages)."""
        return self.target.validate_command or " ".join(self.default_validate)

    def validator_binary(self) -> str:
        """The program the validate command runs first (to tell whether it is installed here)."""
        if not self.target.validate_command:
            return self.default_validate[0]
        words = shlex.split(self.target.validate_command)
        while words and "=" in words[0] and not words[0].startswith("="):  # VAR=value assignments
            words.pop(0)
        return words[0] if words else "sh"

    def reload_argv(self) -> list[str] | None:
        if not self.target.reload:
            return None
        return shell_argv(self.target.reload, values_for(self.target), key=f"targets.{self.target.name}.reload")

    def shown_names(self, text: str, staged: str | None = None) -> str:
        """`text` with the staged (and live) file names replaced by the store's.

        A staged tree's directory (or `lbctl check`'s temp dir) mirrors the source's
        directory, so every name under it maps to the store file at the same place.
        """
        source = self.target.source
        if staged:
            text = text.replace(staged, source)
            if STAGE_MARK not in posixpath.basename(staged):
                source_dir = posixpath.dirname(source)
                text = text.replace(posixpath.dirname(staged) + "/", source_dir + "/" if source_dir else "")
        live = self.target.path
        if live and self.target.transport != "http":
            text = text.replace(live, source)
        return text

    def validate(self, transport: Transport, staged: str) -> str:
        """Native validation of `staged`; returns the LB's output, raises `ValidationFailed`."""
        argv = self.validate_argv(staged)
        result = transport.run(argv, timeout=60)
        if result.code == 127:
            # The environment, not the candidate: nothing is marked bad for it.
            raise ConfigError(
                f"cannot validate on {transport.where}: {self.validator_binary()} not found"
                + (f" ({result.output.strip()[:200]})" if result.output.strip() else ""),
                hint=f"install {self.name} there, or set targets.{self.target.name}.validate",
            )
        output = self.shown_names(result.output, staged)
        if result.code != 0:
            said = [line for line in output.splitlines() if not any(n in line for n in self.validation_noise)]
            output = "\n".join(said)
            raise ValidationFailed(
                f"{self.name} rejected the candidate config (`{self.validate_shown()}` exited {result.code});"
                " nothing was changed on the LB",
                details=output or "(the validator printed nothing)",
            )
        return output

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

    def check_endpoints(self, transport: Transport) -> None:
        """Test the sockets / API the target names before anything changes (`ConfigError` if wrong)."""

    def endpoint_requests(self) -> tuple[tuple[str, str], ...]:
        """The (socket, line) requests `check_endpoints` sends, for the transport to read ahead."""
        return ()

    def still_running(self, transport: Transport, marker: object) -> bool:
        """True when the LB has not reloaded since `marker` was taken (False when it cannot tell)."""
        return False

    @abstractmethod
    def reload_marker(self, transport: Transport) -> object: ...

    @abstractmethod
    def reload(self, transport: Transport) -> None: ...

    @abstractmethod
    def confirm_reload(self, transport: Transport, marker: object) -> str:
        """Block until the reload took; returns a one-line detail for the record."""

    def config_origin(self, transport: Transport) -> Origin:
        """The file(s) the running LB reads (its master's command line), or why that is unknown."""
        from lbctl.kinds.conformance import origin_unknown

        return origin_unknown(f"lbctl cannot ask a running {self.name} which file it reads")

    def conformance(self, transport: Transport, deployed: Bundle) -> Conformance:
        """Whether what the LB runs is `deployed` (as pushed); never raises for what cannot be known."""
        from lbctl.kinds.conformance import unknown

        return unknown(f"lbctl cannot read a running {self.name}'s state")
