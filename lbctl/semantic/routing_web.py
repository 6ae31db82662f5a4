"""nginx's and Caddy's routing, read from the parsed model, as `Table`s.

nginx: one table per listen address. A request picks its `server` block by Host (exact
`server_name`, then the longest leading wildcard, the longest trailing wildcard, the
first regex, else the `default_server` or the first block), then its location: an exact
`=` match ends the search; else the longest prefix is remembered, and if it is `^~` it
wins; else regex locations (`~`, `~*`) are tried in order and the first match wins; else
the longest prefix does. A location goes to its `proxy_pass` (and `grpc_pass`, ...)
upstream, or answers (`return`), or serves files. Nested locations, `if` blocks and
`rewrite`s are named as not modelled.

Caddy: one table per HTTP server. Routes are tried in order; a route whose matchers hold
runs its handlers: a `reverse_proxy` answers (its upstream set is the destination), a
`static_response` or `file_server` answers, a `subroute` is entered, others pass on; a
`terminal` route ends the chain, and only the first matching route of a `group` runs.
The routes are read back from the model's rule texts and sections, which the Caddy
parser writes for every route, so no second reading of the JSON is needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from lbctl.semantic.model import ConfigModel, Section
from lbctl.semantic.nginx_upstream import route_target
from lbctl.semantic.routing_model import ALWAYS, NO_BACKEND, Clause, Cond, Dest, Request, Table, Test

_PASSES = ("proxy_pass", "grpc_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "memcached_pass")
_ANSWERS = frozenset({"static_response", "file_server", "error", "templates", "acme_server", "copy_response"})


# -- nginx ------------------------------------------------------------------------------------


@dataclass
class _Server:
    section: Section
    names: list[str]
    listens: list[tuple[str, bool]]  # (address, default_server)
    locations: list[tuple[Section, list[str]]]  # top-level locations: (section, args)
    nested: bool = False
    answer: Dest | None = None  # a server-level `return`


def nginx_tables(model: ConfigModel) -> dict[str, Table]:
    upstreams = {s.name: s.label for s in model.sections if s.type == "upstream"}
    servers: list[_Server] = []
    for section in model.sections:
        if section.type == "server":
            servers.append(_nginx_server(section))
        elif section.type == "location" and servers:
            parts = section.name.split(" › ")
            if len(parts) != 2:
                servers[-1].nested = True
                continue
            own = re.sub(r" #\d+$", "", parts[1])
            words = own.split(" ", 1)
            if own.startswith("@"):
                continue  # a named location is reached only by an internal redirect
            servers[-1].locations.append((section, words if words[0] in ("=", "~", "~*", "^~") else [own]))
    groups: dict[str, list[_Server]] = {}
    for server in servers:
        for address, _ in server.listens:
            groups.setdefault(address, []).append(server)
    out: dict[str, Table] = {}
    for address, members in groups.items():
        table = _nginx_table(address, members, upstreams)
        out[table.entry] = table
    return out


def _nginx_server(section: Section) -> _Server:
    names = [n for s in section.settings if s.key == "server_name" for n in s.value.split()]
    listens: list[tuple[str, bool]] = []
    for setting in section.settings:
        if setting.key == "listen" and setting.value:
            words = setting.value.split()
            listens.append((_listen_address(words[0]), "default_server" in words or "default" in words[1:]))
    if not listens:
        listens.append(("*:80", False))
    answer = None
    for rule in section.rules:
        if rule.chain == "rewrite" and rule.text.startswith("return "):
            answer = Dest(rule.text, "answer")
            break
    return _Server(section, names, listens, [], answer=answer)


def _listen_address(word: str) -> str:
    if word.isdigit():
        return f"*:{word}"
    if word.startswith("unix:") or ":" in word:
        return word
    return f"{word}:80"


def _nginx_table(address: str, members: list[_Server], upstreams: dict[str, str]) -> Table:
    clauses: list[Clause] = []
    unmodelled: list[str] = []
    hints: list[Test] = []
    owners: dict[int, int] = {}  # clause index -> member index
    for m, server in enumerate(members):
        label = " ".join(server.names) or "_"
        if server.nested:
            unmodelled.append(f"server {label}: nested locations are read as their parent location")
        for name in server.names:
            if name.startswith("~"):
                hints.append(Test("host", "reg", (name[1:],), True, f"server_name {name}"))
            elif name:
                hints.append(Test("host", "glob" if "*" in name else "eq", (name.lstrip("."),), True, name))
        if server.answer is not None:
            owners[len(clauses)] = m
            clauses.append(Clause(ALWAYS, server.answer, f"server {label}: {server.answer.name}", "location"))
            continue
        for section, args in server.locations:
            owners[len(clauses)] = m
            clauses.append(_location(section, args, label, upstreams, unmodelled))
    table_members = tuple(members)

    def router(table: Table, req: Request) -> Clause | None:
        chosen = _pick_server(table_members, req.host)
        candidates = [(i, c) for i, c in enumerate(table.clauses) if owners.get(i) == chosen]
        return _pick_location([c for _, c in candidates], req.path)

    return Table(f"nginx listen {address}", tuple(clauses), tuple(unmodelled), tuple(hints), router)


def _location(section: Section, args: list[str], server: str, upstreams: dict[str, str], notes: list[str]) -> Clause:
    modifier, path = (args[0], args[1]) if len(args) == 2 else ("", args[0])
    if modifier == "=":
        test = Test("path", "eq", (path,), False, f"= {path}")
    elif modifier in ("~", "~*"):
        test = Test("path", "reg", (path,), modifier == "~*", f"{modifier} {path}")
    else:
        test = Test("path", "beg", (path,), False, f"{modifier} {path}".strip())
    dest = NO_BACKEND
    for rule in section.rules:
        if rule.chain == "rewrite" and rule.text.startswith("return "):
            dest = Dest(rule.text, "answer")
            break
        if rule.chain == "rewrite" and rule.text.startswith(("if ", "rewrite ")):
            notes.append(f"server {server} location {test.text}: `{rule.text}` is not modelled")
    lua = [s.key for s in section.settings if "_by_lua" in s.key]
    if lua:
        notes.append(f"server {server} location {test.text}: `{lua[0]}` runs Lua, which may answer or reroute")
    if dest is NO_BACKEND:
        passes = [s for s in section.settings if s.key in _PASSES]
        if passes:
            target = route_target(passes[0].key, passes[0].value.split())
            if target is not None and target in upstreams:
                dest = Dest(target, "backend", upstreams[target])
            else:
                if "$" in passes[0].value:
                    notes.append(f"server {server} location {test.text}: `{passes[0].value}` holds a variable")
                dest = Dest(passes[0].value, "backend")
        else:
            dest = Dest("served by nginx (files)", "answer")
    text = f"server {server} › location {test.text}"
    term = ((False, (test,)),)
    return Clause(Cond((term,), text), dest, text, "location", section.line)


def _pick_server(members: tuple[_Server, ...], host: str) -> int:
    host = host.lower()
    best_lead: tuple[int, int] | None = None
    best_tail: tuple[int, int] | None = None
    for m, server in enumerate(members):
        for name in server.names:
            low = name.lower()
            if low == host or (low.startswith(".") and (host == low[1:] or host.endswith(low))):
                return m
            if low.startswith("*.") and host.endswith(low[1:]) and (best_lead is None or len(low) > best_lead[0]):
                best_lead = (len(low), m)
            elif low.endswith(".*") and host.startswith(low[:-1]) and (best_tail is None or len(low) > best_tail[0]):
                best_tail = (len(low), m)
    if best_lead is not None:
        return best_lead[1]
    if best_tail is not None:
        return best_tail[1]
    for m, server in enumerate(members):
        for name in server.names:
            if name.startswith("~"):
                try:
                    if re.search(name[1:], host, re.IGNORECASE):
                        return m
                except re.error:
                    continue
    return next((m for m, s in enumerate(members) if any(d for _, d in s.listens)), 0)


def _pick_location(clauses: list[Clause], path: str) -> Clause | None:
    prefix: tuple[int, Clause] | None = None
    for clause in clauses:
        test = next(iter(clause.cond.tests()), None)
        if test is None:
            return clause  # a server-level answer
        if test.op == "eq" and path == test.values[0]:
            return clause
        longer = prefix is None or len(test.values[0]) > prefix[0]
        if test.op == "beg" and path.startswith(test.values[0]) and longer:
            prefix = (len(test.values[0]), clause)
    if prefix is not None and any(t.text.startswith("^~") for t in prefix[1].cond.tests()):
        return prefix[1]
    for clause in clauses:
        test = next(iter(clause.cond.tests()), None)
        if test is not None and test.op == "reg" and test.matches(Request(path=path)):
            return clause
    return prefix[1] if prefix is not None else None


# -- Caddy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    match: Cond
    handlers: tuple[str, ...]
    terminal: bool
    group: str | None
    where: str
    text: str


def caddy_tables(model: ConfigModel) -> dict[str, Table]:
    by_key = {(s.type, s.name): s for s in model.sections}
    taken: dict[tuple[str, str], int] = {}
    out: dict[str, Table] = {}
    for section in model.sections:
        if section.type != "server":
            continue
        notes: list[str] = []
        clauses: list[Clause] = []
        tree = _caddy_routes(section, section.name, by_key, taken, notes, clauses)
        steps = tuple(clauses)

        def router(table: Table, req: Request, tree: list[tuple[_Route, object]] = tree) -> Clause | None:
            return _walk(tree, req)

        out[section.label] = Table(section.label, steps, tuple(dict.fromkeys(notes)), (), router, section.line)
    return out


def _caddy_routes(
    section: Section,
    prefix: str,
    by_key: dict[tuple[str, str], Section],
    taken: dict[tuple[str, str], int],
    notes: list[str],
    clauses: list[Clause],
    outer: Cond = ALWAYS,
) -> list[tuple[_Route, object]]:
    """The routes of `section` (a server or a subroute), each with what its handlers lead to."""
    tree: list[tuple[_Route, object]] = []
    for rule in section.rules:
        route = _route(rule.text, prefix, notes)
        steps: list[object] = []
        for handler in route.handlers:
            if handler == "subroute":
                inner = by_key.get(("subroute", _numbered("subroute", route.where, taken)))
                if inner is not None:
                    steps.append(_caddy_routes(inner, route.where, by_key, taken, notes, clauses, route.match))
            elif handler == "reverse_proxy":
                name = _numbered("reverse_proxy", route.where, taken)
                pool = by_key.get(("reverse_proxy", name))
                dials = ", ".join(s.name for s in pool.servers) if pool is not None else "?"
                dest = Dest(f"upstreams [{dials}]", "backend", pool.label if pool is not None else None)
                clause = Clause(_and(outer, route.match), dest, _route_label(section, prefix, route), "route")
                clauses.append(clause)
                steps.append(clause)
            else:
                _numbered("handler", f"{route.where} › {handler}", taken)
                if handler in _ANSWERS:
                    dest = Dest(handler, "answer")
                    clause = Clause(_and(outer, route.match), dest, _route_label(section, prefix, route), "route")
                    clauses.append(clause)
                    steps.append(clause)
                elif handler in ("rewrite", "uri"):
                    notes.append(f"`{route.text}` rewrites the request; lbctl routes it as sent")
        tree.append((route, steps))
    return tree


def _route_label(section: Section, prefix: str, route: _Route) -> str:
    return route.text if section.type == "server" else f"{prefix} › {route.text}"


def _walk(tree: list[tuple[_Route, object]], req: Request) -> Clause | None:
    groups: set[str] = set()
    for route, steps in tree:
        if route.group is not None and route.group in groups:
            continue
        if not route.match.matches(req):
            continue
        if route.group is not None:
            groups.add(route.group)
        for step in steps if isinstance(steps, list) else []:
            if isinstance(step, Clause):
                return step
            if isinstance(step, list):
                found = _walk(step, req)
                if found is not None:
                    return found
        if route.terminal:
            return None
    return None


def _numbered(type_: str, name: str, taken: dict[tuple[str, str], int]) -> str:
    count = taken.get((type_, name), 0) + 1
    taken[(type_, name)] = count
    if count == 1:
        return name
    return f"{name} #{count}" if name else f"#{count}"


def _and(a: Cond, b: Cond) -> Cond:
    if not a.terms:
        return b
    if not b.terms:
        return a
    terms = tuple(x + y for x in a.terms for y in b.terms)
    return Cond(terms, f"{a.text} and {b.text}")


def _route(text: str, prefix: str, notes: list[str]) -> _Route:
    """A route read back from the Caddy parser's rule text: `MATCH → h1, h2 (terminal) group G`."""
    match_text, _, rest = text.partition(" → ")
    group = None
    if " group " in rest:
        rest, _, group = rest.rpartition(" group ")
    terminal = rest.endswith(" (terminal)")
    rest = rest.removesuffix(" (terminal)")
    handlers = tuple(h.strip() for h in rest.split(",") if h.strip() and h.strip() != "(nothing)")
    where = prefix if match_text == "(all)" else " › ".join(filter(None, [prefix, match_text]))
    cond = ALWAYS if match_text == "(all)" else _matchers(match_text, notes)
    return _Route(cond, handlers, terminal, group, where, text)


def _matchers(text: str, notes: list[str]) -> Cond:
    terms = []
    for alternative in text.split(" or "):
        term = []
        for key, value in _pairs(alternative):
            term.append((False, (_matcher(key, value, notes),)))
        terms.append(tuple(term))
    return Cond(tuple(terms), text)


def _pairs(text: str) -> Iterator[tuple[str, str]]:
    words = text.split(" ")
    for i in range(0, len(words) - 1, 2):
        yield words[i], words[i + 1]


def _matcher(key: str, value: str, notes: list[str]) -> Test:
    values = tuple(value.split(",")) if not value.startswith(("{", "[", '"')) else ()
    if key == "path" and values:
        return Test("path", "glob", values, True, f"path {value}")
    if key == "host" and values:
        return Test("host", "glob", values, True, f"host {value}")
    if key == "method" and values:
        return Test("method", "eq", values, True, f"method {value}")
    if key == "path_regexp":
        try:
            pattern = json.loads(value).get("pattern")
        except (ValueError, AttributeError):
            pattern = None
        if isinstance(pattern, str):
            return Test("path", "reg", (pattern,), False, f"path_regexp {pattern}")
    notes.append(f"the matcher `{key} {value}` is not modelled (tried both true and false)")
    return Test("opaque", "", (), False, f"{key} {value}")
