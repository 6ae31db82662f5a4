"""`lbctl.toml`: the store's description of its targets, validated with pydantic.

Every error names the key, the file and, where the TOML text shows it, the line.

The settings are frozen stdlib dataclasses; their string annotations carry pydantic's
constraints (`Annotated[float, Field(gt=0)]`), which only pydantic reads. pydantic itself
(~0.2 s of imports) is loaded only when a store's `lbctl.toml` changed since it was last
validated: the validated settings are kept in the user's cache, keyed by the file's bytes
and this module's source, so the on-call path (`rollback`, `status`) starts without it.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar

from lbctl.errors import ConfigError

if TYPE_CHECKING:  # resolved by pydantic at validation time (see `_validator`)
    from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter, ValidationError

CONFIG_NAME = "lbctl.toml"
KINDS = ("haproxy", "nginx", "caddy")
TRANSPORTS = ("local", "ssh", "http")
TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_V = TypeVar("_V")
_D = TypeVar("_D")
_STRICT: dict[str, Any] = {"extra": "forbid", "populate_by_name": True}


def _splits_like_a_shell(value: str | None) -> str | None:
    """A command run by `/bin/sh -c` (`lbctl.commands`): balanced quotes, placeholders left bare."""
    if value is not None:
        try:
            shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot be split into arguments ({exc}): check its quotes") from None
        from lbctl.commands import quoted_placeholder

        quoted = quoted_placeholder(value)
        if quoted:
            raise ValueError(
                f"writes {quoted} in quotes: lbctl quotes placeholders itself, so write {quoted[1:-1]} bare"
            )
    return value


def _request_path(value: str) -> str:
    if not value.startswith("/") or any(c in value for c in " \r\n"):
        raise ValueError("must be a request path starting with '/', without spaces")
    return value


def _ip_address(value: str | None) -> str | None:
    import ipaddress

    if value is not None:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
    return value


def _relative_source(value: str) -> str:
    """A store path, normalised as git names it (`./a//b.cfg` is `a/b.cfg`): gitio's one rule."""
    from lbctl.gitio import GitError, split_path

    try:
        if value.startswith("/"):
            raise GitError(value)
        return "/".join(split_path(value))
    except GitError:
        raise ValueError("must be a path inside the store, relative to lbctl.toml") from None


@dataclass(frozen=True)
class HttpCheck:
    """Probe a URL through the load balancer."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
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

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    type: Literal["tcp"]
    port: Annotated[int, Field(ge=1, le=65535)]
    host: str = "127.0.0.1"
    timeout: Annotated[float, Field(gt=0)] = 2.0


@dataclass(frozen=True)
class CommandCheck:
    """Run a command on the LB host through the transport; exit 0 means healthy."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    type: Literal["command"]
    # `command` is shell syntax run by /bin/sh -c with placeholders (`lbctl.commands`); `argv` runs as listed.
    command: Annotated[str | None, AfterValidator(_splits_like_a_shell)] = None
    argv: Annotated[list[str] | None, Field(min_length=1)] = None
    timeout: Annotated[float, Field(gt=0)] = 10.0

    def __post_init__(self) -> None:
        if (self.command is None) == (self.argv is None):
            raise ValueError("a command check needs `command` (a shell command) or `argv` (a list), not both")


@dataclass(frozen=True)
class BalanceCheck:
    """How traffic spreads over each backend's servers, from the LB's own counters."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    type: Literal["balance"]
    max_share: Annotated[float, Field(gt=0, le=1)] = 0.6  # no server above this share of its backend
    backends: list[str] | None = None  # judge only these (default: every backend with servers)
    min_requests: Annotated[int, Field(ge=1)] = 30  # below this many new sessions, lbctl sends its own probes
    probe_url: str | None = None  # where lbctl's probes go (default: the target's first http check)
    max_probes: Annotated[int, Field(ge=0, le=5000)] = 200  # lbctl's own probes per window, at most
    max_5xx_ratio: Annotated[float, Field(ge=0, le=1)] = 0.05
    overload_ratio: Annotated[float, Field(gt=0, le=1)] = 0.9  # sessions/maxconn at or above this = overloaded


Check = HttpCheck | TcpCheck | CommandCheck | BalanceCheck


@dataclass(frozen=True)
class Policy:
    """Rules a candidate config must follow (lint at the plan stage and in `lbctl check`)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    max_share: Annotated[float | None, Field(gt=0, le=1)] = None  # no server above this expected share
    min_active_servers: Annotated[int | None, Field(ge=0)] = None  # per backend/upstream
    require_health_checks: bool | None = None  # every server has `check` (HAProxy) / max_fails (nginx)
    forbid_directives: list[str] | None = None  # e.g. ["stats admin", "option dontlog-normal"]


@dataclass(frozen=True)
class Safety:
    """Blast-radius thresholds: a bigger change is refused (exit 4) unless --force."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    max_servers_removed: Annotated[float | None, Field(ge=0, le=1)] = None  # share removed, disabled or drained
    max_traffic_moved: Annotated[float | None, Field(ge=0, le=1)] = None  # share of a pool's traffic moving
    allow_empty_backend: bool | None = None


@dataclass(frozen=True)
class Route:
    """A routing case: a request, and where the config must send it (`lbctl test`)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    path: Annotated[str, AfterValidator(_request_path)]
    method: Annotated[str, Field(pattern=r"^[A-Za-z]+$")] = "GET"
    host: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    source: Annotated[str | None, AfterValidator(_ip_address)] = None  # the client's address
    port: Annotated[int | None, Field(ge=1, le=65535)] = None  # the listener it arrives on (default: the first)
    name: str | None = None  # how reports name the case (default: METHOD host path)
    # what must happen: at least one of these
    backend: str | None = None  # HAProxy backend, nginx upstream (or proxy_pass address), Caddy upstream set
    server: str | None = None
    status: Annotated[int | None, Field(ge=100, le=599)] = None

    def __post_init__(self) -> None:
        if self.backend is None and self.server is None and self.status is None:
            raise ValueError("a route needs an expectation: `backend`, `server` or `status`")

    @property
    def label(self) -> str:
        return self.name or f"{self.method.upper()} {self.host or ''}{self.path}"


def rollout_batch(value: str) -> str:
    """A rollout batch: how many members have the change once it ends, "25%" of them or a count ("5")."""
    text = str(value).strip()
    number = text[:-1] if text.endswith("%") else text
    if not number.isdigit() or int(number) < 1 or (text.endswith("%") and int(number) > 100):
        raise ValueError(f'{value!r} is not a batch: write a share such as "25%" or a count such as "5"')
    return text


@dataclass(frozen=True)
class Rollout:
    """`[groups.NAME.rollout]`: how `deploy @NAME` spreads a change over the group's members (`lbctl.fleet`)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    canary: Annotated[int, Field(ge=0)] = 1  # members changed first, alone, then baked
    canary_bake: Annotated[float, BeforeValidator(duration), Field(ge=0)] = 30.0
    batches: list[Annotated[str, AfterValidator(rollout_batch)]] = field(default_factory=lambda: ["25%", "100%"])
    parallel: Annotated[int, Field(ge=1, le=200)] = 10
    max_failures: Annotated[int, Field(ge=0)] = 0
    on_failure: Literal["rollback", "halt"] = "rollback"
    confirm_within: Annotated[float, BeforeValidator(duration), Field(ge=0)] = 300.0


@dataclass(frozen=True)
class MemberOverride:
    """`[groups.NAME.members.TARGET]`: what differs for one member of a group (None: the target's own)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    checks: list[Annotated[HttpCheck | TcpCheck | CommandCheck | BalanceCheck, Field(discriminator="type")]] | None = (
        None
    )
    path: str | None = None
    master_socket: str | None = None
    stats_socket: str | None = None
    verify_seconds: Annotated[float | None, Field(ge=0)] = None
    check_interval: Annotated[float | None, Field(gt=0)] = None


@dataclass(frozen=True)
class Group:
    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    policy: Policy = field(default_factory=Policy)
    safety: Safety = field(default_factory=Safety)
    routes: list[Route] = field(default_factory=list)  # apply to every member (targets with `group` = this)
    # `deploy @NAME`: its members are these target names or globs, and the targets with `group` = NAME
    targets: list[str] = field(default_factory=list)
    members: dict[str, MemberOverride] = field(default_factory=dict)
    rollout: Rollout = field(default_factory=Rollout)


@dataclass(frozen=True)
class Defaults:
    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    verify_seconds: Annotated[float, Field(ge=0)] = 10.0
    check_interval: Annotated[float, Field(gt=0)] = 0.5
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    connect_timeout: Annotated[float, Field(gt=0)] = 10.0


@dataclass(frozen=True)
class Target:
    """One load balancer."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    name: str
    kind: Literal["haproxy", "nginx", "caddy"]
    source: Annotated[str, AfterValidator(_relative_source)]
    transport: Literal["local", "ssh", "http"] = "local"
    path: str | None = None
    # ssh
    host: str | None = None
    port: Annotated[int | None, Field(ge=1, le=65535)] = None
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
    validate_command: Annotated[str | None, Field(alias="validate"), AfterValidator(_splits_like_a_shell)] = None
    reload: Annotated[str | None, AfterValidator(_splits_like_a_shell)] = None
    master_socket: str | None = None
    stats_socket: str | None = None
    # false: lbctl does not confirm reloads, and a deploy's verdict is `unconfirmed`, never `good`
    confirm_reload: bool = True
    # commit-confirm: a watchdog on the LB host reverts a change unless `lbctl confirm` within this ("0": off)
    confirm_within: Annotated[float, BeforeValidator(duration), Field(ge=0)] = 0.0
    environment: str | None = None
    group: str | None = None
    verify_seconds: Annotated[float, Field(ge=0)] = 10.0
    check_interval: Annotated[float, Field(gt=0)] = 0.5
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    connect_timeout: Annotated[float, Field(gt=0)] = 10.0
    checks: list[Annotated[HttpCheck | TcpCheck | CommandCheck | BalanceCheck, Field(discriminator="type")]] = field(
        default_factory=list
    )
    policy: Policy = field(default_factory=Policy)
    safety: Safety = field(default_factory=Safety)
    routes: list[Route] = field(default_factory=list)  # routing cases (`lbctl test`, and a gate of check/deploy)
    replay_log: str | None = None  # an access log on the LB whose last lines `check` and deploy replay
    replay_lines: Annotated[int, Field(ge=1, le=1_000_000)] = 2000

    def __post_init__(self) -> None:
        if self.transport in ("local", "ssh") and not self.path:
            raise ValueError(f"transport {self.transport!r} needs `path` (where the config lives on the LB)")
        if self.transport == "ssh" and not self.host:
            raise ValueError("transport 'ssh' needs `host`")
        if self.transport == "http" and not self.api:
            raise ValueError("transport 'http' needs `api` (e.g. http://127.0.0.1:2019)")
        if self.kind == "haproxy" and self.transport != "http" and not (self.reload or self.master_socket):
            raise ValueError("a haproxy target needs `master_socket` (master CLI) or a `reload` command")
        self._check_placeholders()
        if self.kind == "haproxy" and self.confirm_reload and not (self.master_socket or self.stats_socket):
            raise ValueError(
                "lbctl cannot confirm this haproxy target's reloads: set `master_socket` (the -S path, "
                "`show proc`) or `stats_socket` (the runtime API, `show info`), or set confirm_reload = false "
                "and its deploys are recorded `unconfirmed`, never `good`"
            )

    def _check_placeholders(self) -> None:
        """Every placeholder a command uses has a value on this target (found now, not mid-deploy)."""
        from lbctl.commands import missing_placeholders, values_for

        values = values_for(self)
        commands = [("validate", self.validate_command), ("reload", self.reload)]
        commands += [("checks", c.command) for c in self.checks if isinstance(c, CommandCheck)]
        for key, command in commands:
            staged = {"path": "(the staged file)"} if key == "validate" else {}  # validate's {path}: always one
            missing = missing_placeholders(command or "", {**values, **staged})
            if missing:
                raise ValueError(f"`{key}` uses {{{missing[0]}}}, but the target has no `{missing[0]}`")


# -- [watch] and [[notify]] (lbctl watch, notifications) -------------------------------------
NOTIFY_EVENTS = ("good", "failed", "rolled-back", "restore-failed", "pending-confirm", "watch-alert")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def duration(value: Any) -> float:
    """Seconds from `"10s"`, `"2m"`, `"1h"`, `"500ms"` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError('must be a duration such as "10s", "2m" or a number of seconds')
    if isinstance(value, int | float):
        return float(value)
    found = _DURATION.match(str(value))
    if not found:
        raise ValueError(f'{value!r} is not a duration: write e.g. "10s", "2m", "1h" or "500ms"')
    return float(found.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[found.group(2) or "s"]


@dataclass(frozen=True)
class WatchSettings:
    """`[watch]`: how `lbctl watch` judges traffic between changes, and where it reports."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    interval: Annotated[float, BeforeValidator(duration), Field(gt=0)] = 10.0
    window: Annotated[float, BeforeValidator(duration), Field(gt=0)] = 120.0
    for_: Annotated[float, BeforeValidator(duration), Field(ge=0, alias="for")] = 60.0
    min_requests: Annotated[int, Field(ge=1)] = 30
    share_deviation: Annotated[float, Field(gt=0)] = 0.25  # |actual - intended| / intended
    max_share: Annotated[float | None, Field(gt=0, le=1)] = None  # default: the balance check's
    max_5xx_ratio: Annotated[float | None, Field(ge=0, le=1)] = None  # default: the balance check's
    listen: str | None = None  # "127.0.0.1:9464": serve /metrics there
    alertmanager: str | None = None  # "http://127.0.0.1:9093": post alerts to its v2 API
    auto_rollback: bool = False  # roll a recent deploy back (`rollback --to previous`) when it alerts
    auto_rollback_max_age: Annotated[float, BeforeValidator(duration), Field(ge=0)] = 1800.0


@dataclass(frozen=True)
class NotifySink:
    """`[[notify]]`: where deploy events are announced. Addresses that are secrets come from `url_env`."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    type: Literal["webhook", "slack", "alertmanager", "grafana"]
    url: str | None = None
    url_env: str | None = None
    token_env: str | None = None  # names the variable holding a bearer token (Grafana's service account)
    on: list[str] = field(default_factory=lambda: list(NOTIFY_EVENTS))
    targets: list[str] = field(default_factory=lambda: ["*"])
    timeout: Annotated[float, BeforeValidator(duration), Field(gt=0, le=30)] = 2.0

    def __post_init__(self) -> None:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of `url` or `url_env` (an environment variable holding the address)")
        for key, name in (("url_env", self.url_env), ("token_env", self.token_env)):
            if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"`{key}` names an environment variable (e.g. LBCTL_GRAFANA_TOKEN), not a value")
        unknown = sorted(set(self.on) - set(NOTIFY_EVENTS))
        if unknown:
            raise ValueError(f"`on`: unknown event(s) {', '.join(unknown)}; known: {', '.join(NOTIFY_EVENTS)}")


@dataclass(frozen=True)
class StoreSync:
    """`[store]`: the git remote a team shares the store through (see `lbctl.sync`)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    remote: str | None = None  # default: the branch's upstream remote, when there is one
    branch: str | None = None  # the remote's branch (default: the upstream's, else the local branch's name)
    sync: Literal["auto", "off"] = "auto"
    timeout: Annotated[float, Field(gt=0, le=60)] = 3.0  # seconds a fetch may take before lbctl goes on offline


@dataclass(frozen=True)
class StoreConfig:
    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    store: StoreSync = field(default_factory=StoreSync)
    defaults: Defaults = field(default_factory=Defaults)
    policy: Policy = field(default_factory=Policy)
    safety: Safety = field(default_factory=Safety)
    groups: dict[str, Group] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    watch: WatchSettings = field(default_factory=WatchSettings)
    notify: list[NotifySink] = field(default_factory=list)

    def policy_for(self, target: Target) -> Policy:
        """Store-wide policy, then the target's group's, then the target's own (each key overrides)."""
        group = self.groups.get(target.group or "")
        return _layered(Policy, self.policy, group.policy if group else None, target.policy)

    def routes_for(self, target: Target) -> tuple[Route, ...]:
        """The target's group's routing cases, then its own."""
        group = self.groups.get(target.group or "")
        return (*(group.routes if group else ()), *target.routes)

    def safety_for(self, target: Target) -> Safety:
        group = self.groups.get(target.group or "")
        merged = _layered(Safety, self.safety, group.safety if group else None, target.safety)
        return Safety(
            max_servers_removed=_default(merged.max_servers_removed, 0.34),
            max_traffic_moved=_default(merged.max_traffic_moved, 0.5),
            allow_empty_backend=_default(merged.allow_empty_backend, False),
        )


def as_dict(settings: Any) -> dict[str, Any]:
    """A settings object as plain data (for JSON output and for layering)."""
    return dataclasses.asdict(settings)


SAFE_DEFAULTS = "max_servers_removed = 0.34, max_traffic_moved = 0.5, allow_empty_backend = false"


def _default(value: _V | None, fallback: _V) -> _V:
    return fallback if value is None else value


def _layered(cls: type[_D], *layers: _D | None) -> _D:
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            merged.update({k: v for k, v in as_dict(layer).items() if v is not None})
    return cls(**merged)


def load(path: Path, *, require_sources: bool = True) -> StoreConfig:
    """Read and validate `lbctl.toml`; `ConfigError` (exit 2) names key, file and line.

    `require_sources=False` lets sources be missing (`lbctl pull` creates them).
    """
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError("no lbctl.toml here", file=str(path), hint="run `lbctl init` to create a store") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", file=str(path)) from None
    key = _cache_key(path, data)
    config = _cached(path, key)
    if config is None:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", file=str(path), line=_toml_error_line(str(exc))) from None
        config = _validate(raw, text=text, path=path)
        _remember(path, key, config)
    _check_names_and_sources(config, text=text, path=path, require_sources=require_sources)
    return config


def parse(raw: dict[str, Any], *, text: str, path: Path) -> StoreConfig:
    """Validate already-decoded TOML: merge `[defaults]` into each target, then check files exist."""
    config = _validate(raw, text=text, path=path)
    _check_names_and_sources(config, text=text, path=path)
    return config


def target_from(values: dict[str, Any]) -> Target:
    """One validated target from plain values (as a `[targets.NAME]` table plus `name`)."""
    from pydantic import TypeAdapter

    _validator()
    return TypeAdapter(Target).validate_python(values)


def _validator() -> TypeAdapter[StoreConfig]:
    """pydantic's validator for `StoreConfig`, built on first use.

    The dataclasses' string annotations name `Field` and `AfterValidator`; pydantic resolves
    them in this module's namespace, where they are put now rather than at import time.
    """
    global _VALIDATOR
    if _VALIDATOR is None:
        from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter

        globals().update(AfterValidator=AfterValidator, BeforeValidator=BeforeValidator, Field=Field)
        _VALIDATOR = TypeAdapter(StoreConfig)
    return _VALIDATOR


_VALIDATOR: TypeAdapter[StoreConfig] | None = None


def _validate(raw: dict[str, Any], *, text: str, path: Path) -> StoreConfig:
    from pydantic import ValidationError

    data = dict(raw)
    defaults_raw = data.get("defaults", {})
    targets_raw = data.get("targets", {})
    merged: dict[str, Any] = {}
    if isinstance(targets_raw, dict) and isinstance(defaults_raw, dict):
        known = {f.name for f in dataclasses.fields(Defaults)}
        for name, body in targets_raw.items():
            if isinstance(body, dict):
                known_defaults = {k: v for k, v in defaults_raw.items() if k in known}
                merged[name] = {**known_defaults, **body, "name": name}
            else:
                merged[name] = body
        data["targets"] = merged
    try:
        return _validator().validate_python(data)
    except ValidationError as exc:
        raise _config_error(exc, text=text, path=path) from None


def _check_names_and_sources(config: StoreConfig, *, text: str, path: Path, require_sources: bool = True) -> None:
    root = path.parent
    for name, group in config.groups.items():
        if group.targets or group.members:  # a fleet (`deploy @NAME`): every name resolves to a target
            from lbctl.errors import UsageError
            from lbctl.fleet.group import member_names

            try:
                member_names(config, name)
            except UsageError as exc:
                raise ConfigError(exc.message, file=str(path), line=_locate(text, ("groups", name))) from None
    for name, target in config.targets.items():
        if not TARGET_NAME.match(name):
            raise ConfigError(
                f"target name {name!r} may only hold letters, digits, '.', '_' and '-'",
                file=str(path),
                line=_locate(text, ("targets", name)),
            )
        if require_sources and not (root / target.source).is_file():
            raise ConfigError(
                f"targets.{name}.source: file {target.source!r} does not exist in the store",
                file=str(path),
                line=_locate(text, ("targets", name, "source")),
                hint=f"create {target.source}, record what the LB runs with `lbctl pull {name}`, "
                "or fix the path (relative to lbctl.toml)",
            )


# -- the cache of validated settings ---------------------------------------------------------
# One JSON file per store in the user's cache: the settings validated from the exact bytes of
# lbctl.toml by this exact source of this module. Any other bytes, or a changed lbctl, validate
# again. The settings name commands lbctl runs (`validate`, `reload`), so a cache file is used only
# when it and its directory belong to this user and nobody else may write them.


def _cache_file(path: Path) -> Path | None:
    import hashlib
    import os

    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lbctl" / "settings"
    except RuntimeError:  # no home directory (an arbitrary uid in a container): no cache
        return None
    return base / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24] + ".json")


def _cache_key(path: Path, data: bytes) -> str:
    import hashlib
    import sys

    digest = hashlib.sha256(data)
    digest.update(Path(__file__).read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def _cached(path: Path, key: str) -> StoreConfig | None:
    import json
    import os

    file = _cache_file(path)
    if file is None:
        return None
    try:
        for owned in (file, file.parent):
            st = owned.stat()
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return None
        stored = json.loads(file.read_bytes())
        return _settings(stored["settings"]) if stored.get("key") == key else None
    except Exception:  # missing, unreadable or from another version: validate again
        return None


def _remember(path: Path, key: str, config: StoreConfig) -> None:
    import json
    import os

    target = _cache_file(path)
    if target is None:
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = target.with_name(f"{target.name}.{os.getpid()}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"key": key, "settings": as_dict(config)}, f)
        os.replace(temp, target)
    except OSError:
        pass  # a read-only home only costs the next run a validation


def _settings(data: dict[str, Any]) -> StoreConfig:
    """Settings from `as_dict` output that pydantic validated before (no validation here)."""
    check_types: dict[str, type[Check]] = {
        "http": HttpCheck,
        "tcp": TcpCheck,
        "command": CommandCheck,
        "balance": BalanceCheck,
    }

    def target(values: dict[str, Any]) -> Target:
        return Target(
            **{
                **values,
                "checks": [check_types[c["type"]](**c) for c in values["checks"]],
                "policy": Policy(**values["policy"]),
                "safety": Safety(**values["safety"]),
                "routes": [Route(**r) for r in values.get("routes", [])],
            }
        )

    def group(values: dict[str, Any]) -> Group:
        members = {
            name: MemberOverride(
                **{
                    **m,
                    "checks": None if m["checks"] is None else [check_types[c["type"]](**c) for c in m["checks"]],
                }
            )
            for name, m in values.get("members", {}).items()
        }
        return Group(
            Policy(**values["policy"]),
            Safety(**values["safety"]),
            [Route(**r) for r in values.get("routes", [])],
            targets=list(values.get("targets", [])),
            members=members,
            rollout=Rollout(**values.get("rollout", {})),
        )

    return StoreConfig(
        store=StoreSync(**data["store"]),
        defaults=Defaults(**data["defaults"]),
        policy=Policy(**data["policy"]),
        safety=Safety(**data["safety"]),
        groups={k: group(g) for k, g in data["groups"].items()},
        targets={k: target(v) for k, v in data["targets"].items()},
        watch=WatchSettings(**data["watch"]),
        notify=[NotifySink(**n) for n in data["notify"]],
    )


def _config_error(exc: ValidationError, *, text: str, path: Path) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    # pydantic puts the discriminated-union tag (e.g. "http") into the location: drop it.
    shown = tuple(p for p in loc if p not in ("http", "tcp", "command", "balance"))
    key = ".".join(shown) or "(top level)"
    kind = err["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
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
