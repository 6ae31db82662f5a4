"""Parse an nginx configuration into a `ConfigModel`, with crossplane.

crossplane reads the text (written to a temporary file: it only parses paths) one
file at a time; `include`s are resolved here, relative to `root` (the store), so
the result never depends on files outside it: an absolute include, or any include
without a root, stays an `include` statement and is noted. Context checks are
off because crossplane's directive table lags nginx (e.g. `server_name` in
`stream`); argument counts are still checked.

Every block is a `Section`, named by its place (`example.com (80) › /api`). Within
a block, the rewrite module's statements and `allow`/`deny` are ordered chains,
as are regex locations (nginx tries them in order); prefix locations, settings
and upstream servers are not ordered.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from lbctl.errors import ParseError
from lbctl.masking import seal_words
from lbctl.semantic.model import (
    ConfigModel,
    Directive,
    Finding,
    Route,
    Rule,
    Section,
    Server,
    Setting,
    unique_name,
)
from lbctl.semantic.nginx_upstream import balance_of, parse_server, route_target

_MAX_INCLUDE_DEPTH = 16
_REWRITE = frozenset({"rewrite", "return", "set", "break", "if"})
_ACCESS = frozenset({"allow", "deny"})
_KEY_ARITY = {
    "proxy_set_header": 1,
    "add_header": 1,
    "fastcgi_param": 1,
    "uwsgi_param": 1,
    "scgi_param": 1,
    "grpc_set_header": 1,
    "log_format": 1,
    "ssl_conf_command": 1,
    "proxy_ssl_conf_command": 1,
    "add_trailer": 1,
    "more_set_headers": 0,
    "map_hash_bucket_size": 0,
    "env": 0,
    "error_page": 0,
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\"}
_ESCAPE = re.compile(r"\\([ntr\"'\\])")
_POOL_TYPES = frozenset({"upstream", "stream upstream"})


def parse(text: str, *, filename: str, root: Path | None = None) -> ConfigModel:
    """Parse nginx configuration `text`; raise `ParseError` naming the file and line when malformed."""
    with tempfile.TemporaryDirectory(prefix="lbctl-nginx-") as tmp:
        path = os.path.join(tmp, os.path.basename(filename) or "nginx.conf")
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(text)
        tree = _parse_file(path, shown=filename, text=text)
    notes: list[Finding] = []
    tree = _resolve_includes(tree, root, notes, chain=(filename,))
    builder = _Builder(filename)
    builder.walk(tree, parent=None)
    return ConfigModel("nginx", filename, tuple(builder.sections), tuple(notes))


def include_patterns(text: str) -> list[str]:
    """The arguments of every `include` in `text` (one file, nested blocks too), in order.

    Text crossplane cannot read has none: the plan's parse reports it, with its line.
    """
    with tempfile.TemporaryDirectory(prefix="lbctl-nginx-") as tmp:
        path = os.path.join(tmp, "nginx.conf")
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(text)
        try:
            tree = _parse_file(path, shown="nginx.conf", text=text)
        except ParseError:
            return []
    found: list[str] = []

    def walk(block: list[dict[str, Any]]) -> None:
        for stmt in block:
            if stmt["directive"] == "include" and len(stmt["args"]) == 1:
                found.append(stmt["args"][0])
            walk(stmt.get("block", []))

    walk(tree)
    return found


def _parse_file(path: str, *, shown: str, text: str | None = None) -> list[dict[str, Any]]:
    import crossplane

    from lbctl.semantic import refuse_nul

    if text is None:  # an included file: the main one was checked by `parse_config`
        text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
        refuse_nul(text, shown)

    payload = crossplane.parse(path, single=True, check_ctx=False, check_args=True, catch_errors=False)
    if payload["errors"]:
        error = payload["errors"][0]
        message, line = str(error.get("error") or ""), error.get("line")
        suffix = f" in {error.get('file', path)}:{line}"
        if message.endswith(suffix):
            message = message[: -len(suffix)]
        if not message:  # crossplane hit the end of the file inside a statement or block
            message, line = "unexpected end of file, expecting ';' or '}'", max(1, len(text.splitlines()))
        raise ParseError(message, file=shown, line=line)
    parsed: list[dict[str, Any]] = payload["config"][0]["parsed"]
    return parsed


def _resolve_includes(
    tree: list[dict[str, Any]], root: Path | None, notes: list[Finding], *, chain: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Replace each resolvable `include` by the statements of the files it names.

    `chain` is the files being included, outermost first: a file met again is a cycle.
    """
    out: list[dict[str, Any]] = []
    for stmt in tree:
        if "block" in stmt:
            stmt = {**stmt, "block": _resolve_includes(stmt["block"], root, notes, chain=chain)}
        if stmt["directive"] != "include" or len(stmt["args"]) != 1:
            out.append(stmt)
            continue
        pattern = stmt["args"][0]
        if root is None or os.path.isabs(pattern) or "$" in pattern:
            notes.append(
                Finding(
                    "info", "unresolved-include", f"include {pattern} not resolved from the store", line=stmt["line"]
                )
            )
            out.append(stmt)
            continue
        if len(chain) > _MAX_INCLUDE_DEPTH:
            raise ParseError(
                f"includes nested deeper than {_MAX_INCLUDE_DEPTH} levels", file=chain[-1], line=stmt["line"]
            )
        full = os.path.join(root, pattern)
        names = sorted(glob.glob(full)) if glob.has_magic(pattern) else [full] if os.path.isfile(full) else []
        if not names and not glob.has_magic(pattern):
            notes.append(
                Finding(
                    "warning", "missing-include", f"include {pattern}: no such file in the store", line=stmt["line"]
                )
            )
            out.append(stmt)
        for name in names:
            shown = os.path.relpath(name, root)
            if shown in chain:
                raise ParseError(f"include {pattern}: {shown} includes itself", file=chain[-1], line=stmt["line"])
            out.extend(_resolve_includes(_parse_file(name, shown=shown), root, notes, chain=(*chain, shown)))
    return out


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.sections: list[Section] = []
        self.taken: dict[tuple[str, str], int] = {}

    def walk(self, block: list[dict[str, Any]], parent: tuple[str, str, str] | None) -> None:
        """Add the section for `block` (whose type, name and context are `parent`), then its children."""
        type_, name, context = parent or ("main", "", "")
        directives: list[Directive] = []
        settings: list[Setting] = []
        servers: list[Server] = []
        rules: list[Rule] = []
        routes: list[Route] = []
        balance: str | None = None
        children: list[tuple[dict[str, Any], tuple[str, str, str]]] = []
        is_pool = type_ in _POOL_TYPES
        for stmt in block:
            word, line = stmt["directive"], stmt["line"]
            if word == "#":
                continue  # crossplane reports comments between arguments even with comments=False
            args = _normalise_args(word, stmt["args"])
            if "block" in stmt:
                child = self._child(stmt, args, type_, name, context)
                children.append((stmt, child))
                if word == "if":
                    rules.append(Rule("rewrite", _text(word, args), line))
                elif word == "location" and args and args[0] in ("~", "~*"):
                    rules.append(Rule("location~", " ".join(args), line))
                continue
            if is_pool and word == "server":
                servers.append(parse_server(args, filename=self.filename, line=line))
                continue
            if is_pool and (found := balance_of(word, args)) is not None:
                balance = found
                continue
            target = route_target(word, args)
            if target is not None:
                routes.append(Route(target, _text(word, args), line, must_exist=False))
            if word in _REWRITE:
                rules.append(Rule("rewrite", _text(word, args), line))
            elif word in _ACCESS:
                rules.append(Rule("access", _text(word, args), line))
            else:
                directives.append(Directive(word, tuple(args), line))
                arity = _KEY_ARITY.get(word, 0)
                words = [_word(w) for w in (word, *args)]  # `'' $arg;` in a map: the empty word shows
                settings.append(Setting(" ".join(words[: arity + 1]), " ".join(words[arity + 1 :]), line))
        section_name = unique_name(name, self.taken, type_)
        self.sections.append(
            Section(
                type_,
                section_name,
                tuple(directives),
                tuple(settings),
                tuple(servers),
                tuple(rules),
                tuple(routes),
                (balance or "roundrobin") if is_pool else None,
                is_pool,
                "all",
                block[0]["line"] if block else 0,
            )
        )
        for stmt, child in children:
            self.walk(stmt["block"], child)

    @staticmethod
    def _child(stmt: dict[str, Any], args: list[str], type_: str, name: str, context: str) -> tuple[str, str, str]:
        """The type, name and context of the block `stmt` opens inside section `type_ name`."""
        word = stmt["directive"]
        if word in ("http", "stream", "mail", "events"):
            return word, "", word
        if word == "upstream":
            return ("stream upstream" if context == "stream" else "upstream"), " ".join(args), context
        if word == "server":
            kind = f"{context} server" if context in ("stream", "mail") else "server"
            return kind, _server_block_name(stmt["block"]), context
        own = " ".join((word, *args)) if word != "location" else " ".join(args)
        qualified = f"{name} › {own}" if name and type_ not in ("http", "stream", "mail", "main") else own
        return ("location" if word == "location" else word), qualified, context


def _server_block_name(block: list[dict[str, Any]]) -> str:
    names = [a for s in block if s["directive"] == "server_name" for a in s["args"]]
    listens = [s["args"][0] for s in block if s["directive"] == "listen" and s["args"]]
    return f"{' '.join(names) or '_'} ({', '.join(listens) or '80'})"


def _normalise_args(word: str, args: list[str]) -> list[str]:
    if word.endswith("_by_lua_block") and args:
        # Lua code: indentation and blank lines are not changes.
        code = "\n".join(line.strip() for line in args[-1].splitlines() if line.strip())
        return [*args[:-1], code]
    if any("\\" in a for a in args):
        # crossplane leaves these escapes in place; nginx reads `\n` as a newline, `\"` as a quote.
        args = [_ESCAPE.sub(lambda m: _ESCAPES[m.group(1)], a) for a in args]
    return seal_words([word, *args])[1:]


def _text(word: str, args: list[str]) -> str:
    return " ".join(_word(w) for w in (word, *args))


def _word(word: str) -> str:
    return word or "''"
