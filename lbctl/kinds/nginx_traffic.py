"""nginx's per-server traffic, counted from its access log.

Open-source nginx keeps no per-upstream counters (`stub_status` is global), so the
`balance` check counts log lines: an access log whose `log_format` holds `$upstream_addr`
(and `$status`) says which server each request went to. The live config (one file, read
through the transport, parsed by `lbctl.semantic.nginx`) says which upstream block and
server an address belongs to.

Counters are cumulative from an *anchor*: a point in the log chosen on the first read,
a little before the baseline so the pre-change spread is known. A `Snapshot`'s process
is the log file's identity and that anchor: a rotated or truncated log starts a new one,
and so does a reload (the kind re-anchors when the worker generation changes).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field

from lbctl.checks.counters import ServerCounters, Snapshot
from lbctl.errors import ConfigError
from lbctl.semantic.model import Section, Server

# How much of the log before the baseline is read, to know the spread before the change.
TAIL_BYTES = 256 * 1024
LOG_FORMAT_HINT = (
    "add to http {}: log_format lbctl '$proxy_host $status $upstream_addr'; and "
    "access_log /var/log/nginx/lbctl.log lbctl; (no `buffer=`: lbctl reads the lines as they come)"
)
# nginx's balancing methods in the balance check's words; `sticky` (NGINX Plus) pins a client
# to a server whatever the method, as a cookie does in HAProxy.
_ALGORITHMS = {"ip_hash": "source", "hash": "hash", "least_conn": "leastconn", "random": "random", "sticky": "sticky"}
_NOT_HTTP = ("stream", "mail")  # their log_format, access_log and upstreams are not the http access log's
_VARIABLE = re.compile(r"(\$\{?[A-Za-z0-9_]+\}?)")
_ADDR_SPLIT = re.compile(r"\s*,\s*|\s+:\s+")


@dataclass(frozen=True)
class LiveView:
    """What the balance check needs from an nginx config (its main file only), from its semantic model."""

    upstreams: dict[str, Section]  # the `upstream` blocks of `http`, by name
    formats: dict[str, str]  # log_format name → format string
    access_logs: tuple[tuple[str, str], ...]  # (path, format name), in config order
    pid: str | None


def read_view(text: str, *, filename: str) -> LiveView:
    from lbctl.semantic import nginx

    model = nginx.parse(text, filename=filename)
    formats: dict[str, str] = {"combined": ""}
    logs: list[tuple[str, str]] = []
    pid: str | None = None
    for section in model.sections:
        if section.type.startswith(_NOT_HTTP):
            continue
        for d in section.directives:
            if d.name == "pid" and section.type == "main" and d.args:
                pid = d.args[0]
            elif d.name == "log_format" and d.args:
                formats[d.args[0]] = "".join(a for a in d.args[1:] if not a.startswith("escape="))
            elif d.name == "access_log" and d.args and d.args[0] != "off":
                logs.append((d.args[0], d.args[1] if len(d.args) > 1 and "=" not in d.args[1] else "combined"))
    upstreams = {s.name: s for s in model.sections if s.type == "upstream"}
    return LiveView(upstreams, formats, tuple(logs), pid)


def algorithm(upstream: Section) -> str:
    """The upstream's balancing method in the words of the balance check (`source` for `ip_hash`)."""
    return _ALGORITHMS.get((upstream.balance or "").split(" ", 1)[0], "roundrobin")


def max_conns(server: Server) -> int | None:
    value = dict(server.options).get("max_conns", "0")
    return int(value) if value.isdigit() and int(value) > 0 else None


def pick_log(view: LiveView, wanted: str | None, target: str) -> tuple[str, re.Pattern[str]]:
    """The access log to count and a pattern for its lines; `ConfigError` when there is none usable."""
    candidates = [(p, f) for p, f in view.access_logs if wanted is None or p == wanted]
    if wanted is not None and not candidates:
        raise ConfigError(
            f"targets.{target}.access_log: {wanted} is not an access_log of the live nginx config",
            hint=LOG_FORMAT_HINT,
        )
    for path, name in candidates:
        fmt = view.formats.get(name)
        if fmt is None:
            continue
        if "$upstream_addr" in fmt and "$status" in fmt:
            if "$proxy_host" not in fmt and _shared_addresses(view):
                raise ConfigError(
                    f"targets.{target}: the same server address is in several upstream blocks, so "
                    f"log_format {name} needs $proxy_host to tell them apart",
                    hint=LOG_FORMAT_HINT,
                )
            if "$upstream_addr" in path or "$" in path:
                raise ConfigError(f"targets.{target}: access_log {path} has variables in its path; set access_log")
            return path, line_pattern(fmt)
    raise ConfigError(
        f"targets.{target}: the balance check on nginx counts requests per server from an access log "
        "whose log_format has $upstream_addr and $status, and the live config has none",
        hint=LOG_FORMAT_HINT,
    )


def _shared_addresses(view: LiveView) -> bool:
    seen: set[str] = set()
    for upstream in view.upstreams.values():
        for server in upstream.servers:
            if server.name in seen:
                return True
            seen.add(server.name)
    return False


def line_pattern(fmt: str) -> re.Pattern[str]:
    """A regex for one log line of `fmt`: groups `addr`, `status` and (if logged) `host`."""
    regex = "^"
    named: set[str] = set()
    for part in _VARIABLE.split(fmt):
        if not part.startswith("$"):
            regex += re.escape(part)
            continue
        var = part.strip("${}")
        group = {"upstream_addr": "addr", "status": "status", "proxy_host": "host"}.get(var)
        if group and group not in named:
            named.add(group)
            regex += r"(?P<status>\d{3})" if group == "status" else f"(?P<{group}>.*?)"
        else:
            regex += ".*?"
    return re.compile(regex + "$")


@dataclass
class Tally:
    """Cumulative counts from the anchor, per (upstream, server address) and per upstream."""

    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    server_answers: dict[tuple[str, str], int] = field(default_factory=dict)
    server_5xx: dict[tuple[str, str], int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    answers_5xx: dict[str, int] = field(default_factory=dict)

    def add_lines(self, text: str, pattern: re.Pattern[str], view: LiveView) -> None:
        index = address_index(view)
        for line in text.splitlines():
            found = pattern.match(line)
            if found is None:
                continue
            status = int(found.group("status"))
            host = found.groupdict().get("host") or ""
            tried = [a for a in _ADDR_SPLIT.split(found.group("addr").strip()) if a and a != "-"]
            last_upstream = ""
            last_key: tuple[str, str] | None = None
            for addr in tried:
                if addr in view.upstreams:  # "no live upstreams": nginx logs the upstream's name
                    last_upstream, last_key = addr, None
                    continue
                owners = index.get(addr, [])
                owner = next((o for o in owners if o[0] == host), owners[0] if len(owners) == 1 else None)
                if owner is None:
                    continue
                self.attempts[owner] = self.attempts.get(owner, 0) + 1
                last_upstream, last_key = owner[0], owner
            if not last_upstream:
                continue  # not proxied to an upstream block (static files, `return`, a bare proxy_pass)
            self.requests[last_upstream] = self.requests.get(last_upstream, 0) + 1
            if status >= 500:
                self.answers_5xx[last_upstream] = self.answers_5xx.get(last_upstream, 0) + 1
            if last_key is not None:
                self.server_answers[last_key] = self.server_answers.get(last_key, 0) + 1
                if status >= 500:
                    self.server_5xx[last_key] = self.server_5xx.get(last_key, 0) + 1

    def snapshot(self, process: str, view: LiveView) -> Snapshot:
        servers = []
        for upstream in view.upstreams.values():
            for s in upstream.servers:
                key = (upstream.name, s.name)  # a server is named by its address as written
                servers.append(
                    ServerCounters(
                        backend=upstream.name,
                        server=s.name,
                        sessions=self.attempts.get(key, 0),
                        # nginx has no active health checks (open source): a server is in service
                        # unless the config marks it `down`; passive failures are not visible.
                        status="MAINT" if s.disabled else "no check",
                        weight=s.weight,
                        limit=max_conns(s),
                        http_5xx=self.server_5xx.get(key, 0),
                        http_total=self.server_answers.get(key, 0),
                        backup=s.backup,
                    )
                )
        names = list(view.upstreams)
        return Snapshot(
            process=process,
            servers=tuple(servers),
            backend_sessions={n: self.requests.get(n, 0) for n in names},
            backend_5xx={n: self.answers_5xx.get(n, 0) for n in names},
            backend_responses={n: self.requests.get(n, 0) for n in names},
        )


def address_index(view: LiveView) -> dict[str, list[tuple[str, str]]]:
    """`$upstream_addr` spelling (ip:port) → the (upstream, server) entries it can be."""
    index: dict[str, list[tuple[str, str]]] = {}
    for upstream in view.upstreams.values():
        for server in upstream.servers:
            for spelled in _spellings(server.name):
                index.setdefault(spelled, []).append((upstream.name, server.name))
    return index


def _spellings(address: str) -> list[str]:
    if address.startswith("unix:"):
        return [address]
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or (":" in host and not host.endswith("]")):
        host, port = address, "80"
    bare = host.strip("[]")
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        # A name: nginx resolved it when it loaded the config. Resolve it here the same way
        # (best effort: over ssh this is lbctl's resolver, not the LB host's).
        try:
            infos = socket.getaddrinfo(bare, int(port), type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return [address]
        return sorted({_join(str(info[4][0]), port) for info in infos})
    return [_join(str(ip), port)]


def _join(ip: str, port: str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
