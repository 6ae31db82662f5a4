"""Per-upstream traffic for Caddy 2.6, from lbctl's own probes (the `balance` check).

Caddy 2.6 counts no requests per upstream: `GET /reverse_proxy/upstreams` gives requests
**in flight** and recent failures, `/metrics` gives upstream health, and neither says where
the requests of a window went. So the Caddy kind measures the spread itself: each reading
sends a short burst of probes (sequential GETs, one new connection each) to the balance
check's `probe_url` (else the target's first http check) and counts the answers per value of
the `X-Backend` response header, which the backends (or Caddy, with
`header_down X-Backend {http.reverse_proxy.upstream.hostport}`) must set.

A header value that is an upstream's `dial` address in the running config is that upstream;
any other value (a backend's own name) is a server of its own. When names cannot be tied to
addresses, the configured upstreams that no name accounts for are listed as "unseen"
servers with no sessions, so "everything on one upstream" still shows. Health comes from
`/reverse_proxy/upstreams` (`fails`) and `/metrics` (`caddy_reverse_proxy_upstreams_healthy`).

Counts are cumulative within one lbctl process (the kind keeps the tally) and restart when
the running config changes: a snapshot's `process` names the running config (a hash) and
the count's epoch, so a window spanning a load (or a restore of the old config) starts
from zero, as it does for a new HAProxy worker.

What this cannot see: real users' traffic (every number is lbctl's probes, from one client
to one URL), per-client stickiness of hash/cookie policies, traffic on routes the probe URL
does not reach, and load (only requests in flight at the moment of reading). Because no
real traffic is counted, `backend_sessions` stays empty: the balance check judges the
probes' spread and sends its usual top-up probes, but never claims that real traffic moved.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lbctl.checks.counters import ServerCounters, Snapshot
from lbctl.config import BalanceCheck, HttpCheck, Target
from lbctl.errors import ConfigError
from lbctl.transports.http import HttpTransport, canonical_json

BACKEND_HEADER = "X-Backend"
PROBE_TIMEOUT = 1.0
# Per reading; the check reads twice a round when it tops up, so one round carries the 8 per
# upstream its "starved" rule needs. Sequential: a reading costs this many round trips.
PROBES_PER_UPSTREAM = 4
MIN_PROBES, MAX_PROBES = 8, 32
MAX_FAILURES_IN_A_ROW = 3  # a frontend that does not answer ends the burst early
# Caddy's selection policies that send one client (or one URL) to one upstream, or all to
# the first: lbctl's probes cannot judge their spread. Named as the balance check knows them.
POLICY_AS = {
    "first": "first",
    "ip_hash": "source",
    "client_ip_hash": "source",
    "uri_hash": "uri",
    "query": "url_param",
    "header": "hdr",
}
_HEALTHY = re.compile(r'^caddy_reverse_proxy_upstreams_healthy\{upstream="([^"]*)"\}\s+(\S+)', re.M)


@dataclass(frozen=True)
class Pool:
    """A `reverse_proxy` handler of the running config: its name and upstream entries in order."""

    name: str
    dials: tuple[str, ...]
    policy: str

    def weights(self) -> dict[str, int]:
        """Each distinct upstream and how many entries it has (Caddy 2.6's way to weight)."""
        return dict(Counter(self.dials))


@dataclass
class Tally:
    """What lbctl's probes saw under one running config."""

    config: str = ""  # hash of the running config the counts are for
    epoch: int = 0  # how many times the counts restarted (a config seen again is counted anew)
    by_value: Counter[str] = field(default_factory=Counter)
    answers: int = 0
    errors: int = 0  # 5xx answers
    unnamed: int = 0  # non-5xx answers without the header
    probes: int = 0

    @property
    def process(self) -> str:
        """The snapshot's `process`: changes whenever the counts restart."""
        return f"config {self.config} #{self.epoch}"

    def reset(self, config: str) -> None:
        self.epoch += 1
        self.config, self.by_value = config, Counter()
        self.answers = self.errors = self.unnamed = self.probes = 0


def probe_url(target: Target) -> str:
    spec = next((c for c in target.checks if isinstance(c, BalanceCheck)), None)
    url = (spec.probe_url if spec else None) or next((c.url for c in target.checks if isinstance(c, HttpCheck)), None)
    if url is None:
        raise ConfigError(
            f"targets.{target.name}: the balance check on Caddy counts its own probes; give it `probe_url` "
            "(or an http check) so lbctl can send them through the frontend"
        )
    return url


def pools_of(running: bytes) -> list[Pool]:
    from lbctl.semantic.caddy import parse

    model = parse(running.decode("utf-8", "replace"), filename="running.json")
    return [
        Pool(section.name, tuple(s.name for s in section.servers), (section.balance or "random").split()[0])
        for section in model.sections
        if section.is_pool
    ]


def config_hash(running: bytes) -> str:
    return hashlib.sha256(canonical_json(running)).hexdigest()[:12]


def probe(url: str, timeout: float = PROBE_TIMEOUT) -> tuple[int | None, str | None]:
    """One GET on a new connection, never through a proxy: (status, backend header value)."""
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", path, headers={"User-Agent": "lbctl-verify", "Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader(BACKEND_HEADER)
    except (OSError, http.client.HTTPException):
        return None, None
    finally:
        conn.close()


def burst(tally: Tally, url: str, count: int) -> None:
    failures = 0
    for _ in range(count):
        status, value = probe(url)
        tally.probes += 1
        if status is None:
            failures += 1
            if failures >= MAX_FAILURES_IN_A_ROW:
                return
            continue
        failures = 0
        tally.answers += 1
        if status >= 500:
            tally.errors += 1
        elif value:
            tally.by_value[value.strip()] += 1
        else:
            tally.unnamed += 1


def upstream_health(api: HttpTransport) -> tuple[dict[str, tuple[int, int]], dict[str, bool]]:
    """({address: (in flight, fails)}, {address: healthy}) from the admin API; empty if unreadable."""
    flights: dict[str, tuple[int, int]] = {}
    healthy: dict[str, bool] = {}
    body = _get(api, "/reverse_proxy/upstreams")
    try:
        for row in json.loads(body or b"[]") or []:
            flights[str(row.get("address"))] = (int(row.get("num_requests") or 0), int(row.get("fails") or 0))
    except (ValueError, TypeError, AttributeError):
        pass
    for address, value in _HEALTHY.findall((_get(api, "/metrics") or b"").decode("utf-8", "replace")):
        healthy[address] = value not in ("0", "0.0")
    return flights, healthy


def _get(api: HttpTransport, path: str) -> bytes | None:
    parts = urlsplit(api.api)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=PROBE_TIMEOUT * 5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return body if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def probed_pool(pools: list[Pool], values: Counter[str]) -> Pool | None:
    """The pool the probe URL reaches: the one holding the answering upstreams, or the only one."""
    scored = [(sum(n for v, n in values.items() if v in pool.dials), -i, pool) for i, pool in enumerate(pools)]
    best = max(scored, key=lambda item: (item[0], item[1]), default=None)
    if best is not None and best[0] > 0:
        return best[2]
    return pools[0] if len(pools) == 1 else None


def snapshot(
    tally: Tally, pools: list[Pool], flights: dict[str, tuple[int, int]], healthy: dict[str, bool]
) -> Snapshot:
    pool = probed_pool(pools, tally.by_value)
    backend = pool.name if pool else "(route of the probe URL)"
    weights = pool.weights() if pool else {}

    def status(address: str) -> str:
        down = flights.get(address, (0, 0))[1] > 0 or not healthy.get(address, True)
        return "DOWN" if down else "UP"

    servers: list[ServerCounters] = []
    for address, weight in weights.items():
        current = flights.get(address, (0, 0))[0]
        sessions = tally.by_value.get(address, 0)
        servers.append(ServerCounters(backend, address, sessions, status(address), weight, current=current))
    named = {v: n for v, n in tally.by_value.items() if v not in weights}
    for value, sessions in sorted(named.items()):
        servers.append(ServerCounters(backend, value, sessions, "UP", 1))  # it answered
    if named:
        # Names cannot be tied to addresses: the upstreams no mapped answer accounts for are
        # either the named ones or unseen. List the unseen ones (the down ones first).
        left = sorted((a for a in weights if tally.by_value.get(a, 0) == 0), key=lambda a: (status(a) == "UP", a))
        servers = [s for s in servers if s.server not in left]
        for i, address in enumerate(left[len(named) :], start=1):
            servers.append(ServerCounters(backend, f"(unseen upstream {i})", 0, status(address), weights[address]))
    return Snapshot(
        process=tally.process,
        servers=tuple(servers),
        backend_sessions={},  # Caddy counts no real traffic per pool; these are all lbctl's probes
        backend_5xx={backend: tally.errors},
        backend_responses={backend: tally.answers},
    )


def probes_for(pools: list[Pool]) -> int:
    upstreams = max((len(p.weights()) for p in pools), default=1)
    return max(MIN_PROBES, min(MAX_PROBES, PROBES_PER_UPSTREAM * upstreams))


def read(api: HttpTransport, target: Target, tally: Tally, *, first: bool = False) -> Snapshot:
    """One reading: the running config, a burst of probes, upstream health; `tally` carries over.

    On the `first` reading (the baseline, before anything changes) answers that name no
    backend are refused: the check could judge nothing.
    """
    running = api.running()
    if running.strip() in (b"", b"null"):
        raise ConfigError(f"targets.{target.name}: Caddy at {api.where} runs no config: no traffic to judge")
    config = config_hash(running)
    if config != tally.config:
        tally.reset(config)  # a new config (or the old one back): its counts start at zero
    pools = pools_of(running)
    before = tally.probes
    burst(tally, probe_url(target), probes_for(pools))
    if first and tally.probes > before and not tally.by_value and tally.unnamed:
        raise ConfigError(
            f"targets.{target.name}: the balance check on Caddy needs answers naming their backend: "
            f"{tally.unnamed} of lbctl's probes to {probe_url(target)} were answered without a "
            f"`{BACKEND_HEADER}` header",
            hint=f"have each backend answer with `{BACKEND_HEADER}: <its name>`, or add "
            f"`header_down {BACKEND_HEADER} {{http.reverse_proxy.upstream.hostport}}` to the reverse_proxy",
        )
    flights, healthy = upstream_health(api)
    return snapshot(tally, pools, flights, healthy)


def algorithms(running: bytes) -> dict[str, str]:
    return {pool.name: POLICY_AS.get(pool.policy, pool.policy) for pool in pools_of(running)}
