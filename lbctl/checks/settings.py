"""Each check type's settings (a `[[targets.X.checks]]` table), next to the checks that read them.

Frozen stdlib dataclasses whose string annotations carry pydantic's constraints, as in
`lbctl.config.schema`, which collects them through `lbctl.checks.REGISTRY`. This module
imports no check (and no pydantic): `lbctl.toml`'s cached settings are built from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from lbctl.registry import SETTINGS_CONFIG
from lbctl.shell import shell_syntax

if TYPE_CHECKING:  # resolved by pydantic at validation time (see `lbctl.config.loader`)
    from pydantic import AfterValidator, Field


@dataclass(frozen=True)
class HttpCheck:
    """Probe a URL through the load balancer."""

    __pydantic_config__: ClassVar[dict[str, Any]] = SETTINGS_CONFIG
    type: Literal["http"]
    url: str
    expect_status: int = 200
    timeout: Annotated[float, Field(gt=0)] = 2.0
    probes: Annotated[int, Field(ge=1, le=100)] = 3
    max_latency_ms: Annotated[float | None, Field(gt=0)] = None
    min_success_ratio: Annotated[float, Field(ge=0, le=1)] = 1.0


@dataclass(frozen=True)
class TcpCheck:
    """Open a TCP connection to an address through (or on) the load balancer."""

    __pydantic_config__: ClassVar[dict[str, Any]] = SETTINGS_CONFIG
    type: Literal["tcp"]
    port: Annotated[int, Field(ge=1, le=65535)]
    host: str = "127.0.0.1"
    timeout: Annotated[float, Field(gt=0)] = 2.0


@dataclass(frozen=True)
class CommandCheck:
    """Run a command on the LB host through the transport; exit 0 means healthy."""

    __pydantic_config__: ClassVar[dict[str, Any]] = SETTINGS_CONFIG
    type: Literal["command"]
    # `command` is shell syntax run by /bin/sh -c with placeholders (`lbctl.shell`); `argv` runs as listed.
    command: Annotated[str | None, AfterValidator(shell_syntax)] = None
    argv: Annotated[list[str] | None, Field(min_length=1)] = None
    timeout: Annotated[float, Field(gt=0)] = 10.0

    def __post_init__(self) -> None:
        if (self.command is None) == (self.argv is None):
            raise ValueError("a command check needs `command` (a shell command) or `argv` (a list), not both")


@dataclass(frozen=True)
class BalanceCheck:
    """How traffic spreads over each backend's servers, from the LB's own counters."""

    __pydantic_config__: ClassVar[dict[str, Any]] = SETTINGS_CONFIG
    type: Literal["balance"]
    max_share: Annotated[float, Field(gt=0, le=1)] = 0.6  # no server above this share of its backend
    backends: list[str] | None = None  # judge only these (default: every backend with servers)
    min_requests: Annotated[int, Field(ge=1)] = 30  # below this many new sessions, lbctl sends its own probes
    probe_url: str | None = None  # where lbctl's probes go (default: the target's first http check)
    max_probes: Annotated[int, Field(ge=0, le=5000)] = 200  # lbctl's own probes per window, at most
    max_5xx_ratio: Annotated[float, Field(ge=0, le=1)] = 0.05
    overload_ratio: Annotated[float, Field(gt=0, le=1)] = 0.9  # sessions/maxconn at or above this = overloaded


if TYPE_CHECKING:
    CheckSettings = HttpCheck | TcpCheck | CommandCheck | BalanceCheck  # for mypy; at run time: any of them
else:
    CheckSettings = object
