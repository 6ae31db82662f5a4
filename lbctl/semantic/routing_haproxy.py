"""HAProxy's routing, read from the parsed model: each frontend/listen as ordered clauses.

HAProxy evaluates, for each request: `http-request` rules in order (a `deny`, `return`,
`redirect`, `use-service`, `tarpit`, `reject` or `auth` that matches ends it), then
`redirect` rules, then `use_backend` rules in order (the first whose condition holds
wins), then `default_backend` (a frontend's own, else its `defaults`'), and a `listen`
serves what is left itself. A condition (`if`/`unless`) is an OR (`||`, `or`) of ANDs of
ACLs, each negatable with `!`; an ACL is named (every `acl NAME` line adds alternatives)
or anonymous (`{ path_beg /api }`).

Fetches lbctl reads: path, url, base, the Host header (`hdr(host)`, `req.hdr(host)`, ...)
or TLS SNI (`req.ssl_sni`) and method, with their matching methods (`_beg`, `_end`, `_sub`, `_reg`, `_dir`, `_dom`,
`-m`, `-i`). Any other fetch (`src`, `ssl_fc`, a cookie, a variable) is an opaque test
tried both true and false, and named as not modelled; so are maps, pattern files, Lua
actions, a backend chosen by a sample expression and rewrites that run before routing.
"""

from __future__ import annotations

from lbctl.semantic.model import ConfigModel, Rule, Section
from lbctl.semantic.routing_model import ALWAYS, NO_BACKEND, Clause, Cond, Dest, Table, Test

_ENDING = {
    "deny": "deny (403)",
    "reject": "reject (connection closed)",
    "tarpit": "tarpit",
    "silent-drop": "silent-drop",
    "return": "return",
    "redirect": "redirect",
    "use-service": "use-service",
    "auth": "auth (401)",
}
_REWRITES = frozenset(
    {"set-path", "replace-path", "set-uri", "replace-uri", "set-pathq", "replace-pathq", "set-method"}
)
_SUFFIX_OP = {
    "": "eq",
    "_str": "eq",
    "_beg": "beg",
    "_end": "end",
    "_sub": "sub",
    "_reg": "reg",
    "_dir": "dir",
    "_dom": "dom",
    "_found": "found",
}
_MATCH_OP = {"str": "eq", "beg": "beg", "end": "end", "sub": "sub", "reg": "reg", "dir": "dir", "dom": "dom"}
_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "CONNECT", "TRACE", "PATCH")
_FLAG_ARGS = frozenset({"-f", "-m", "-M", "-u"})


def haproxy_tables(model: ConfigModel) -> dict[str, Table]:
    pools = {s.name: s.label for s in model.sections if s.type in ("backend", "listen")}
    out: dict[str, Table] = {}
    inherited: str | None = None
    for section in model.sections:
        if section.type == "defaults":
            inherited = _setting(section, "default_backend")
        elif section.type in ("frontend", "listen"):
            table = _Reader(section, pools, inherited).table()
            out[table.entry] = table
    return out


def _setting(section: Section, key: str) -> str | None:
    found = [s.value for s in section.settings if s.key == key]
    return found[-1].split()[0] if found and found[-1] else None


class _Reader:
    def __init__(self, section: Section, pools: dict[str, str], inherited: str | None) -> None:
        self.section = section
        self.pools = pools
        self.inherited = inherited
        self.unmodelled: list[str] = []
        self.acls: dict[str, list[Test]] = {}
        for setting in section.settings:
            key = setting.key
            if key.startswith("["):
                if "acl " in key or key.endswith("default_backend"):
                    self._note(f"`{key}` sits in a conditional block (`.if`), read as if it applied")
                key = key.split("] ", 1)[-1]
            if key.startswith("acl "):
                self.acls.setdefault(key[4:], []).append(self._test(setting.value.split()))

    def _note(self, reason: str) -> None:
        if reason not in self.unmodelled:
            self.unmodelled.append(reason)

    def dest(self, name: str) -> Dest:
        return Dest(name, "backend", self.pools.get(name))

    def table(self) -> Table:
        section = self.section
        clauses: list[Clause] = []
        rules = [r for r in section.rules if _chain(r) in ("http-request", "redirect", "use_backend")]
        order = {"http-request": 0, "redirect": 1, "use_backend": 2}
        for rule in sorted(rules, key=lambda r: order[_chain(r)]):  # stable: written order within a chain
            clause = self._clause(rule)
            if clause is not None:
                clauses.append(clause)
        default = _setting(section, "default_backend") or self.inherited
        if default is not None:
            clauses.append(Clause(ALWAYS, self._named(default), f"default_backend {default}", "default", section.line))
        elif section.type == "listen":
            clauses.append(Clause(ALWAYS, self.dest(section.name), f"listen {section.name} serves it", "default"))
        else:
            clauses.append(Clause(ALWAYS, NO_BACKEND, "(no default_backend)", "default", section.line))
        return Table(section.label, tuple(clauses), tuple(self.unmodelled), line=section.line)

    def _named(self, name: str) -> Dest:
        if "%[" in name or "${" in name:
            self._note(f"the backend `{name}` is chosen by a sample expression (a map, a variable)")
            return Dest(name, "backend")
        return self.dest(name)

    def _clause(self, rule: Rule) -> Clause | None:
        text = rule.text.split("] ", 1)[-1] if rule.chain.startswith("[") else rule.text
        if rule.chain.startswith("["):
            self._note(f"`{text}` sits in a conditional block (`.if`), read as if it applied")
        words = text.split()
        keyword = words[0]
        if keyword == "use_backend":
            if len(words) < 2:
                return None
            return Clause(self._cond(words[2:]), self._named(words[1]), text, "rule", rule.line)
        if keyword == "redirect":
            return Clause(self._cond(words), Dest("redirect"), text, "rule", rule.line)
        action = words[1] if len(words) > 1 else ""
        if action.startswith("lua."):
            self._note(f"`{text}` runs Lua, which may answer or reroute the request")
            return None
        if action == "use-service" and len(words) > 2 and words[2].startswith("lua."):
            self._note(f"`{text}` answers with a Lua service")
        if action in _REWRITES or (
            action in ("set-header", "replace-header", "del-header", "add-header")
            and len(words) > 2
            and words[2].lower() == "host"
        ):
            self._note(f"`{text}` rewrites the request before routing; lbctl routes it as sent")
            return None
        ending = _ENDING.get(action)
        if ending is None:
            return None
        name = f"{ending} {words[2]}" if action == "use-service" and len(words) > 2 else ending
        return Clause(self._cond(words), Dest(f"http-request {name}", "answer"), text, "rule", rule.line)

    def _cond(self, words: list[str]) -> Cond:
        """The condition that follows `if` or `unless` in `words` (always, when there is none)."""
        at = next((i for i, w in enumerate(words) if w in ("if", "unless")), None)
        if at is None:
            return ALWAYS
        negate_all = words[at] == "unless"
        terms: list[list[tuple[bool, tuple[Test, ...]]]] = [[]]
        texts: list[list[str]] = [[]]
        rest = words[at + 1 :]
        i = 0
        while i < len(rest):
            word = rest[i]
            if word in ("||", "or"):
                terms.append([])
                texts.append([])
                i += 1
                continue
            negated = False
            while word.startswith("!"):
                negated = not negated
                word = word[1:]
                if not word:
                    i += 1
                    word = rest[i] if i < len(rest) else ""
            if word == "{":
                end = rest.index("}", i) if "}" in rest[i:] else len(rest)
                inner = rest[i + 1 : end]
                group: tuple[Test, ...] = (self._test(inner),)
                shown = " ".join(inner)
                i = end + 1
            else:
                group, shown = self._acl(word)
                i += 1
            terms[-1].append((negated, group))
            texts[-1].append(("!" if negated else "") + shown)
        text = " || ".join(" ".join(t) for t in texts if t)
        cond = Cond(tuple(tuple(t) for t in terms if t), text)
        return Cond(cond.terms, f"unless {text}", negate=True) if negate_all else cond

    def _acl(self, name: str) -> tuple[tuple[Test, ...], str]:
        tests = self.acls.get(name)
        if tests is not None:
            shown = " or ".join(t.text for t in tests)
            return tuple(tests), shown if len(tests) == 1 else f"({shown})"
        predefined = _predefined(name)
        if predefined is not None:
            return (predefined,), name
        self._note(f"ACL `{name}` is not defined in this section")
        return (Test("opaque", "", (), False, f"acl {name}"),), name

    def _test(self, words: list[str]) -> Test:
        text = " ".join(words)
        if not words:
            return Test("true", "true", (), False, text)
        fetch, *converters = words[0].split(",")
        icase, op, values = False, None, []
        i = 1
        while i < len(words):
            word = words[i]
            if word == "--":
                values.extend(words[i + 1 :])
                break
            if word.startswith("-") and len(word) > 1 and not values:
                if word == "-i":
                    icase = True
                elif word == "-m" and i + 1 < len(words):
                    op = words[i + 1]
                elif word == "-f" and i + 1 < len(words):
                    self._note(f"`{text}` reads its patterns from the file {words[i + 1]}")
                    return _opaque(text)
                elif word == "-M":
                    self._note(f"`{text}` matches against a map file")
                    return _opaque(text)
                i += 2 if word in _FLAG_ARGS else 1
                continue
            values.append(word)
            i += 1
        if any(c.startswith("map") or c.startswith("lua.") for c in converters):
            self._note(f"`{text}` uses a map or a Lua converter")
            return _opaque(text)
        if "lower" in converters or "upper" in converters:
            icase = True
        field, fetch_op = _fetch(fetch)
        if field is None:
            self._note(f"the fetch `{fetch}` is not modelled (`{text}` is tried both true and false)")
            return _opaque(text)
        if field in ("true", "false"):
            return Test("true", field, (), False, text)
        chosen = _MATCH_OP.get(op or "") if op else fetch_op
        if op == "found":
            chosen = "found"
        if chosen is None:
            self._note(f"the match `-m {op}` is not modelled (`{text}` is tried both true and false)")
            return _opaque(text)
        return Test(field, chosen, tuple(values), icase or field == "method", text)


def _chain(rule: Rule) -> str:
    return rule.chain.split("] ", 1)[-1]


def _opaque(text: str) -> Test:
    return Test("opaque", "", (), False, text)


def _fetch(fetch: str) -> tuple[str | None, str]:
    """(field, match method) of a fetch as written, or (None, "") when lbctl does not read it."""
    name = fetch.lower()
    if name in ("always_true", "true"):
        return "true", "true"
    if name in ("always_false", "false"):
        return "false", "false"
    if name in ("method", "req.method"):
        return "method", "eq"
    if name in ("req.ssl_sni", "req_ssl_sni", "ssl_fc_sni"):
        return "host", "eq"  # TLS SNI: the host a TCP-mode frontend routes on
    for base, field in (("path", "path"), ("url", "path"), ("base", "base")):
        if name == base or (name.startswith(base + "_") and name[len(base) :] in _SUFFIX_OP):
            return field, _SUFFIX_OP[name[len(base) :]]
    head, sep, arg = name.partition("(")
    if sep and arg.rstrip(")").split(",")[0].strip() == "host":
        stem = head.removeprefix("req.")
        if stem in ("hdr", "fhdr"):
            return "host", "eq"
        if stem.startswith("hdr_") and "_" + stem[4:] in _SUFFIX_OP:
            return "host", _SUFFIX_OP["_" + stem[4:]]
    return None, ""


def _predefined(name: str) -> Test | None:
    if name in ("TRUE", "HTTP", "HTTP_1.0", "HTTP_1.1"):
        return Test("true", "true", (), False, name)
    if name == "FALSE":
        return Test("true", "false", (), False, name)
    if name == "HTTP_URL_SLASH":
        return Test("path", "beg", ("/",), False, name)
    if name.startswith("METH_") and name[5:] in _METHODS:
        values = ("GET", "HEAD") if name == "METH_GET" else (name[5:],)
        return Test("method", "eq", values, True, name)
    return None
