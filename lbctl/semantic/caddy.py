"""Parse a Caddy configuration (JSON, or a Caddyfile via `caddy adapt`) into a `ConfigModel`.

Each HTTP server is a section whose routes form one ordered chain (Caddy tries
them in order); each `reverse_proxy` handler is a pool section named by the
server and the matchers that lead to it (`srv0 › host example.com › path /api/*`),
with its upstreams as servers and its selection policy as `balance` (Caddy's
default is `random`). Everything else is flattened into settings keyed by JSON
path. Values under keys that name secrets (`password`, `key`, an `Authorization`
header, ... : `masking.secret_field`) are sealed, and so are PEM private keys and
password hashes found in any other value.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
from typing import Any

from lbctl.errors import ParseError
from lbctl.masking import mask_text, secret_field
from lbctl.semantic.model import ConfigModel, Rule, Section, Server, Setting, seal, unique_name
from lbctl.semantic.nginx_upstream import split_host_port

_ADAPT_LINE = re.compile(r"Caddyfile:(\d+):\s*")
ADAPT_TIMEOUT = 30


def parse(text: str, *, filename: str) -> ConfigModel:
    """Parse Caddy JSON, or adapt a Caddyfile first; raise `ParseError` naming the line on bad input."""
    config = _load(text, filename)
    if not isinstance(config, dict):
        raise ParseError("a Caddy config must be a JSON object", file=filename, line=1)
    builder = _Builder()
    for key in sorted(config):
        if key == "apps" and isinstance(config[key], dict):
            for app in sorted(config[key]):
                builder.app(app, config[key][app])
        else:
            builder.add(Section("config", key, settings=_flatten(config[key], key)))
    return ConfigModel("caddy", filename, tuple(builder.sections))


def _load(text: str, filename: str) -> Any:
    stripped = text.lstrip()
    if filename.endswith(".json") or stripped.startswith("["):
        return _json(text, filename)
    if stripped.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass  # a Caddyfile may start with its global options block
    return json.loads(adapt_caddyfile(text, filename=filename))


def _json(text: str, filename: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc.msg}", file=filename, line=exc.lineno) from None


def adapt_caddyfile(text: str, *, filename: str) -> str:
    """Convert a Caddyfile to JSON with `caddy adapt`, or explain why it cannot be read."""
    caddy = shutil.which("caddy")
    if caddy is None:
        raise ParseError(
            "this looks like a Caddyfile, and reading one needs the `caddy` binary, which is not "
            "installed here; install Caddy or store the config as JSON",
            file=filename,
        )
    with tempfile.TemporaryDirectory(prefix="lbctl-caddy-") as tmp:
        path = os.path.join(tmp, "Caddyfile")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, "XDG_DATA_HOME": tmp, "XDG_CONFIG_HOME": tmp}
        try:
            done = subprocess.run(
                [caddy, "adapt", "--config", path, "--adapter", "caddyfile"],
                capture_output=True,
                text=True,
                env=env,
                timeout=ADAPT_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ParseError(f"`caddy adapt` could not run: {exc}", file=filename) from None
    if done.returncode != 0:
        message = done.stderr.strip().removeprefix("Error: ").replace(path, "Caddyfile")
        found = _ADAPT_LINE.search(message)
        line = int(found.group(1)) if found else None
        raise ParseError(_ADAPT_LINE.sub("", message, count=1), file=filename, line=line)
    return done.stdout


class _Builder:
    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.taken: dict[tuple[str, str], int] = {}

    def add(self, section: Section) -> None:
        name = unique_name(section.name, self.taken, section.type)
        self.sections.append(section if name == section.name else dataclasses.replace(section, name=name))

    def app(self, name: str, body: Any) -> None:
        if name != "http" or not isinstance(body, dict):
            self.add(Section("app", name, settings=_flatten(body, name)))
            return
        servers = _dict(body.get("servers"))
        rest = {k: v for k, v in body.items() if k != "servers"}
        self.add(Section("app", "http", settings=_flatten(rest, "http")))
        for server_name in sorted(servers):
            self.server(server_name, servers[server_name])

    def server(self, name: str, body: Any) -> None:
        body = _dict(body)
        routes = _list(body.get("routes"))
        rest = {k: v for k, v in body.items() if k != "routes"}
        rules = tuple(Rule("routes", _route_text(r)) for r in routes)
        self.add(Section("server", name, settings=_flatten(rest, ""), rules=rules))
        self.routes(routes, prefix=name)

    def routes(self, routes: list[Any], prefix: str) -> None:
        for route in routes:
            if not isinstance(route, dict):
                continue
            # A secret in a matcher shows as a plain `****` in the name, so the section keeps its
            # identity when the secret changes (the route's rule says "secret changed").
            where = " › ".join(filter(None, [prefix, _match_text(route.get("match"), sealed=False)]))
            for handler in route.get("handle") or []:
                if not isinstance(handler, dict):
                    continue
                kind = str(handler.get("handler", "?"))
                if kind == "subroute":
                    inner = _list(handler.get("routes"))
                    rest = {k: v for k, v in handler.items() if k not in ("routes", "handler")}
                    rules = tuple(Rule("routes", _route_text(r)) for r in inner)
                    self.add(Section("subroute", where, settings=_flatten(rest, ""), rules=rules))
                    self.routes(inner, where)
                elif kind == "reverse_proxy":
                    self.add(_pool(where, handler))
                else:
                    rest = {k: v for k, v in handler.items() if k != "handler"}
                    self.add(Section("handler", f"{where} › {kind}", settings=_flatten(rest, "")))


def _pool(where: str, handler: dict[str, Any]) -> Section:
    balancing = handler.get("load_balancing") if isinstance(handler.get("load_balancing"), dict) else {}
    selection = (balancing or {}).get("selection_policy") or {}
    policy = str(selection.get("policy", "random")) if isinstance(selection, dict) else "random"
    weights = selection.get("weights") if isinstance(selection, dict) else None
    servers: list[Server] = []
    for i, upstream in enumerate(handler.get("upstreams") or []):
        if not isinstance(upstream, dict):
            continue
        dial = str(upstream.get("dial", upstream.get("lookup_srv", "")))
        host, port = split_host_port(dial)
        weight = weights[i] if isinstance(weights, list) and i < len(weights) and isinstance(weights[i], int) else 1
        options = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in upstream.items() if k != "dial"))
        servers.append(Server(dial, host, port, weight, options=options))
    rest = {k: v for k, v in handler.items() if k not in ("upstreams", "handler")}
    if isinstance(rest.get("load_balancing"), dict):
        rest["load_balancing"] = {k: v for k, v in rest["load_balancing"].items() if k != "selection_policy"}
    extra = (
        {k: v for k, v in selection.items() if k not in ("policy", "weights")} if isinstance(selection, dict) else {}
    )
    balance = " ".join([policy, *(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(extra.items()))])
    return Section(
        "reverse_proxy", where, settings=_flatten(rest, ""), servers=tuple(servers), balance=balance, is_pool=True
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _match_text(match: Any, *, sealed: bool = True) -> str:
    if not isinstance(match, list):
        return ""
    alternatives = []
    for matcher in match:
        if isinstance(matcher, dict):
            alternatives.append(" ".join(f"{k} {_compact(v, sealed)}" for k, v in sorted(matcher.items())))
    return " or ".join(alternatives)


def _route_text(route: Any) -> str:
    if not isinstance(route, dict):
        return _compact(route)
    handlers = [h.get("handler", "?") for h in route.get("handle") or [] if isinstance(h, dict)]
    parts = [_match_text(route.get("match")) or "(all)", "→", ", ".join(map(str, handlers)) or "(nothing)"]
    if route.get("terminal"):
        parts.append("(terminal)")
    if route.get("group"):
        parts.append(f"group {route['group']}")
    return " ".join(parts)


def _compact(value: Any, sealed: bool = True) -> str:
    """A matcher's value in one line; secrets in it (a `header` matcher on `Authorization`) masked."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return mask_text(",".join(value), sealed=sealed)
    return mask_text(json.dumps(value, sort_keys=True, separators=(",", ":")), sealed=sealed)


def _flatten(value: Any, path: str) -> tuple[Setting, ...]:
    """JSON leaves as settings keyed by their path (`tls.certificates[0]`), secrets sealed."""
    out: list[Setting] = []

    def walk(node: Any, where: str, secret: bool) -> None:
        if isinstance(node, dict) and node:
            for key in sorted(node):
                walk(node[key], f"{where}.{key}" if where else str(key), secret or secret_field(str(key)))
        elif isinstance(node, list) and node:
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]", secret)
        elif where or node not in ({}, []):  # an empty object at the root is no settings, not one
            text = json.dumps(node, sort_keys=True)
            out.append(Setting(where or "(value)", seal(text) if secret else mask_text(text, sealed=True)))

    walk(value, path, False)
    return tuple(out)
