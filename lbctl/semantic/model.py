"""The structured, kind-neutral model every parser produces and the differ compares.

Values only: a `ConfigModel` is a tuple of `Section`s, each holding its settings
(order-insensitive), its servers (a set, keyed by name) and its rules (ordered
chains, evaluated in order by the LB). Source lines are kept for findings but are
declared `compare=False`, so two models that differ only in layout are equal.

Secrets never reach the model in clear: parsers pass them through `seal`
(lbctl/masking.py), which keeps them comparable within this process (a keyed
digest); every rendering shows them as `****` through `mask`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lbctl.masking import MASK as MASK
from lbctl.masking import hide
from lbctl.masking import seal as seal


def mask(text: str) -> str:
    """What every rendering shows of a string from a config: secrets as `****`."""
    return hide(text)


@dataclass(frozen=True, slots=True)
class Directive:
    """One configuration statement, as written (after unquoting), without servers and rules."""

    name: str
    args: tuple[str, ...] = ()
    line: int = field(default=0, compare=False)

    @property
    def text(self) -> str:
        return " ".join((self.name, *self.args))


@dataclass(frozen=True, slots=True)
class Setting:
    """An order-insensitive statement: `key` identifies it, `value` is the rest (may repeat)."""

    key: str
    value: str = ""
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Server:
    """A member of a pool, with the attributes that decide its share of traffic.

    `weight` is the effective weight (defaults applied). `options` holds every other
    option as sorted `(name, value)` pairs (`value` is "" for a flag), so option order
    and equivalent spellings do not matter.
    """

    name: str
    address: str
    port: str | None = None
    weight: int = 1
    backup: bool = False
    disabled: bool = False
    check: bool = False
    options: tuple[tuple[str, str], ...] = ()
    line: int = field(default=0, compare=False)

    @property
    def endpoint(self) -> str:
        if self.port is None:
            return self.address
        host = f"[{self.address}]" if ":" in self.address and not self.address.startswith("$") else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Rule:
    """A statement the LB evaluates in order within its `chain` (e.g. `http-request`, `use_backend`)."""

    chain: str
    text: str
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Route:
    """A reference from a section to a pool it sends traffic to (`use_backend x`, `proxy_pass http://x`)."""

    target: str
    via: str
    line: int = field(default=0, compare=False)
    must_exist: bool = True


@dataclass(frozen=True, slots=True)
class Section:
    """A block of configuration: `type` is kind-specific (`backend`, `upstream`, `location`, ...).

    `name` is unique per type within a model (parsers qualify nested blocks and number
    duplicates), so `(type, name)` identifies a section across two versions.
    `balance` is the effective load-balancing algorithm with its arguments, for pools;
    `backup_mode` says which backups take over when no active server is left: `all`
    of them by weight, or only the `first` (HAProxy without `option allbackups`).
    """

    type: str
    name: str
    directives: tuple[Directive, ...] = ()
    settings: tuple[Setting, ...] = ()
    servers: tuple[Server, ...] = ()
    rules: tuple[Rule, ...] = ()
    routes: tuple[Route, ...] = ()
    balance: str | None = None
    is_pool: bool = False
    backup_mode: str = "all"
    line: int = field(default=0, compare=False)

    @property
    def label(self) -> str:
        return f"{self.type} {self.name}" if self.name else self.type


@dataclass(frozen=True, slots=True)
class Finding:
    """Something worth a reviewer's attention: `severity` is `error`, `warning` or `info`."""

    severity: str
    code: str
    message: str
    section: str | None = None
    line: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": mask(self.message),
            "section": self.section,
            "line": self.line,
        }


@dataclass(frozen=True, slots=True)
class ConfigModel:
    """A parsed configuration of one `kind` (`haproxy`, `nginx`, `caddy`)."""

    kind: str
    filename: str
    sections: tuple[Section, ...]
    notes: tuple[Finding, ...] = field(default=(), compare=False)

    def section(self, type_: str, name: str) -> Section | None:
        for section in self.sections:
            if section.type == type_ and section.name == name:
                return section
        return None

    def pools(self) -> tuple[Section, ...]:
        return tuple(s for s in self.sections if s.is_pool)


def unique_name(name: str, taken: dict[tuple[str, str], int], type_: str) -> str:
    """Number the second and later sections of the same type and name: `web`, `web #2`, ..."""
    count = taken.get((type_, name), 0) + 1
    taken[(type_, name)] = count
    if count == 1:
        return name
    return f"{name} #{count}" if name else f"#{count}"


def keyed_servers(section: Section) -> dict[str, Server]:
    """A section's servers by name; a repeated name (nginx allows it) is numbered `#2`, `#3`."""
    keyed: dict[str, Server] = {}
    for server in section.servers:
        key = server.name
        if key in keyed:
            n = 2
            while f"{key} #{n}" in keyed:
                n += 1
            key = f"{key} #{n}"
        keyed[key] = server
    return keyed
