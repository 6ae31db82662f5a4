"""`lbctl.toml`: the store's description of its targets, validated with pydantic.

Every error names the key, the file and, where the TOML text shows it, the line.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lbctl.errors import ConfigError

CONFIG_NAME = "lbctl.toml"
KINDS = ("haproxy", "nginx", "caddy")
TRANSPORTS = ("local", "ssh", "http")
TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_V = TypeVar("_V")
_M = TypeVar("_M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HttpCheck(_Strict):
    """Probe a URL through the load balancer."""

    type: Literal["http"]
    url: str
    expect_status: int = 200
    timeout: float = Field(default=2.0, gt=0)
    probes: int = Field(default=3, ge=1, le=100)
    max_latency_ms: float | None = Field(default=None, gt=0)
    min_success_ratio: float = Field(default=1.0, ge=0, le=1)


class TcpCheck(_Strict):
    """Open a TCP connection to an address through (or on) the load balancer."""

    type: Literal["tcp"]
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    timeout: float = Field(default=2.0, gt=0)


class CommandCheck(_Strict):
    """Run a command on the LB host through the transport; exit 0 means healthy."""

    type: Literal["command"]
    argv: list[str] = Field(min_length=1)
    timeout: float = Field(default=10.0, gt=0)


class BalanceCheck(_Strict):
    """How traffic spreads over each backend's servers, from the LB's own counters."""

    type: Literal["balance"]
    max_share: float = Field(default=0.6, gt=0, le=1)  # no server above this share of its backend
    backends: list[str] | None = None  # judge only these (default: every backend with servers)
    min_requests: int = Field(default=30, ge=1)  # below this many new sessions, lbctl sends its own probes
    probe_url: str | None = None  # where lbctl's probes go (default: the target's first http check)
    max_probes: int = Field(default=200, ge=0, le=5000)  # lbctl's own probes per window, at most
    max_5xx_ratio: float = Field(default=0.05, ge=0, le=1)
    overload_ratio: float = Field(default=0.9, gt=0, le=1)  # sessions/maxconn at or above this = overloaded


Check = Annotated[HttpCheck | TcpCheck | CommandCheck | BalanceCheck, Field(discriminator="type")]


class Policy(_Strict):
    """Rules a candidate config must follow (lint at the plan stage and in `lbctl check`)."""

    max_share: float | None = Field(default=None, gt=0, le=1)  # no server above this expected share
    min_active_servers: int | None = Field(default=None, ge=0)  # per backend/upstream
    require_health_checks: bool | None = None  # every server has `check` (HAProxy) / max_fails (nginx)
    forbid_directives: list[str] | None = None  # e.g. ["stats admin", "option dontlog-normal"]


class Safety(_Strict):
    """Blast-radius thresholds: a bigger change is refused (exit 4) unless --force."""

    max_servers_removed: float | None = Field(default=None, ge=0, le=1)  # share removed, disabled or drained
    max_traffic_moved: float | None = Field(default=None, ge=0, le=1)  # share of a pool's traffic moving server
    allow_empty_backend: bool | None = None


class Group(_Strict):
    policy: Policy = Field(default_factory=Policy)
    safety: Safety = Field(default_factory=Safety)


class Defaults(_Strict):
    verify_seconds: float = Field(default=10.0, ge=0)
    check_interval: float = Field(default=0.5, gt=0)
    retries: int = Field(default=3, ge=0, le=20)
    connect_timeout: float = Field(default=10.0, gt=0)


class Target(_Strict):
    """One load balancer."""

    name: str
    kind: Literal["haproxy", "nginx", "caddy"]
    transport: Literal["local", "ssh", "http"] = "local"
    source: str
    path: str | None = None
    # ssh
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None
    proxy_jump: str | None = None  # `[user@]host[:port][,...]` as OpenSSH's ProxyJump
    # http (Caddy admin API)
    api: str | None = None
    # nginx: the `-p` prefix nginx runs with (relative paths in its config resolve against it),
    # and the access log the balance check counts ($upstream_addr), if not the config's first such log
    prefix: str | None = None
    access_log: str | None = None
    # nginx: deploy the store files the config includes with it (a tree); false = the main file alone
    follow_includes: bool = True
    # kind-specific commands and sockets; {path} is replaced by the file being validated
    validate_command: str | None = Field(default=None, alias="validate")
    reload: str | None = None
    master_socket: str | None = None
    stats_socket: str | None = None
    environment: str | None = None
    group: str | None = None
    verify_seconds: float = Field(default=10.0, ge=0)
    check_interval: float = Field(default=0.5, gt=0)
    retries: int = Field(default=3, ge=0, le=20)
    connect_timeout: float = Field(default=10.0, gt=0)
    checks: list[Check] = Field(default_factory=list)
    policy: Policy = Field(default_factory=Policy)
    safety: Safety = Field(default_factory=Safety)

    @field_validator("validate_command", "reload")
    @classmethod
    def _splits_like_a_shell(cls, value: str | None) -> str | None:
        import shlex

        if value is not None:
            try:
                shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot be split into arguments ({exc}): check its quotes") from None
        return value

    @field_validator("source")
    @classmethod
    def _relative_source(cls, value: str) -> str:
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError("must be a path inside the store, relative to lbctl.toml")
        return value

    @model_validator(mode="after")
    def _transport_needs(self) -> Target:
        if self.transport in ("local", "ssh") and not self.path:
            raise ValueError(f"transport {self.transport!r} needs `path` (where the config lives on the LB)")
        if self.transport == "ssh" and not self.host:
            raise ValueError("transport 'ssh' needs `host`")
        if self.transport == "http" and not self.api:
            raise ValueError("transport 'http' needs `api` (e.g. http://127.0.0.1:2019)")
        if self.kind == "haproxy" and self.transport != "http" and not (self.reload or self.master_socket):
            raise ValueError("a haproxy target needs `master_socket` (master CLI) or a `reload` command")
        return self


class StoreConfig(_Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    policy: Policy = Field(default_factory=Policy)
    safety: Safety = Field(default_factory=Safety)
    groups: dict[str, Group] = Field(default_factory=dict)
    targets: dict[str, Target] = Field(default_factory=dict)

    def policy_for(self, target: Target) -> Policy:
        """Store-wide policy, then the target's group's, then the target's own (each key overrides)."""
        group = self.groups.get(target.group or "")
        return _layered(Policy, self.policy, group.policy if group else None, target.policy)

    def safety_for(self, target: Target) -> Safety:
        group = self.groups.get(target.group or "")
        merged = _layered(Safety, self.safety, group.safety if group else None, target.safety)
        return Safety(
            max_servers_removed=_default(merged.max_servers_removed, 0.34),
            max_traffic_moved=_default(merged.max_traffic_moved, 0.5),
            allow_empty_backend=_default(merged.allow_empty_backend, False),
        )


SAFE_DEFAULTS = "max_servers_removed = 0.34, max_traffic_moved = 0.5, allow_empty_backend = false"


def _default(value: _V | None, fallback: _V) -> _V:
    return fallback if value is None else value


def _layered(cls: type[_M], *layers: _M | None) -> _M:
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            merged.update({k: v for k, v in layer.model_dump().items() if v is not None})
    return cls(**merged)


def load(path: Path) -> StoreConfig:
    """Read and validate `lbctl.toml`; `ConfigError` (exit 2) names key, file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no lbctl.toml here", file=str(path), hint="run `lbctl init` to create a store") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", file=str(path)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        raise ConfigError(f"not valid TOML: {exc}", file=str(path), line=line) from None
    return parse(raw, text=text, path=path)


def parse(raw: dict[str, Any], *, text: str, path: Path) -> StoreConfig:
    """Validate already-decoded TOML: merge `[defaults]` into each target, then check files exist."""
    data = dict(raw)
    defaults_raw = data.get("defaults", {})
    targets_raw = data.get("targets", {})
    merged: dict[str, Any] = {}
    if isinstance(targets_raw, dict) and isinstance(defaults_raw, dict):
        for name, body in targets_raw.items():
            if isinstance(body, dict):
                known_defaults = {k: v for k, v in defaults_raw.items() if k in Defaults.model_fields}
                merged[name] = {**known_defaults, **body, "name": name}
            else:
                merged[name] = body
        data["targets"] = merged
    try:
        config = StoreConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, text=text, path=path) from None
    root = path.parent
    for name, target in config.targets.items():
        if not TARGET_NAME.match(name):
            raise ConfigError(
                f"target name {name!r} may only hold letters, digits, '.', '_' and '-'",
                file=str(path),
                line=_locate(text, ("targets", name)),
            )
        if not (root / target.source).is_file():
            raise ConfigError(
                f"targets.{name}.source: file {target.source!r} does not exist in the store",
                file=str(path),
                line=_locate(text, ("targets", name, "source")),
                hint=f"create {target.source} or fix the path (relative to lbctl.toml)",
            )
    return config


def _config_error(exc: ValidationError, *, text: str, path: Path) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    # pydantic puts the discriminated-union tag (e.g. "http") into the location: drop it.
    shown = tuple(p for p in loc if p not in ("http", "tcp", "command", "balance"))
    key = ".".join(shown) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        message = f"unknown key `{key}`"
        hint = "check the spelling against docs/reference.md"
    elif kind == "missing":
        message = f"missing key `{key}`"
        hint = None
    elif kind in ("literal_error", "union_tag_invalid"):
        message = f"`{key}`: {err['msg']}"
        hint = f"kinds: {', '.join(KINDS)}; transports: {', '.join(TRANSPORTS)}"
    else:
        message = f"`{key}`: {err['msg']}"
        hint = None
    return ConfigError(message, file=str(path), line=_locate(text, shown), hint=hint)


def _locate(text: str, loc: Sequence[str]) -> int | None:
    """Best-effort line of a key path such as ("targets", "edge1", "kind") in TOML text.

    Understands `[a.b]` / `[[a.b.c]]` headers and `key = value` lines, which is how
    lbctl.toml files are written; returns the header's line when the key itself is absent.
    """
    parts = [p for p in loc if not p.isdigit()]
    best: int | None = None
    table: list[str] = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", line)
        if header:
            table = [p.strip().strip('"') for p in header.group(1).split(".")]
            if table == parts[: len(table)] and table:
                best = number if best is None or len(table) >= len(parts) - 1 else best
            continue
        key = re.match(r'^"?([A-Za-z0-9_.-]+)"?\s*=', line)
        if key and table + key.group(1).split(".") == parts:
            return number
    return best


def _toml_error_line(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None
