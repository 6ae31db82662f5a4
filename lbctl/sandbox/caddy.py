"""Caddy's JSON config, rewritten to run in a sandbox (see `lbctl.sandbox`).

A Caddyfile is adapted to JSON first (`caddy adapt`, as a deploy does). Then:
- no admin endpoint, no `logging`, no `tls` or `pki` app (nothing is asked of an ACME CA),
  storage in the sandbox; automatic HTTPS is off and each server listens in plain HTTP on
  the sandbox's address, one port per port it had (Caddy's TLS is not reproduced: a rule
  on the connection's TLS state sees none);
- every `reverse_proxy` upstream dials its stub; the handler's backend is its `@id` when
  it has one, else its upstreams' dial addresses joined by commas (the set, as written);
  transports speak plain HTTP; health checks are off;
- `remote_ip` matchers read `X-Forwarded-For` (Caddy 2.6's `forwarded`), which carries a
  case's `source`.
"""

from __future__ import annotations

import json
from typing import Any

from lbctl.errors import SandboxUnavailable
from lbctl.sandbox import Launch, Setup, binary

SOURCE_HEADER = "X-Forwarded-For"


def backend_name(handler: dict[str, Any]) -> str:
    """How routing cases and reports name a `reverse_proxy` handler's upstream set."""
    if handler.get("@id"):
        return str(handler["@id"])
    return ",".join(str(u.get("dial", "")) for u in handler.get("upstreams") or [] if isinstance(u, dict))


def rewrite(main: bytes, setup: Setup, *, filename: str) -> Launch:
    caddy = binary("caddy")
    try:
        config = json.loads(main)
    except ValueError:
        from lbctl.errors import ParseError
        from lbctl.semantic.caddy import adapt_caddyfile

        try:
            config = json.loads(adapt_caddyfile(main.decode("utf-8", "replace"), filename=filename))
        except ParseError as exc:
            raise SandboxUnavailable(f"the Caddyfile could not be adapted for the sandbox: {exc}") from None
    if not isinstance(config, dict):
        raise SandboxUnavailable(f"{filename}: a Caddy config is a JSON object")
    work = setup.directory
    config["admin"] = {"disabled": True}
    config.pop("logging", None)
    config["storage"] = {"module": "file_system", "root": str(work / "storage")}
    apps: dict[str, Any] = config["apps"] if isinstance(config.get("apps"), dict) else {}
    for name in ("tls", "pki"):
        apps.pop(name, None)
    servers = (apps.get("http") or {}).get("servers") or {}
    for server_name, server in servers.items():
        _server(setup, server_name, server)
    config["apps"] = apps
    setup.write("caddy.json", json.dumps(config).encode())
    env = {"HOME": str(work), "XDG_DATA_HOME": str(work / "data"), "XDG_CONFIG_HOME": str(work / "config")}
    return Launch([caddy, "run", "--config", str(work / "caddy.json")], SOURCE_HEADER, env=env)


def _server(setup: Setup, name: str, server: dict[str, Any]) -> None:
    listen = []
    for address in server.get("listen") or [":443"]:
        text = str(address).split("/", 1)[-1]  # `tcp/:80`
        digits = text.rsplit(":", 1)[-1].split("-")[0]
        port = int(digits) if digits.isdigit() else None
        host, sandbox_port = setup.listen(name, port)
        listen.append(f"{host}:{sandbox_port}")
    server["listen"] = listen
    server["automatic_https"] = {"disable": True}
    for key in ("tls_connection_policies", "listener_wrappers", "logs", "protocols", "strict_sni_host"):
        server.pop(key, None)
    _walk(setup, server.get("routes") or [])
    for key in ("errors",):
        if isinstance(server.get(key), dict):
            _walk(setup, server[key].get("routes") or [])


def _walk(setup: Setup, node: Any) -> None:
    """Every `reverse_proxy` handler and `remote_ip` matcher, wherever routes nest them."""
    if isinstance(node, list):
        for item in node:
            _walk(setup, item)
        return
    if not isinstance(node, dict):
        return
    if node.get("handler") == "reverse_proxy":
        _proxy(setup, node)
    remote = node.get("remote_ip")
    if isinstance(remote, dict) and "ranges" in remote:
        remote["forwarded"] = True
    for value in node.values():
        _walk(setup, value)


def _proxy(setup: Setup, handler: dict[str, Any]) -> None:
    if handler.get("dynamic_upstreams"):
        raise SandboxUnavailable("a reverse_proxy with dynamic upstreams cannot be stubbed by the sandbox")
    backend = backend_name(handler)
    for upstream in handler.get("upstreams") or []:
        if isinstance(upstream, dict):
            upstream.pop("max_requests", None)
            upstream["dial"] = setup.stub(backend, str(upstream.get("dial", "")))
    handler.pop("health_checks", None)
    transport = handler.get("transport")
    if isinstance(transport, dict):
        handler["transport"] = {"protocol": "http"}
