"""nginx's config, rewritten to run in a sandbox (see `lbctl.sandbox`).

The bundle (main file and the store files it includes) is parsed with crossplane, its
includes followed and combined into one file, then:
- the main context loses `user`, `pid`, `daemon`, `error_log`, `worker_processes`, and
  gets its own pid and error log in the sandbox, one worker, in the foreground;
- `listen` directives move to the sandbox's address, one port per port they had (`ssl`
  kept with a generated certificate; PROXY protocol and socket options dropped), and a
  server without `listen` gets nginx's default (80);
- upstream `server`s, and every `*_pass` to an address (FastCGI, gRPC, uwsgi too: the stub
  speaks HTTP, which is enough to tell where a request went), point at stubs; a pass to an
  upstream keeps its name, and `https://` becomes `http://`;
- logs are off, temp and cache paths are the sandbox's, TLS files are the generated ones;
- the `realip` module takes the client's address from `X-Lbctl-Source`, so `allow`/`deny`,
  `geo` and `$remote_addr` see a case's `source`. `stream` blocks are left out (the routing
  cases are HTTP requests).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lbctl.errors import SandboxUnavailable
from lbctl.sandbox import Launch, Setup, binary

SOURCE_HEADER = "X-Lbctl-Source"
_MAIN_DROPPED = frozenset(
    ["user", "pid", "daemon", "error_log", "worker_processes", "master_process", "lock_file", "working_directory"]
)
_DROPPED = frozenset(
    [
        "access_log",
        "error_log",
        "set_real_ip_from",
        "real_ip_header",
        "real_ip_recursive",
        "ssl_stapling",
        "ssl_stapling_file",
        "ssl_trusted_certificate",
        "ssl_client_certificate",
        "ssl_crl",
        "ssl_dhparam",
        "ssl_password_file",
        "ssl_session_ticket_key",
        "ssl_verify_client",
        "ssl_stapling_verify",
        "ssl_certificate",
        "ssl_certificate_key",
        "ssl_ecdh_curve",
        "ssl_conf_command",
        "ssl_early_data",
    ]
)
_PASSES = frozenset(["proxy_pass", "fastcgi_pass", "grpc_pass", "uwsgi_pass", "scgi_pass", "memcached_pass"])
_CACHE_PATHS = frozenset(["proxy_cache_path", "fastcgi_cache_path", "uwsgi_cache_path", "scgi_cache_path"])
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_UPSTREAM_KEPT = re.compile(r"^(weight|max_fails|fail_timeout|max_conns)=|^(backup|down)$")
_LISTEN_KEPT = frozenset(["default_server", "default", "ssl"])


def rewrite(main: bytes, setup: Setup, *, filename: str) -> Launch:
    import crossplane

    source = setup.write("source/" + (Path(filename).name or "nginx.conf"), main)
    for rel, data in setup.includes.items():
        setup.write(f"source/{rel}", data)
    parsed = crossplane.parse(str(source), combine=True, check_ctx=False, catch_errors=True)
    if parsed["errors"]:
        first = parsed["errors"][0]
        where = str(first.get("file", filename)).replace(str(source.parent) + "/", "")
        raise SandboxUnavailable(
            f"nginx config could not be read for the sandbox: {where}:{first.get('line')}: {first.get('error')}"
        )
    tree: list[dict[str, Any]] = parsed["config"][0]["parsed"]
    work = setup.directory
    upstreams = {str(d["args"][0]) for d in _walk(tree) if d["directive"] == "upstream" and d.get("args")}
    rewriter = _Rewriter(setup, upstreams)
    body = rewriter.main(tree)
    for name in ("logs", *(f"temp/{t}" for t in _TEMP_PATHS)):
        (work / name).mkdir(parents=True, exist_ok=True)
    setup.write("nginx.conf", crossplane.build(body).encode() + b"\n")
    nginx = binary("nginx")
    argv = [nginx, "-p", str(work) + "/", "-c", str(work / "nginx.conf"), "-e", str(work / "logs/error.log")]
    return Launch(argv, SOURCE_HEADER, check_argv=[*argv, "-t", "-q"])


def _walk(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for d in tree:
        found.append(d)
        found.extend(_walk(d.get("block") or []))
    return found


def _d(directive: str, *args: str, block: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    made: dict[str, Any] = {"directive": directive, "args": list(args)}
    if block is not None:
        made["block"] = block
    return made


class _Rewriter:
    def __init__(self, setup: Setup, upstreams: set[str]) -> None:
        self.setup = setup
        self.upstreams = upstreams
        self.ports: dict[int, tuple[str, int]] = {}  # the LB's port → the sandbox's listener

    def main(self, tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
        work = self.setup.directory
        out = [
            _d("daemon", "off"),
            _d("worker_processes", "1"),
            _d("pid", str(work / "nginx.pid")),
            _d("error_log", str(work / "logs/error.log"), "warn"),
        ]
        for d in tree:
            if d["directive"] in _MAIN_DROPPED or d["directive"] == "stream":
                continue
            if d["directive"] == "http":
                out.append(_d("http", block=self.http(d.get("block") or [])))
            else:
                out.append(self.copy(d))
        if not any(d["directive"] == "events" for d in out):
            out.append(_d("events", block=[]))
        return out

    def http(self, block: list[dict[str, Any]]) -> list[dict[str, Any]]:
        work = self.setup.directory
        out = [
            _d("access_log", "off"),
            _d("set_real_ip_from", "127.0.0.0/8"),
            _d("real_ip_header", SOURCE_HEADER),
            *(_d(f"{t}_temp_path", str(work / "temp" / t)) for t in _TEMP_PATHS),
        ]
        for d in block:
            if d["directive"] == "server":
                out.append(_d("server", block=self.server(d.get("block") or [])))
            elif d["directive"] == "upstream":
                out.append(_d("upstream", *d["args"], block=self.upstream(d["args"][0], d.get("block") or [])))
            elif d["directive"].endswith("_temp_path"):
                continue
            else:
                out.extend(self.inner([d]))
        return out

    def server(self, block: list[dict[str, Any]]) -> list[dict[str, Any]]:
        listens = [d for d in block if d["directive"] == "listen"] or [_d("listen", "80")]
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, int]] = set()
        tls = False
        for d in listens:
            address, params = self.listen(d["args"])
            tls = tls or "ssl" in params
            if address not in seen:
                seen.add(address)
                out.append(_d("listen", f"{address[0]}:{address[1]}", *params))
        if tls or any(d["directive"] == "ssl_certificate" for d in block):
            cert = str(self.setup.certificate())
            out += [_d("ssl_certificate", cert), _d("ssl_certificate_key", cert)]
        out += self.inner([d for d in block if d["directive"] != "listen"])
        return out

    def listen(self, args: list[str]) -> tuple[tuple[str, int], list[str]]:
        first = args[0] if args else "80"
        if first.startswith("unix:"):
            port = None
        else:
            tail = first.rsplit("]", 1)[-1]
            digits = tail.rsplit(":", 1)[-1]
            port = int(digits) if digits.isdigit() else 80
        params = [a for a in args[1:] if a in _LISTEN_KEPT]
        key = port if port is not None else -len(self.ports) - 1
        if key not in self.ports:
            self.ports[key] = self.setup.listen(f":{port}" if port else first, port, tls="ssl" in params)
        return self.ports[key], params

    def upstream(self, name: str, block: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for d in block:
            if d["directive"] == "server" and d["args"]:
                stub = self.setup.stub(name, d["args"][0])
                out.append(_d("server", stub, *(a for a in d["args"][1:] if _UPSTREAM_KEPT.match(a))))
            elif d["directive"] in ("resolver", "resolver_timeout", "ntlm", "keepalive_time"):
                continue
            else:
                out.append(self.copy(d))
        return out

    def inner(self, block: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for d in block:
            name = d["directive"]
            if name in _DROPPED or name.startswith(("proxy_ssl_", "grpc_ssl_", "uwsgi_ssl_")):
                continue
            if name in _PASSES and d["args"]:
                out.append(self.passes(name, d["args"][0]))
            elif name in _CACHE_PATHS and d["args"]:
                cache = self.setup.directory / "cache" / str(len(out))
                out.append(_d(name, str(cache), *d["args"][1:]))
            elif name == "server" and any(b["directive"] == "listen" for b in d.get("block") or []):
                out.append(_d("server", block=self.server(d.get("block") or [])))
            else:
                out.append(self.copy(d, inner=True))
        return out

    def passes(self, name: str, target: str) -> dict[str, Any]:
        """A `*_pass` as a `proxy_pass` to the upstream it names, or to a stub for its address."""
        rest = target.split("://", 1)[1] if "://" in target else target
        host, slash, uri = rest.partition("/")
        if "$" in host or host in self.upstreams:
            return _d("proxy_pass", f"http://{host}{slash}{uri}" if name == "proxy_pass" else f"http://{host}")
        stub = self.setup.stub(host, host)
        return _d("proxy_pass", f"http://{stub}{slash}{uri}" if name == "proxy_pass" else f"http://{stub}")

    def copy(self, d: dict[str, Any], *, inner: bool = False) -> dict[str, Any]:
        made = _d(d["directive"], *d["args"])
        if "block" in d:
            made["block"] = self.inner(d["block"]) if inner or d["directive"] != "events" else list(d["block"])
        return made
