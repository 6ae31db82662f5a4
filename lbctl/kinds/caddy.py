"""Caddy 2 over its admin API (the `http` transport).

The store holds Caddy JSON, or a Caddyfile that `prepare` adapts with `caddy adapt`
(so the binary must be installed where lbctl runs). Validation is `caddy validate` on
lbctl's machine, on the exact JSON that will be loaded; it cannot see runtime errors
(a port already in use), which Caddy reports when the config is loaded: that is a failed
reload, and the previous config is loaded back.

Loading is the reload, done by the Caddy driver (`lbctl.drivers.caddy`), and it is confirmed
by reading the running config back: `GET /config/` must equal what was loaded, compared as
sorted JSON.

The loaded config must keep Caddy's admin endpoint where lbctl reaches it: a config
without `admin.listen` would move the API to Caddy's default (localhost:2019), and lbctl
could neither confirm nor undo the change, so such a config is refused before anything
is loaded.

Traffic: Caddy 2.6 counts no requests per upstream (`/reverse_proxy/upstreams` gives
requests in flight and recent failures; `/metrics` gives health). The `balance` check on a
Caddy target judges lbctl's own probes instead, counted per backend-identifying response
header (`X-Backend`), with health from the admin API: see `lbctl.kinds.caddy_traffic`
for how, and for what it cannot see.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lbctl.checks.counters import Snapshot
from lbctl.config import Target
from lbctl.errors import ConfigError, LbctlError, ValidationFailed
from lbctl.kinds.base import Kind
from lbctl.transports.base import Transport
from lbctl.transports.http import HttpTransport, canonical_json

if TYPE_CHECKING:
    from lbctl.kinds import caddy_traffic
    from lbctl.kinds.conformance import Conformance
    from lbctl.store.bundle import Bundle

VALIDATE_TIMEOUT = 60


class CaddyKind(Kind):
    probes_itself = True
    name = "caddy"
    default_validate = ("caddy", "validate", "--config", "{path}")

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._tally: caddy_traffic.Tally | None = None  # lbctl's probes under the running config
        self.probes_sent = 0  # probes this kind sent and read for traffic readings (all configs)

    def _api(self, transport: Transport) -> HttpTransport:
        if not isinstance(transport, HttpTransport):
            raise ConfigError(
                f"targets.{self.target.name}: caddy targets are reached through the admin API",
                hint='set transport = "http" and api = "http://127.0.0.1:2019"',
            )
        return transport

    # -- what is pushed, and how it compares ------------------------------------------------

    def prepare(self, content: bytes) -> bytes:
        """JSON as it is; a Caddyfile adapted to JSON with `caddy adapt`.

        A source named `*.json` must be JSON; any other is JSON if it parses as JSON.
        """
        try:
            json.loads(content)
        except ValueError as exc:
            if self.target.source.endswith(".json"):
                where = f"{self.target.source}:{getattr(exc, 'lineno', '?')}"
                raise ValidationFailed(f"{where}: not valid JSON ({exc}); nothing was pushed") from None
            from lbctl.semantic.caddy import adapt_caddyfile

            try:
                adapted = adapt_caddyfile(content.decode("utf-8", "replace"), filename=self.target.source)
            except ValidationFailed as failed:
                raise ValidationFailed(f"{failed.message}; nothing was pushed", hint=failed.hint) from None
            return adapted.encode()
        return content

    def canonical(self, content: bytes) -> bytes:
        try:
            return canonical_json(content)
        except ValueError:
            pass
        try:
            return canonical_json(self.prepare(content))
        except (ValueError, ValidationFailed):
            return content

    # -- validate -----------------------------------------------------------------------------

    def validate(self, transport: Transport, staged: str) -> str:
        """`validate_config` of the file `staged` where lbctl runs (`lbctl check` validates a
        Caddy target exactly as its deploy does)."""
        with open(staged, "rb") as handle:
            return self.validate_config(handle.read(), staged)

    def validate_config(self, data: bytes, staged: str | None = None) -> str:
        """`caddy validate` here, on the JSON that will be loaded, and the admin endpoint kept.

        It runs where lbctl runs (the admin API has no dry run), on `staged` if given (a file
        holding `data`), else on a temp file.
        """
        self._check_admin(data)
        if staged is None:
            with tempfile.TemporaryDirectory(prefix="lbctl-caddy-validate-") as tmp:
                path = os.path.join(tmp, "caddy.json")
                with open(path, "wb") as handle:
                    handle.write(data)
                return self._caddy_validate(path)
        return self._caddy_validate(staged)

    def _caddy_validate(self, staged: str) -> str:
        argv = self.validate_argv(staged)
        if shutil.which(argv[0]) is None and not os.path.isabs(argv[0]):
            raise ValidationFailed(
                f"cannot validate the Caddy config: `{argv[0]}` is not installed where lbctl runs",
                hint=f"install Caddy here, or set targets.{self.target.name}.validate",
            )
        with tempfile.TemporaryDirectory(prefix="lbctl-caddy-") as home:
            env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home}
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, env=env, timeout=VALIDATE_TIMEOUT, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ValidationFailed(f"`{shlex.join(argv)}` could not run: {exc}") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]
            raise ValidationFailed(
                f"caddy rejected the candidate config (`{argv[0]} {argv[1]}` exited {done.returncode});"
                " nothing was changed on the LB",
                details="\n".join(lines).replace(staged, self.target.source),
            )
        return "valid configuration"

    def _check_admin(self, data: bytes) -> None:
        try:
            config: Any = json.loads(data)
        except ValueError as exc:
            raise ValidationFailed(f"the Caddy config is not JSON: {exc}; nothing was changed on the LB") from None
        admin = config.get("admin") if isinstance(config, dict) else None
        admin = admin if isinstance(admin, dict) else {}
        api = urlsplit(self.target.api or "")
        wanted = f"{api.hostname}:{api.port or 80}"
        listen = str(admin.get("listen") or "localhost:2019").removeprefix("tcp/")
        if admin.get("disabled") or not _same_endpoint(listen, wanted):
            raise ValidationFailed(
                f"this config would move Caddy's admin API from {wanted} to "
                f"{'nowhere (disabled)' if admin.get('disabled') else listen}: lbctl could not confirm or undo "
                "the change; nothing was changed on the LB",
                hint=f'keep "admin": {{"listen": "{wanted}"}} in the config (Caddyfile: `{{ admin {wanted} }}`)',
            )

    # -- load ("reload") and confirm ----------------------------------------------------------

    def check_endpoints(self, transport: Transport) -> None:
        """`api` must be Caddy's admin API: `GET /config/` answers 200 with JSON."""
        api = self._api(transport)
        status, body = api.get("/config/")
        try:
            json.loads(body or b"null")
            is_json = True
        except ValueError:
            is_json = False
        if status != 200 or not is_json:
            shown = body[:120].decode("utf-8", "replace").strip()
            raise ConfigError(
                f"targets.{self.target.name}.api: {api.where} is not Caddy's admin API "
                f"(GET /config/ answered {status}{': ' + repr(shown) if shown else ''})",
                hint="set api to Caddy's admin endpoint (its `admin.listen`, default http://localhost:2019)",
            )

    def reload_marker(self, transport: Transport) -> object:
        return None

    def reload(self, transport: Transport) -> None:
        """Caddy is loaded through its API by its driver (`lbctl.drivers.caddy`), never by a command."""
        self._api(transport)
        raise RuntimeError("a Caddy target is loaded by lbctl.drivers.caddy.CaddyDriver")

    def confirm_reload(self, transport: Transport, marker: object) -> str:
        self._api(transport)
        raise RuntimeError("a Caddy target's load is confirmed by lbctl.drivers.caddy.CaddyDriver")

    # -- what the running Caddy holds (lbctl.kinds.conformance) -------------------------------------

    def conformance(self, transport: Transport, deployed: Bundle) -> Conformance:
        """`GET /config/` vs the deployed JSON, compared canonically; differences named by the differ."""
        from lbctl.errors import TransientError
        from lbctl.kinds.conformance import Conformance, unknown

        try:
            running = self._api(transport).read_file("")
        except (TransientError, LbctlError) as exc:
            return unknown(f"cannot read {self.target.api}/config/: {exc}")
        how = f"GET {self.target.api}/config/"
        expected = self.canonical(deployed.main)
        if running is None:
            return Conformance(True, ("Caddy runs no config",), how)
        if self.canonical(running) == expected:
            return Conformance(True, (), f"{how} returns the deployed config")
        return Conformance(True, tuple(_named_changes(expected, running)), how)

    # -- traffic ------------------------------------------------------------------------------

    def traffic_snapshot(self, transport: Transport) -> Snapshot:
        """A burst of lbctl's probes counted per upstream (cumulative while the config is the same)."""
        from lbctl.kinds import caddy_traffic

        first = self._tally is None
        if self._tally is None:
            self._tally = caddy_traffic.Tally()
        sent = self._tally.probes, self._tally.epoch
        try:
            return caddy_traffic.read(self._api(transport), self.target, self._tally, first=first)
        finally:
            self.probes_sent += self._tally.probes - (sent[0] if self._tally.epoch == sent[1] else 0)

    def balance_algorithms(self, transport: Transport) -> dict[str, str]:
        from lbctl.kinds import caddy_traffic

        return caddy_traffic.algorithms(self._api(transport).running())


def _named_changes(expected: bytes, running: bytes) -> list[str]:
    """What the running config does differently, as the differ names it ("deployed → running")."""
    from lbctl.errors import ParseError
    from lbctl.semantic import diff_texts

    fallback = ["GET /config/ differs from the deployed config"]
    try:
        diff = diff_texts(
            "caddy", expected.decode("utf-8", "replace"), running.decode("utf-8", "replace"), filename="caddy.json"
        )
    except (ParseError, ValueError):
        return fallback
    named = [f"{c.text} (deployed → running)" for c in diff.changes]
    return named or fallback


def _same_endpoint(listen: str, wanted: str) -> bool:
    host, _, port = listen.rpartition(":")
    want_host, _, want_port = wanted.rpartition(":")
    loopback = {"localhost", "127.0.0.1", "::1", "[::1]"}
    same_host = host == want_host or (host in loopback and want_host in loopback) or host in ("", "0.0.0.0")
    return same_host and port == want_port
