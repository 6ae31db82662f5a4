"""Parse an HAProxy configuration into a `ConfigModel`.

Every section type of the configuration manual is recognised. Within a section,
`server`/`server-template` lines become `Server`s with `default-server` options
(from the section and from the `defaults` it inherits) applied; statements the
proxy evaluates in order (`http-request`, `use_backend`, `tcp-request content`,
...) become `Rule`s of one chain per keyword; everything else is a `Setting`,
keyed so that repeating keywords (`timeout connect`, `option httplog`, `acl NAME`)
compare as sets. `balance`, `default-server` and `option allbackups` are inherited
from `defaults` (named with `from NAME`, else the last one above), as HAProxy does.
Conditional blocks (`.if`/`.elif`/`.else`/`.endif`) are not evaluated: what they
guard is labelled with the condition, so a change to either shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lbctl.errors import ParseError
from lbctl.masking import seal_words
from lbctl.semantic.haproxy_syntax import merge_options, server_options, split_address, split_words
from lbctl.semantic.model import ConfigModel, Directive, Route, Rule, Section, Server, Setting, unique_name

SECTIONS = frozenset(
    [
        "global",
        "defaults",
        "frontend",
        "backend",
        "listen",
        "userlist",
        "peers",
        "resolvers",
        "mailers",
        "program",
        "http-errors",
        "ring",
        "cache",
        "log-forward",
        "crt-store",
        "traces",
        "log-profile",
        "acme",
        "fcgi-app",
    ]
)
_NAMELESS = frozenset({"global", "defaults", "crt-store", "traces"})
_PROXIES = frozenset({"defaults", "frontend", "backend", "listen"})
_POOLS = frozenset({"backend", "listen"})
_SERVER_SECTIONS = frozenset({"backend", "listen", "peers", "ring", "log-forward", "defaults"})

# Keywords whose statements the proxy evaluates in the order written, each its own chain.
_CHAINS = frozenset(
    [
        "http-request",
        "http-response",
        "http-after-response",
        "use_backend",
        "use-server",
        "redirect",
        "http-check",
        "tcp-check",
        "stick",
        "filter",
        "monitor",
        "quic-initial",
        "capture",
        "declare",
        "block",
        "reqadd",
        "reqdel",
        "reqrep",
        "reqirep",
        "reqdeny",
        "reqideny",
        "reqallow",
        "reqiallow",
        "reqtarpit",
        "reqitarpit",
        "rspadd",
        "rspdel",
        "rsprep",
        "rspirep",
        "rspdeny",
        "rspideny",
    ]
)
# How many leading arguments identify a repeatable setting (`timeout connect`, `option httplog`).
_KEY_ARITY = {
    "timeout": 1,
    "option": 1,
    "errorfile": 1,
    "errorloc": 1,
    "errorloc302": 1,
    "errorloc303": 1,
    "stats": 1,
    "compression": 1,
    "email-alert": 1,
    "external-check": 1,
    "setenv": 1,
    "presetenv": 1,
    "set-var": 1,
    "set-var-fmt": 1,
    "peer": 1,
    "nameserver": 1,
    "mailer": 1,
    "user": 1,
    "group": 1,
    "on": 1,
    "trace": 1,
    "hold": 1,
    "acl": 1,
    "http-error": 2,
    "errorfiles": 1,
    "table": 1,
}
_COND_KEYWORDS = frozenset({".if", ".elif", ".else", ".endif"})
_MESSAGES = frozenset({".notice", ".warning", ".alert", ".diag"})
DEFAULT_BALANCE = "roundrobin"
MAX_WEIGHT = 256
MAX_TEMPLATE = 100_000


@dataclass
class _Raw:
    type: str
    name: str
    args: list[str]
    line: int
    body: list[tuple[list[str], int, str]] = field(default_factory=list)  # words, line, condition


def parse(text: str, *, filename: str) -> ConfigModel:
    """Parse HAProxy configuration `text`; raise `ParseError` naming the line on malformed input."""
    raws = _split_sections(text, filename)
    builder = _Builder(filename)
    sections = tuple(builder.build(raw) for raw in raws)
    return ConfigModel(kind="haproxy", filename=filename, sections=sections)


def balance_algorithms(model: ConfigModel) -> dict[str, str]:
    """backend/listen name → its `balance` algorithm (the keyword alone), or `sticky`.

    A pool with `stick on|match|store-*` rules or a `cookie` pins a client to one server
    whatever its algorithm, so it reads `sticky`.
    """
    found: dict[str, str] = {}
    for pool in model.pools():
        sticky = any(_unlabelled(r.chain) == "stick" for r in pool.rules) or any(
            d.name == "cookie" for d in pool.directives
        )
        found[pool.name] = "sticky" if sticky else (pool.balance or DEFAULT_BALANCE).split()[0]
    return found


def _unlabelled(chain: str) -> str:
    """A rule's chain without the `[if COND] ` label of a conditional block."""
    return chain.rsplit("] ", 1)[-1] if chain.startswith("[") else chain


def _split_sections(text: str, filename: str) -> list[_Raw]:
    raws: list[_Raw] = []
    current: _Raw | None = None
    conditions: list[tuple[str, int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        words = split_words(line, filename=filename, lineno=lineno)
        if not words:
            continue
        keyword = words[0]
        if keyword in _COND_KEYWORDS:
            _track_condition(conditions, words, filename, lineno)
            continue
        label = " and ".join(c for c, _ in conditions) if conditions else ""
        if keyword in SECTIONS:
            name = words[1] if len(words) > 1 else ""
            if not name and keyword not in _NAMELESS:
                raise ParseError(f"'{keyword}' section needs a name", file=filename, line=lineno)
            current = _Raw(keyword, name, words[2:], lineno)
            if label:
                current.body.append(([".if", label], lineno, ""))
            raws.append(current)
        elif current is None:
            if keyword in _MESSAGES:
                continue
            raise ParseError(f"unknown keyword '{keyword}' out of section", file=filename, line=lineno)
        else:
            current.body.append((words, lineno, label))
    if conditions:
        raise ParseError("'.if' block is not closed by '.endif'", file=filename, line=conditions[-1][1])
    return raws


def _track_condition(stack: list[tuple[str, int]], words: list[str], filename: str, lineno: int) -> None:
    keyword, cond = words[0], " ".join(words[1:])
    if keyword == ".if":
        stack.append((f"if {cond}", lineno))
        return
    if not stack:
        raise ParseError(f"'{keyword}' without a matching '.if'", file=filename, line=lineno)
    opened, first = stack.pop()
    if keyword == ".elif":
        stack.append((f"{opened} elif {cond}", first))
    elif keyword == ".else":
        stack.append((f"{opened} else", first))


class _Builder:
    """Turns raw sections into `Section`s, remembering `defaults` for the proxies that follow."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.taken: dict[tuple[str, str], int] = {}
        self.named_defaults: dict[str, Section] = {}
        self.last_defaults: Section | None = None
        self.inherited: dict[str, tuple[dict[str, str], str | None, bool]] = {}

    def error(self, message: str, line: int) -> ParseError:
        return ParseError(message, file=self.filename, line=line)

    def build(self, raw: _Raw) -> Section:
        parent = self._parent_defaults(raw)
        defaults_opts, balance, all_backups = self.inherited.get(parent, ({}, None, False))
        proxy = raw.type in _PROXIES
        if not proxy:
            defaults_opts, balance, all_backups = {}, None, False
        state = _SectionState(self, raw, dict(defaults_opts), balance, all_backups)
        if raw.type in ("listen", "frontend") and raw.args and raw.args[0] != "from":
            state.settings.append(Setting("bind", " ".join(raw.args), raw.line))
        for words, lineno, cond in raw.body:
            state.statement(words, lineno, cond)
        name = unique_name(raw.name, self.taken, raw.type)
        section = state.finish(name)
        if raw.type == "defaults":
            key = f"defaults {name}"
            self.inherited[key] = (state.default_server, state.balance, state.all_backups)
            self.last_defaults = section
            if raw.name:
                self.named_defaults[raw.name] = section
        return section

    def _parent_defaults(self, raw: _Raw) -> str:
        if "from" in raw.args:
            at = raw.args.index("from")
            if at + 1 >= len(raw.args):
                raise self.error("'from' needs the name of a defaults section", raw.line)
            target = self.named_defaults.get(raw.args[at + 1])
            if target is None:
                raise self.error(f"defaults section '{raw.args[at + 1]}' not found", raw.line)
            return f"defaults {target.name}"
        if raw.type == "defaults":
            return ""  # a new defaults section starts afresh unless it says `from`
        return "" if self.last_defaults is None else f"defaults {self.last_defaults.name}"


class _SectionState:
    def __init__(
        self, builder: _Builder, raw: _Raw, default_server: dict[str, str], balance: str | None, all_backups: bool
    ) -> None:
        self.b = builder
        self.raw = raw
        self.default_server = default_server
        self.balance = balance
        self.all_backups = all_backups
        self.directives: list[Directive] = []
        self.settings: list[Setting] = []
        self.servers: list[Server] = []
        self.rules: list[Rule] = []
        self.routes: list[Route] = []
        # Large backends repeat the same options on every server line: resolve each spelling once.
        self.resolved: dict[tuple[tuple[str, ...], str], tuple[int, bool, bool, bool, tuple[tuple[str, str], ...]]] = {}

    def statement(self, words: list[str], lineno: int, cond: str) -> None:
        keyword, args = words[0], words[1:]
        if keyword in ("server", "server-template") and self.raw.type in _SERVER_SECTIONS:
            self.server(keyword, args, lineno, cond)
            return
        words = seal_words(words)
        args = words[1:]
        if keyword == "default-server":
            pairs = server_options(args, filename=self.b.filename, lineno=lineno)
            self.default_server = merge_options(self.default_server, pairs)
            self.resolved.clear()
        elif keyword == "balance":
            if not args:
                raise self.b.error("'balance' needs an algorithm", lineno)
            self.balance = " ".join(args)
            return
        elif keyword in ("use_backend", "default_backend"):
            if not args:
                raise self.b.error(f"'{keyword}' needs a backend name", lineno)
            if "%[" not in args[0] and "${" not in args[0]:
                self.routes.append(Route(args[0], " ".join(words), lineno))
        elif keyword == "option" and args[:1] == ["allbackups"]:
            self.all_backups = True
        elif keyword == "no" and args[:2] == ["option", "allbackups"]:
            self.all_backups = False
        chain = _chain(keyword, args)
        prefix = f"[{cond}] " if cond else ""
        if chain is not None:
            self.rules.append(Rule(prefix + chain, prefix + " ".join(words), lineno))
            return
        self.directives.append(Directive(keyword, tuple(args), lineno))
        key, value = _setting_key(keyword, args)
        self.settings.append(Setting(prefix + key, value, lineno))

    def server(self, keyword: str, args: list[str], lineno: int, cond: str) -> None:
        template = keyword == "server-template"
        need = 3 if template else 2
        address_optional = self.raw.type == "peers"
        if len(args) < need and not (address_optional and len(args) == 1):
            raise self.b.error(f"'{keyword}' needs a name and an address", lineno)
        names = [args[0]]
        if template:
            names = _template_names(args[0], args[1], self.b, lineno)
            args = [args[0], *args[2:]]
        address, port = split_address(args[1]) if len(args) > 1 else ("", None)
        key = (tuple(args[2:]), cond)
        resolved = self.resolved.get(key)
        if resolved is None:
            resolved = self.resolved[key] = self._resolve(args[2:], lineno, cond)
        weight, backup, disabled, check, frozen = resolved
        for name in names:
            self.servers.append(Server(name, address, port, weight, backup, disabled, check, frozen, lineno))

    def _resolve(
        self, words: list[str], lineno: int, cond: str
    ) -> tuple[int, bool, bool, bool, tuple[tuple[str, str], ...]]:
        """A server's effective weight, flags and other options, `default-server` applied."""
        options = merge_options(self.default_server, server_options(words, filename=self.b.filename, lineno=lineno))
        weight = _weight(options.pop("weight", "1"), self.b, lineno)
        backup = options.pop("backup", None) is not None
        disabled = options.pop("disabled", None) is not None
        check = options.pop("check", None) is not None
        if cond:
            options["if"] = cond
        return weight, backup, disabled, check, tuple(sorted(options.items()))

    def finish(self, name: str) -> Section:
        pool = self.raw.type in _POOLS
        return Section(
            type=self.raw.type,
            name=name,
            directives=tuple(self.directives),
            settings=tuple(self.settings),
            servers=tuple(self.servers),
            rules=tuple(self.rules),
            routes=tuple(self.routes),
            balance=(self.balance or DEFAULT_BALANCE) if pool else self.balance,
            is_pool=pool,
            backup_mode="all" if self.all_backups else "first",
            line=self.raw.line,
        )


def _chain(keyword: str, args: list[str]) -> str | None:
    if keyword in ("tcp-request", "tcp-response"):
        if not args or args[0] == "inspect-delay":
            return None
        return f"{keyword} {args[0]}"
    if keyword in _CHAINS:
        return keyword
    return None


def _setting_key(keyword: str, args: list[str]) -> tuple[str, str]:
    if keyword == "no" and args[:1] == ["option"] and len(args) > 1:
        return f"option {args[1]}", "no " + " ".join(args[2:]) if len(args) > 2 else "no"
    if keyword in ("tcp-request", "tcp-response") and args:
        return f"{keyword} {args[0]}", " ".join(args[1:])
    arity = _KEY_ARITY.get(keyword, 0)
    return " ".join((keyword, *args[:arity])), " ".join(args[arity:])


def _weight(text: str, builder: _Builder, lineno: int) -> int:
    if not text.isdigit():
        if "$" in text:
            return 1  # an environment variable or test macro: unknown until runtime
        raise builder.error(f"invalid server weight '{text}'", lineno)
    weight = int(text)
    if weight > MAX_WEIGHT:
        raise builder.error(f"server weight {weight} is above {MAX_WEIGHT}", lineno)
    return weight


def _template_names(prefix: str, count: str, builder: _Builder, lineno: int) -> list[str]:
    low, sep, high = count.partition("-")
    if not low.isdigit() or (sep and not high.isdigit()):
        raise builder.error(f"invalid server-template range '{count}'", lineno)
    first, last = (int(low), int(high)) if sep else (1, int(low))
    if last < first or last - first >= MAX_TEMPLATE:
        raise builder.error(f"invalid server-template range '{count}'", lineno)
    return [f"{prefix}{i}" for i in range(first, last + 1)]
