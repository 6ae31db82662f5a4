"""The `http` transport: Caddy's admin API (`api = "http://127.0.0.1:2019"`).

Caddy has no config file to swap: its running config is a JSON document behind the
API, replaced whole and atomically (a config Caddy cannot load gets 400 and the old one
keeps running). The file-shaped transport contract maps onto it like this:

- `read_file` = `GET /config/` (the running config, or None when Caddy runs none);
- `write_staged` keeps the bytes in a local temp file (validated there with `caddy validate`)
  and returns its path;
- `swap` reads the running config (kept under `keep`, for `restore`) and its ETag, and
  arms the change; the kind's reload applies it with `POST /config/` and `If-Match`, so a
  change someone made in between is refused (412) rather than overwritten, and Caddy's own
  refusal (400) is a failed reload, handled (restored, recorded) like any other;
- `restore` arms the kept config, which the next reload loads with `POST /load`;
- `lock` is a local flock keyed by the API URL: it serialises lbctl runs on this machine
  only (the admin API has no lock of its own);
- `run` and `unix_request` are not available: nothing runs on the LB host over HTTP.

Caddy 2.6 answers `GET /config/` with an ETag in an HTTP *trailer* (which http.client
drops); it is `"<path> <FNV-1a 32 of the body>"`, so lbctl computes it from the body.
`POST /load` ignores If-Match in 2.6; `POST /config/` (which replaces the whole config
the same way) honours it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lbctl import retry
from lbctl.config import Target
from lbctl.errors import ApiRefused, ConfigError, Refused, TransientError
from lbctl.lock import hold_flock
from lbctl.transports.base import RunResult, SocketUnavailable, Transport


def fnv1a_32(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def canonical_json(data: bytes) -> bytes:
    """Sorted, compact JSON: the form in which lbctl compares Caddy configs."""
    return json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class _Armed:
    data: bytes
    etag: str | None  # None: load unconditionally (a restore)


class HttpTransport(Transport):
    name = "http"

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.api = (target.api or "").rstrip("/")
        parts = urlsplit(self.api)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(
                f"targets.{target.name}.api: {target.api!r} is not an http://host:port URL",
                hint='e.g. api = "http://127.0.0.1:2019" (Caddy\'s admin endpoint)',
            )
        self._host, self._port = parts.hostname, parts.port or 80
        self._kept: dict[str, bytes] = {}
        self._armed: _Armed | None = None
        self.loaded: bytes | None = None  # the last config this transport loaded

    @property
    def where(self) -> str:
        return self.api

    def open(self) -> None:
        try:
            self._request("GET", "/config/")  # reachable now, or a TransientError to retry
        except SocketUnavailable as exc:
            # Refused at once: nothing listens there. Caddy keeps its admin endpoint up across loads,
            # so this is a wrong `api` or a stopped Caddy, not a network to wait for.
            raise ConfigError(
                f"targets.{self.target.name}.api: nothing answers at {self.api} ({exc.reason})",
                hint="set api to Caddy's admin endpoint (its `admin.listen`), and check that Caddy runs there",
            ) from None

    def get(self, path: str) -> tuple[int, bytes]:
        """One GET on the admin API: (status, body)."""
        return self._request("GET", path)

    # -- HTTP --------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self.target.connect_timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        except ConnectionRefusedError as exc:
            raise SocketUnavailable(f"{self.api}{path}: {exc}", exc.strerror or "Connection refused") from None
        except (OSError, http.client.HTTPException) as exc:
            raise TransientError(f"{self.api}{path}: {exc}") from None
        finally:
            conn.close()

    def running(self) -> bytes:
        """The running config exactly as Caddy serialises it (the body its ETag hashes)."""
        status, body = self._request("GET", "/config/")
        if status != 200:
            raise TransientError(f"GET {self.api}/config/ answered {status}: {body[:200]!r}")
        return body

    def apply(self) -> str:
        """Load the armed config; returns a one-line detail. `ApiRefused` if Caddy says no."""
        armed = self._armed
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
            # Caddy restarts its admin listener on loads, so an answer can be lost after the load
            # took: look before loading again (a second If-Match load would wrongly get 412).
            if tries > 1 and canonical_json(self.running()) == canonical_json(armed.data):
                return 200, b""
            return self._request("POST", path, armed.data, headers)

        status, body = retry.call(retry.network(self.target.retries), load)
        self._armed = None
        if status == 412:
            raise Refused(
                f"the running Caddy config changed at {self.api} after lbctl read it (If-Match failed); "
                "nothing was loaded",
                hint="someone else is changing this Caddy: see `lbctl diff TARGET --live`, then deploy again",
            )
        if status != 200:
            raise ApiRefused(status, _error_text(body))
        self.loaded = armed.data
        return "loaded with If-Match" if armed.etag is not None else "loaded"

    # -- the transport contract -----------------------------------------------------------

    def run(self, argv: Sequence[str], *, check: bool = False, timeout: float = 60.0) -> RunResult:
        raise ConfigError(
            f"targets.{self.target.name}: the http transport cannot run `{argv[0] if argv else ''}` on the LB "
            "host (it only speaks to Caddy's admin API)",
            hint="use http/tcp/balance checks for Caddy targets, or reach the host with an ssh target",
        )

    def read_file(self, path: str) -> bytes | None:
        body = self.running()
        if body.strip() in (b"", b"null"):
            return None
        return canonical_json(body)

    def write_staged(self, path: str, data: bytes) -> str:
        fd, staged = tempfile.mkstemp(prefix="lbctl-caddy-stage-", suffix=".json")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return staged

    def swap(self, staged: str, path: str, keep: str) -> None:
        data = Path(staged).read_bytes()
        body = self.running()
        self._kept[keep] = body
        self._armed = _Armed(data, f'"/config/ {fnv1a_32(body):08x}"')
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)

    def restore(self, keep: str, path: str) -> None:
        try:
            kept = self._kept[keep]
        except KeyError:
            raise TransientError(f"no kept config {keep!r} in this operation") from None
        self._armed = _Armed(kept, None)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def unix_request(self, socket_path: str, command: str, *, timeout: float = 5.0) -> str:
        raise ConfigError(f"targets.{self.target.name}: the http transport has no UNIX sockets")

    @contextlib.contextmanager
    def lock(self, name: str, info: str) -> Iterator[None]:
        digest = hashlib.sha256(self.api.encode()).hexdigest()[:16]
        with hold_flock(Path(tempfile.gettempdir()) / "lbctl-locks" / f"http-{digest}.lock", info):
            yield


def _error_text(body: bytes) -> str:
    try:
        message = json.loads(body).get("error", "")
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace")
    return str(message).strip()[:1000] or "(no message)"
