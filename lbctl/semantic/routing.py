"""Where each class of request goes: a routing model for every kind, and what a change moves.

Each kind's routing is read from the `ConfigModel` its parser built (no second parser):
`routing_haproxy` turns frontends/listens into ordered clauses (`http-request` rules that
end routing, `use_backend ... if/unless`, `default_backend`), `routing_web` turns nginx
server blocks and locations, and Caddy servers and routes, into the same `Table`s.

A table routes a `Request` (path, host, method, and which of the config's opaque tests
hold) to a `Dest`. Two versions of a table are compared on *witness requests*: requests
built from every value the conditions test (a `path_beg /api` gives `/api` and
`/apilbctl`; a host rule gives its host; an opaque test such as `src 10.0.0.0/8` is tried
true and false). A witness whose destination differs is traffic that moves. When every
witness that reached backend A before now reaches B, the move is *whole*: all of A's
traffic through that entry moves, and the LB's counters (or a replay) turn it into a
figure; otherwise only part of A's traffic moves and lbctl says which requests.

What the model cannot read (Lua actions, maps, a backend named by a sample expression,
patterns from a file, rewrites before routing) is listed as "routing not modelled for X",
never assumed unchanged.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence

from lbctl.semantic.model import ConfigModel, Finding, Section
from lbctl.semantic.routing_model import (
    EMPTY,
    MAX_OPAQUE,
    MAX_WITNESSES,
    NO_BACKEND,
    OTHER_HOST,
    OTHER_PATH,
    Clause,
    Dest,
    Request,
    RoutingChange,
    RoutingReport,
    Table,
)


def tables(model: ConfigModel) -> dict[str, Table]:
    """Every entry's routing table, by entry label."""
    if model.kind == "haproxy":
        from lbctl.semantic.routing_haproxy import haproxy_tables

        return haproxy_tables(model)
    if model.kind == "nginx":
        from lbctl.semantic.routing_web import nginx_tables

        return nginx_tables(model)
    if model.kind == "caddy":
        from lbctl.semantic.routing_web import caddy_tables

        return caddy_tables(model)
    return {}


def compare(old: ConfigModel, new: ConfigModel) -> RoutingReport:
    """What the routing change from `old` to `new` does, with bounds (no live data)."""
    before, after = tables(old), tables(new)
    if not before:
        return EMPTY  # nothing was live to compare with: there is no move, only a config
    changes: list[RoutingChange] = []
    unmodelled: list[Finding] = []
    reached: list[tuple[str, tuple[str, ...]]] = []
    for entry, table in after.items():
        was = before.get(entry)
        if was is None or was.signature == table.signature:
            continue
        for reason in table.unmodelled:  # this entry's routing changed: say what lbctl could not read of it
            unmodelled.append(
                Finding("warning", "routing-not-modelled", f"routing not modelled for {entry}: {reason}", entry)
            )
        found, dests = _changes(was, table, old, new)
        changes.extend(found)
        reached.append((entry, tuple(d.name for d in dests if d.kind == "backend")))
    from lbctl.semantic.routing_figures import bound_figures

    moves = tuple(bound_figures(c, old, new) for c in changes)
    return RoutingReport(tuple(changes), moves, tuple(unmodelled), BOUND_NOTE, tuple(reached))


BOUND_NOTE = "bounds: no live counters were read"


def _changes(
    old: Table, new: Table, old_model: ConfigModel, new_model: ConfigModel
) -> tuple[list[RoutingChange], list[Dest]]:
    same = _equivalent_pools(old_model, new_model)
    reached: dict[Dest, int] = {}
    by_clause: dict[tuple[str, str] | None, int] = {}
    moved: dict[tuple[Dest, Dest, tuple[str, str] | None], list[tuple[Request, Clause | None, Clause | None]]] = {}
    for req in witnesses((old, new)):
        was, now = old.route(req), new.route(req)
        a = was.dest if was else NO_BACKEND
        b = now.dest if now else NO_BACKEND
        reached[a] = reached.get(a, 0) + 1
        key = was.key if was is not None else None
        by_clause[key] = by_clause.get(key, 0) + 1
        if a == b or same(a, b):
            continue
        moved.setdefault((a, b, key), []).append((req, was, now))
    out = []
    for (a, b, key), hits in moved.items():
        every = sum(len(h) for (x, _, _), h in moved.items() if x == a) == reached[a]
        scope = "backend" if every and len({y for (x, y, _) in moved if x == a}) == 1 else ""
        if not scope and len(hits) == by_clause[key]:
            scope = "class"
        req, was, now = hits[0]
        statement = _statement(new.entry, a, b, was, now, old, new, bool(scope))
        examples = tuple(dict.fromkeys(h[0].text for h in hits))[:2]
        out.append(RoutingChange(new.entry, a, b, statement, scope or "part", examples, now.line if now else None))
    return out, list(reached)


def _equivalent_pools(old: ConfigModel, new: ConfigModel) -> Callable[[Dest, Dest], bool]:
    """Two destinations are the same traffic-wise when their pools hold the same servers."""
    old_pools = {s.label: s for s in old.pools()}
    new_pools = {s.label: s for s in new.pools()}

    def servers(section: Section | None) -> frozenset[tuple[str, int]] | None:
        if section is None or not section.servers:
            return None
        return frozenset((s.endpoint, s.weight) for s in section.servers if not s.disabled and not s.backup)

    def same(a: Dest, b: Dest) -> bool:
        if a.kind != "backend" or b.kind != "backend" or a.pool is None or b.pool is None:
            return False
        sa, sb = servers(old_pools.get(a.pool)), servers(new_pools.get(b.pool))
        return sa is not None and sa == sb

    return same


def _statement(
    entry: str,
    a: Dest,
    b: Dest,
    was: Clause | None,
    now: Clause | None,
    old: Table,
    new: Table,
    whole: bool,
) -> str:
    going = f"now go to {b.shown} (was {a.shown})"
    if was is not None and now is not None and was.role == "default" and now.role == "default":
        return f"default traffic now goes to {b.shown} (was {a.shown})"
    if was is None and now is not None and now.role == "default":
        return f"default traffic now goes to {b.shown} (was {a.shown})"
    old_keys = [c.key for c in old.clauses]
    new_keys = [c.key for c in new.clauses]
    if (
        was is not None
        and now is not None
        and was.key in new_keys
        and now.key in old_keys
        and was.key != now.key
        and old_keys.index(was.key) < old_keys.index(now.key)
        and new_keys.index(now.key) < new_keys.index(was.key)
    ):
        return (
            f"order swapped: requests matching both `{_cond(was)}` and `{_cond(now)}` {going}: "
            f"`{now.text}` now comes before `{was.text}`"
        )
    if now is not None and now.key not in old_keys:
        counterpart = _counterpart(now, old.clauses, new.clauses)
        if counterpart is not None and counterpart.dest == now.dest and now.role != "default":
            return f"requests matching `{_cond(now)}` (was `{_cond(counterpart)}`) {going}"
        if counterpart is not None and counterpart.cond.text == now.cond.text and now.role != "default":
            return f"requests matching `{_cond(now)}` {going}"
        if was is not None and _shadows(now, was):
            return f"requests matching `{_cond(was)}` {going}: the regex `{_cond(now)}` is tried first and shadows it"
        added = " (a new rule)" if _cond(now) == now.text else f" (new: `{now.text}`)"
        return f"requests matching `{_cond(now)}` {going}{added}"
    if was is not None and was.key not in new_keys:
        now_at = _counterpart(was, new.clauses, old.clauses)
        if now_at is not None and now_at.dest == was.dest and was.role != "default":
            return f"requests matching `{_cond(was)}` {going}: the rule now tests `{_cond(now_at)}`"
        via = f"`{now.text}`" if now is not None else "no rule"
        return f"requests that matched `{_cond(was)}` {going}: that rule is gone, {via} takes them"
    via = f"`{now.text}`" if now is not None else "no rule"
    part = "all requests" if whole else "some requests"
    return f"{part} that reached {a.shown} {going}, by {via}"


def _shadows(now: Clause, was: Clause) -> bool:
    """nginx: a regex location that now takes requests a prefix location had."""
    if now.role != "location" or was.role != "location":
        return False
    return any(t.op == "reg" for t in now.cond.tests()) and any(t.op == "beg" for t in was.cond.tests())


def _cond(clause: Clause) -> str:
    return clause.cond.text or ("(all)" if clause.role == "route" else clause.text)


def _counterpart(now: Clause, old: Sequence[Clause], new: Sequence[Clause]) -> Clause | None:
    """The old clause `now` replaced: same position and role, or the only old one to its destination gone."""
    at = new.index(now)
    new_keys = [c.key for c in new]
    if at < len(old) and old[at].role == now.role and old[at].key not in new_keys:
        return old[at]
    gone = [c for c in old if c.dest == now.dest and c.key not in new_keys]
    return gone[0] if len(gone) == 1 else None


# -- witnesses -------------------------------------------------------------------------------


def witnesses(tables_: Sequence[Table]) -> list[Request]:
    """Requests built from every value the tables' conditions test."""
    paths: dict[str, None] = {"/": None, OTHER_PATH: None}
    hosts: dict[str, None] = {OTHER_HOST: None}
    methods: dict[str, None] = {"GET": None}
    opaque: dict[str, None] = {}
    for table in tables_:
        for test in itertools.chain((t for c in table.clauses for t in c.cond.tests()), table.hints):
            if test.field == "opaque":
                opaque[test.text] = None
                continue
            for value in test.values:
                for sample in _samples(test.op, value):
                    if test.field == "path":
                        paths[sample if sample.startswith("/") else "/" + sample] = None
                    elif test.field == "host":
                        hosts[sample.strip("/") or OTHER_HOST] = None
                    elif test.field == "method":
                        methods[sample.upper()] = None
                    elif test.field == "base":
                        host, _, path = sample.partition("/")
                        hosts[host or OTHER_HOST] = None
                        paths["/" + path] = None
    names = list(opaque)
    if len(names) <= MAX_OPAQUE:
        combos = [
            frozenset(n for n, on in zip(names, bits, strict=True) if on)
            for bits in itertools.product((False, True), repeat=len(names))
        ]
    else:
        combos = [frozenset(), *(frozenset([n]) for n in names)]
    out: list[Request] = []
    for path, host, method, on in itertools.product(paths, hosts, methods, combos):
        out.append(Request(path, host, method, on))
        if len(out) >= MAX_WITNESSES:
            break
    return out


def _samples(op: str, value: str) -> list[str]:
    if op == "eq":
        return [value]
    if op == "beg":
        return [value, value + "lbctl"]
    if op == "end":
        return ["/lbctl" + value, value]
    if op == "sub":
        return ["/lbctl" + value + "lbctl"]
    if op == "dir":
        return ["/" + value.strip("/") + "/lbctl"]
    if op == "dom":
        return [value, "lbctl." + value]
    if op == "glob":
        return [value.replace("*", "lbctl"), value.replace("*", "")]
    if op == "reg":
        sample = regex_sample(value)
        return [sample] if sample is not None else []
    return []


_CLASS_SAMPLE = {"d": "1", "w": "a", "s": " ", "D": "a", "W": "-", "S": "a"}


def regex_sample(pattern: str) -> str | None:
    """A string the regex matches, built by reading it simply (first alternative, one of each)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in "^$":
            i += 1
            continue
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(_CLASS_SAMPLE.get(nxt, nxt))
            i += 2
            continue
        if c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                return None
            body = pattern[i + 1 : end]
            out.append(body.lstrip("^")[:1] if not body.startswith("^") else "z")
            i = end + 1
            continue
        if c == "(":
            i += 3 if pattern.startswith("(?:", i) else 1
            continue
        if c == "|":
            # keep the first alternative: skip to the end of the enclosing group
            depth = 0
            while i < len(pattern):
                if pattern[i] == "(":
                    depth += 1
                elif pattern[i] == ")":
                    if depth == 0:
                        break
                    depth -= 1
                i += 1
            continue
        if c == ")":
            i += 1
            continue
        if c in "*?":
            if out:
                out.pop()
            i += 1
            continue
        if c == "+":
            i += 1
            continue
        if c == "{":
            end = pattern.find("}", i)
            i = end + 1 if end > 0 else i + 1
            continue
        if c == ".":
            out.append("a")
            i += 1
            continue
        out.append(c)
        i += 1
    sample = "".join(out)
    try:
        return sample if re.search(pattern, sample) else None
    except re.error:
        return None
