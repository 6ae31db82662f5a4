"""`lbctl.toml`'s settings: frozen stdlib dataclasses whose string annotations carry pydantic's constraints.

The annotations (`Annotated[float, Field(gt=0)]`) are only read by pydantic, which
`lbctl.config.loader` imports when a `lbctl.toml` must be validated; the cached path
(`lbctl.config.cache`) builds these objects without it.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeVar

from lbctl import checks, kinds, transports
from lbctl.checks.settings import CommandCheck
from lbctl.kinds.settings import HaproxySettings, NginxSettings
from lbctl.registry import SETTINGS_CONFIG
from lbctl.shell import missing_placeholders, shell_syntax, values_for
from lbctl.transports.settings import HttpSettings, SshSettings

if TYPE_CHECKING:  # resolved by pydantic at validation time (see `lbctl.config.loader`)
    from pydantic import AfterValidator, BeforeValidator, Field

CONFIG_NAME = "lbctl.toml"
# The names come from the registries (importing them imports no plugin): they are the one list.
KINDS = tuple(kinds.REGISTRY)
TRANSPORTS = tuple(transports.REGISTRY)
CHECKS = tuple(checks.REGISTRY)
if TYPE_CHECKING:
    from lbctl.checks.settings import CheckSettings

    KindName = str
    TransportName = str
else:  # what pydantic validates: exactly the registered names
    KindName = Literal[KINDS]
    TransportName = Literal[TRANSPORTS]
    CheckSettings = functools.reduce(operator.or_, checks.SETTINGS.values())  # registered types' settings
TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_V = TypeVar("_V")
_D = TypeVar("_D")
_STRICT = SETTINGS_CONFIG


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
    from lbctl.store.gitio import GitError, split_path

    try:
        if value.startswith("/"):
            raise GitError(value)
        return "/".join(split_path(value))
    except GitError:
        raise ValueError("must be a path inside the store, relative to lbctl.toml") from None


Check = CheckSettings  # one check's settings, of the type its `type` names


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
    checks: list[Annotated[CheckSettings, Field(discriminator="type")]] | None = None
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
class TargetBase:
    """What every target has: its name, what LB it is, where its config is kept and goes."""

    name: str
    kind: KindName
    source: Annotated[str, AfterValidator(_relative_source)]
    transport: TransportName = "local"
    path: str | None = None


@dataclass(frozen=True)
class Target(HaproxySettings, NginxSettings, HttpSettings, SshSettings, TargetBase):
    """One load balancer: a `[targets.NAME]` table.

    The table is flat; its keys are those of `TargetBase`, then each plugin's settings
    (`SshSettings`, `HttpSettings` next to the transports, `NginxSettings`, `HaproxySettings`
    next to the kinds; the bases are listed last-first so the fields come in this order), then these.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT
    # the kind's commands, as written for this LB; {path} is replaced by the file being validated
    validate_command: Annotated[str | None, Field(alias="validate"), AfterValidator(shell_syntax)] = None
    reload: Annotated[str | None, AfterValidator(shell_syntax)] = None
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
    checks: list[Annotated[CheckSettings, Field(discriminator="type")]] = field(default_factory=list)
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
    """`[store]`: the git remote a team shares the store through (see `lbctl.store.sync`)."""

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


def _default(value: _V | None, fallback: _V) -> _V:
    return fallback if value is None else value


def _layered(cls: type[_D], *layers: _D | None) -> _D:
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            merged.update({k: v for k, v in as_dict(layer).items() if v is not None})
    return cls(**merged)
