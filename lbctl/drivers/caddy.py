"""Caddy over its admin API: no config file on the LB, so nothing pretends to be one.

Caddy's running config is a JSON document behind the API, replaced whole and atomically
(a config Caddy cannot load gets 400 and the old one keeps running). The contract's steps:

- `stage` keeps the candidate in memory (there is nothing to write on the LB host);
  `validate` runs `caddy validate` where lbctl runs, on the exact JSON that will be loaded,
  and refuses a config that would move the admin API away from the target's `api`;
- `swap` reads the running config (kept for `restore`) and its ETag; nothing is loaded yet;
- `reload` loads the candidate with `POST /config/` and `If-Match`, so a change someone made
  in between is refused (412, `Refused`: nothing was loaded) rather than overwritten, and
  Caddy's own refusal (4xx/5xx) is a failed reload (`ReloadFailed`); it is confirmed by
  reading `GET /config/` back, compared as sorted JSON;
- `restore` loads the kept config with `POST /load` (unconditionally: it is lbctl's own).

Caddy 2.6 answers `GET /config/` with an ETag in an HTTP *trailer* (which http.client
drops); it is `"<path> <FNV-1a 32 of the body>"`, so lbctl computes it from the body.
`POST /load` ignores If-Match in 2.6; `POST /config/` (which replaces the whole config
the same way) honours it. Caddy restarts its admin listener on loads, so an answer can be
lost after the load took: a retried load looks first, and does not load twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lbctl import retry
from lbctl.config import Target
from lbctl.drivers.base import Driver
from lbctl.drivers.placement import Placement
from lbctl.errors import ApiRefused, ConfigError, Refused, TransientError
from lbctl.kinds.base import Kind, ReloadFailed
from lbctl.kinds.caddy import CaddyKind
from lbctl.store.bundle import Bundle
from lbctl.transports.base import Transport
from lbctl.transports.http import HttpTransport, canonical_json


def fnv1a_32(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


@dataclass(frozen=True)
class Load:
    """A config to load, and the ETag the running one must still have (None: load unconditionally)."""

    data: bytes
    etag: str | None


class CaddyDriver(Driver):
    def __init__(self, target: Target, kind: Kind, transport: Transport) -> None:
        super().__init__(target, kind, transport)
        if not isinstance(transport, HttpTransport) or not isinstance(kind, CaddyKind):
            raise ConfigError(
                f"targets.{target.name}: caddy targets are reached through the admin API",
                hint='set transport = "http" and api = "http://127.0.0.1:2019"',
            )
        self.api: HttpTransport = transport
        self.caddy: CaddyKind = kind
        self.kept: bytes | None = None  # the config Caddy ran before the swap
        self.next_load: Load | None = None  # what the next reload loads
        self.loaded: bytes | None = None  # the last config this driver loaded

    def placement(self, bundle: Bundle, managed: Iterable[str] = ()) -> Placement:
        self.bundle = bundle
        self.placed = _ApiPlacement(self, bundle.main)
        return self.placed

    def validate(self, staged: str | None = None) -> str:
        if self.bundle is None:
            raise RuntimeError("no candidate was staged on this driver")
        return self.caddy.validate_config(self.bundle.main)

    def reload(self, marker: object) -> str:
        try:
            self.load()
        except ApiRefused as exc:
            raise ReloadFailed(f"{exc}; Caddy keeps running the previous config") from None
        if not self.target.confirm_reload:
            return "reload command exited 0; not confirmed (confirm_reload = false)"
        if self.loaded is None:
            return "nothing loaded"
        running = self.api.read_file("")
        if running is None or running != canonical_json(self.loaded):
            raise ReloadFailed(f"{self.api.where}/config/ does not return the config lbctl loaded")
        return "Caddy answered 200 and GET /config/ returns the loaded config"

    def still_running(self, marker: object) -> bool:
        return False

    def load(self) -> str:
        """Load what the swap or restore armed; returns a one-line detail. `ApiRefused` if Caddy says no."""
        armed = self.next_load
        if armed is None:
            return "nothing to load"
        headers = {"Content-Type": "application/json"}
        path = "/load"
        if armed.etag is not None:
            headers["If-Match"] = armed.etag
            path = "/config/"
        tries = 0

        def load() -> tuple[int, bytes]:
            nonlocal tries
            tries += 1
            # An answer lost after the load took: look before loading again (a second If-Match
            # load would wrongly get 412).
            if tries > 1 and canonical_json(self.api.running()) == canonical_json(armed.data):
                return 200, b""
            return self.api.post(path, armed.data, headers)

        status, body = retry.call(retry.network(self.target.retries), load)
        self.next_load = None
        if status == 412:
            raise Refused(
                f"the running Caddy config changed at {self.api.where} after lbctl read it (If-Match failed); "
                "nothing was loaded",
                hint="someone else is changing this Caddy: see `lbctl diff TARGET --live`, then deploy again",
            )
        if status != 200:
            raise ApiRefused(status, _error_text(body))
        self.loaded = armed.data
        return "loaded with If-Match" if armed.etag is not None else "loaded"


class _ApiPlacement(Placement):
    """A candidate for Caddy: held here until the reload loads it through the API."""

    def __init__(self, driver: CaddyDriver, data: bytes) -> None:
        self.driver, self.data = driver, data

    def stage(self) -> str:
        return f"{self.driver.api.where}/config/ (in memory until loaded)"

    def discard(self) -> None:
        """Nothing was written anywhere."""

    def swap(self) -> None:
        body = self.driver.api.running()
        self.driver.kept = body
        self.driver.next_load = Load(self.data, f'"/config/ {fnv1a_32(body):08x}"')

    def restore(self) -> None:
        if self.driver.kept is None:
            raise TransientError("no kept config in this operation")
        self.driver.next_load = Load(self.driver.kept, None)


def _error_text(body: bytes) -> str:
    import json

    try:
        message = json.loads(body).get("error", "")
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace")
    return str(message).strip()[:1000] or "(no message)"
