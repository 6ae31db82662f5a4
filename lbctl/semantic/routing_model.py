"""The values of lbctl's routing model: requests, the tests and conditions of a rule, its
destination, an entry's ordered table of clauses, and how a change moves requests between
destinations (RoutingChange, RoutingMove, RoutingReport). The per-LB builders
(routing_haproxy, routing_web) and the comparison (routing) are built on these."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from lbctl.semantic.model import Finding, mask

OTHER_HOST = "other.invalid"
OTHER_PATH = "/lbctl-other"
MAX_OPAQUE = 8  # opaque tests enumerated in every combination; more are tried one at a time
MAX_WITNESSES = 20_000


@dataclass(frozen=True, slots=True)
class Request:
    """A witness request: what the routing model can see of one request."""

    path: str = "/"
    host: str = OTHER_HOST
    method: str = "GET"
    opaque: frozenset[str] = frozenset()  # the opaque tests that hold for it

    @property
    def text(self) -> str:
        return f"{self.method} {self.path}" if self.host == OTHER_HOST else f"{self.method} {self.host}{self.path}"


@dataclass(frozen=True, slots=True)
class Test:
    """One test of a request: `field` (path, host, method, base, opaque) `op` `values`."""

    field: str
    op: str  # eq | beg | end | sub | reg | dir | dom | found | true | false | len
    values: tuple[str, ...] = ()
    icase: bool = False
    text: str = ""

    def matches(self, req: Request) -> bool:
        if self.op == "true":
            return True
        if self.op == "false":
            return False
        if self.field == "opaque":
            return self.text in req.opaque
        subject = {"path": req.path, "host": req.host, "method": req.method, "base": req.host + req.path}[self.field]
        if self.op == "found":
            return bool(subject)
        return any(_match_one(self.op, subject, value, self.icase) for value in self.values)


def _match_one(op: str, subject: str, value: str, icase: bool) -> bool:
    if op == "reg":
        try:
            return re.search(value, subject, re.IGNORECASE if icase else 0) is not None
        except re.error:
            return False
    if icase:
        subject, value = subject.lower(), value.lower()
    if op == "eq":
        return subject == value
    if op == "beg":
        return subject.startswith(value)
    if op == "end":
        return subject.endswith(value)
    if op == "sub":
        return value in subject
    if op == "dir":
        return f"/{value.strip('/')}/" in f"{subject.rstrip('/')}/" if value.strip("/") else True
    if op == "dom":
        return f".{value.strip('.')}." in f".{subject.replace('/', '.')}."
    if op == "glob":
        return _glob(subject, value)
    return False


def _glob(subject: str, pattern: str) -> bool:
    regex = "".join(".*" if c == "*" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, subject, re.DOTALL) is not None


@dataclass(frozen=True, slots=True)
class Cond:
    """OR of ANDs of (negated, test-group); a group holds when any of its tests does. `()` = always.

    `negate` turns the whole condition around (HAProxy's `unless`).
    """

    terms: tuple[tuple[tuple[bool, tuple[Test, ...]], ...], ...] = ()
    text: str = ""
    negate: bool = False  # HAProxy's `unless`

    def matches(self, req: Request) -> bool:
        if not self.terms:
            return not self.negate
        held = any(all(any(t.matches(req) for t in group) != negated for negated, group in term) for term in self.terms)
        return held != self.negate

    def tests(self) -> Iterable[Test]:
        for term in self.terms:
            for _, group in term:
                yield from group


ALWAYS = Cond()


@dataclass(frozen=True, slots=True)
class Dest:
    """Where a request ends: a backend/upstream (`pool` is its section label), or an answer."""

    name: str
    kind: str = "backend"  # backend | answer (deny, return, redirect, a service) | none (no backend: 503)
    pool: str | None = None

    @property
    def shown(self) -> str:
        if self.kind != "backend":
            return self.name
        if self.pool is None:
            return f"backend {self.name}" if " " not in self.name else self.name
        return self.pool if self.pool.startswith(("backend ", "listen ", "upstream ")) else self.name


NO_BACKEND = Dest("no backend (503)", "none")


@dataclass(frozen=True, slots=True)
class Clause:
    """One step of an entry's routing, in evaluation order: requests matching `cond` go to `dest`."""

    cond: Cond
    dest: Dest
    text: str  # the statement as written (`use_backend api if { path_beg /api }`)
    role: str = "rule"  # rule | default | location | route
    line: int = 0

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the clause across versions: its text and what its condition means."""
        return (self.text, self.cond.text)


@dataclass(frozen=True)
class Table:
    """The routing of one entry (frontend, nginx listen address, Caddy server).

    `route` decides a request's clause; for HAProxy it is the first clause that matches,
    nginx and Caddy bring their own precedence. `signature` is what must differ for the
    routing to have changed.
    """

    entry: str
    clauses: tuple[Clause, ...]
    unmodelled: tuple[str, ...] = ()
    hints: tuple[Test, ...] = ()  # tests that do not decide a clause but shape witnesses (nginx server_name)
    router: Callable[[Table, Request], Clause | None] | None = field(default=None, compare=False)
    line: int = 0

    def route(self, req: Request) -> Clause | None:
        if self.router is not None:
            return self.router(self, req)
        return next((c for c in self.clauses if c.cond.matches(req)), None)

    def dest(self, req: Request) -> Dest:
        clause = self.route(req)
        return clause.dest if clause is not None else NO_BACKEND

    @property
    def signature(self) -> tuple[object, ...]:
        return (tuple((c.key, c.dest, c.role) for c in self.clauses), self.hints, self.unmodelled)


# -- the result of comparing two versions -------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoutingChange:
    """Requests of one class now reach `to` instead of `frm`, as a reviewer reads it."""

    entry: str
    frm: Dest
    to: Dest
    statement: str
    # "backend": every witness that reached `frm` through this entry now reaches `to`;
    # "class": every witness of one clause (a rule, a location, a route) does; "part": some do
    scope: str
    examples: tuple[str, ...] = ()
    line: int | None = None

    @property
    def whole(self) -> bool:
        return self.scope != "part"

    def to_json(self) -> dict[str, object]:
        return {
            "entry": mask(self.entry),
            "from": mask(self.frm.name),
            "to": mask(self.to.name),
            "statement": mask(self.statement),
            "scope": self.scope,
            "examples": [mask(e) for e in self.examples],
            "line": self.line,
        }


@dataclass(frozen=True, slots=True)
class RoutingMove:
    """The traffic figure of one change: `share` of `frontend`'s requests move `from_backend` → `to_backend`.

    `basis` says where the figure comes from: "counters" (the LB's own per-backend counts),
    "replay" (real requests replayed through both versions), or "bound" (no live data: the
    upper bound; `share` is None when not even a bound short of 100 % of the entry is known,
    i.e. part of a backend's traffic moves). `pool_share` is the fraction of `from_backend`'s
    requests through this entry that move (1.0 when all of them do; None when unknown).
    `detail` is the figure as a person reads it.
    """

    frontend: str
    from_backend: str
    to_backend: str
    share: float | None
    basis: str  # counters | bound | replay
    whole: bool = True
    detail: str = ""
    # the busiest server of `to_backend` after the move, and its share of the entry's requests
    peak_server: str | None = None
    peak_share: float | None = None
    pool_share: float | None = None
    peak_before: float | None = None  # the busiest server's share of the entry's requests before the move

    def to_json(self) -> dict[str, object]:
        return {
            "frontend": mask(self.frontend),
            "from_backend": mask(self.from_backend),
            "to_backend": mask(self.to_backend),
            "share": None if self.share is None else round(self.share, 6),
            "basis": self.basis,
            "whole": self.whole,
            "detail": mask(self.detail),
            "peak_server": None if self.peak_server is None else mask(self.peak_server),
            "peak_share": None if self.peak_share is None else round(self.peak_share, 6),
            "pool_share": None if self.pool_share is None else round(self.pool_share, 6),
            "peak_before": None if self.peak_before is None else round(self.peak_before, 6),
        }


@dataclass(frozen=True)
class RoutingReport:
    """Routing changes between two configs, their traffic figures, and what was not modelled."""

    changes: tuple[RoutingChange, ...] = ()
    moves: tuple[RoutingMove, ...] = ()
    unmodelled: tuple[Finding, ...] = ()
    basis_note: str = ""  # where the figures came from ("counters sampled over 1.0 s", ...)
    reached: tuple[tuple[str, tuple[str, ...]], ...] = ()  # entry → backends it reached before

    @property
    def is_empty(self) -> bool:
        return not self.changes and not self.unmodelled

    def with_moves(self, moves: Sequence[RoutingMove], basis_note: str) -> RoutingReport:
        """The same changes judged on other figures (the LB's counters, or a replay)."""
        return replace(self, moves=tuple(moves), basis_note=basis_note)

    def to_json(self) -> dict[str, object]:
        return {
            "basis": self.basis_note or None,
            "changes": [c.to_json() for c in self.changes],
            "moves": [m.to_json() for m in self.moves],
            "unmodelled": [f.to_json() for f in self.unmodelled],
        }


EMPTY = RoutingReport()
