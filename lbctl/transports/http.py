"""The `http` transport: a plain HTTP client of Caddy's admin API (`api = "http://127.0.0.1:2019"`).

Caddy has no config file to swap: staging, loading and restoring its config is the Caddy
driver's business (`lbctl.drivers.caddy`). What the transport contract asks of every
target maps onto the API like this:

- `read_file` = `GET /config/`, the running config (None when Caddy runs none), in the
  canonical (sorted, compact) JSON lbctl compares Caddy configs in; `running()` is the body
  exactly as Caddy serialises it (its ETag hashes it); `get` and `post` are single requests;
- `lock` is a local flock keyed by the API URL: it serialises lbctl runs on this machine
  only (the admin API has no lock of its own);
- nothing runs on the LB host over HTTP: `run` is refused, and there are no files to stage.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from lbctl.config import Target
from lbctl.errors import ConfigError, TransientError
from lbctl.lock import hold_flock
from lbctl.transports.base import RunResult, SocketUnavailable, Transport


def canonical_json(data: bytes) -> bytes:
    """Sorted, compact JSON: the form in which lbctl compares Caddy configs."""
    return json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


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

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """One POST on the admin API: (status, body)."""
        return self._request("POST", path, body, headers)

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

    @contextlib.contextmanager
    def lock(self, name: str, info: str) -> Iterator[None]:
        digest = hashlib.sha256(self.api.encode()).hexdigest()[:16]
        with hold_flock(Path(tempfile.gettempdir()) / "lbctl-locks" / f"http-{digest}.lock", info):
            yield
