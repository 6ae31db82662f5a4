"""Replay of real requests through the live config and the candidate, each in its own sandbox.

Requests come from access logs: HAProxy `httplog` lines, nginx `combined` lines, or plain
`METHOD HOST PATH` lines (one request a line; other lines are counted as skipped). Each is
sent through both sandboxes; the result says, per frontend and per pair of endpoints, how
many requests change backend, and how each backend's spread over its servers shifts.

A backend is chosen by the request, so a backend change is counted per request. A server
is chosen by the balancing algorithm (round robin depends on what came before), so within
a backend the requests that move are counted from each server's share: half the sum of
the changes in each server's count, which is how many requests must land elsewhere.

`routing_moves` turns a replay's figures into `RoutingMove`s (basis "replay"), which the
blast-radius gate (`gates.routing_radius`) judges instead of the estimate.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.engine.preflight import Replayed
    from lbctl.sandbox import Answer, FindFile, Request
    from lbctl.semantic.routing_model import RoutingMove
    from lbctl.store.bundle import Bundle

MAX_REQUESTS = 100_000  # a bigger log is sampled evenly down to this

_HAPROXY = re.compile(
    r"(?P<src>[0-9a-fA-F.:]+):\d+ \[[^\]]+\] (?P<frontend>\S+?)~? (?P<backend>\S+)/\S+ \S+ -?\d+ .*?"
    r'(?:\{(?P<captured>[^}]*)\} .*?)?"(?P<method>[A-Z]+) (?P<uri>\S+)(?: HTTP/[\d.]+)?"'
)
_COMBINED = re.compile(r'^(?P<src>\S+) \S+ \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<uri>\S+)[^"]*" \d{3} ')
_PLAIN = re.compile(r"^(?P<method>[A-Z]+)\s+(?P<host>\S+)\s+(?P<uri>/\S*)\s*$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9.-]+(:\d+)?$")


def parse_log(lines: Iterable[str]) -> tuple[list[Request], int]:
    """The requests the lines hold, and how many lines held none."""
    from lbctl.sandbox import Request

    requests: list[Request] = []
    skipped = 0
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if match := _PLAIN.match(line):
            host = match["host"] if match["host"] != "-" else None
            requests.append(Request(match["uri"], match["method"], host))
        elif match := _HAPROXY.search(line):
            captured = (match["captured"] or "").split("|")[0]
            path, host = _split_uri(match["uri"])
            host = host or (captured if captured and _HOSTNAME.match(captured) else None)
            requests.append(Request(path, match["method"], host, source=match["src"], listener=match["frontend"]))
        elif match := _COMBINED.match(line):
            path, host = _split_uri(match["uri"])
            requests.append(Request(path, match["method"], host, source=match["src"]))
        else:
            skipped += 1
    if len(requests) > MAX_REQUESTS:
        step = len(requests) / MAX_REQUESTS
        requests = [requests[int(i * step)] for i in range(MAX_REQUESTS)]
    return requests, skipped


def _split_uri(uri: str) -> tuple[str, str | None]:
    if "://" in uri:
        rest = uri.split("://", 1)[1]
        host, slash, path = rest.partition("/")
        return slash + path or "/", host or None
    return uri if uri.startswith("/") else "/" + uri, None


@dataclass(frozen=True)
class Pair:
    """Requests of one frontend that went to `before` under the live config and `after` under the candidate."""

    frontend: str
    before: str  # a backend, or the LB's own answer `(403)`
    after: str
    requests: int
    share: float  # of the frontend's requests


@dataclass(frozen=True)
class ServerShift:
    frontend: str
    backend: str
    server: str
    before: int
    after: int


@dataclass(frozen=True)
class FrontendReplay:
    frontend: str
    requests: int
    moved_backend: int  # requests that reach another backend (or none)
    moved_server: int  # requests that stay in their backend but must land on another server

    @property
    def moved(self) -> int:
        return self.moved_backend + self.moved_server

    @property
    def moved_share(self) -> float:
        return self.moved / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class ReplayResult:
    source: str  # where the requests came from
    requests: int
    skipped: int
    frontends: tuple[FrontendReplay, ...]
    pairs: tuple[Pair, ...]  # every (before, after) pair, the unchanged ones too
    servers: tuple[ServerShift, ...]  # per server: requests before and after (backends that kept requests)
    seconds: float = 0.0
    loads: tuple[ServerShift, ...] = ()  # per server: all the frontend's requests it took before and after

    @property
    def moved(self) -> int:
        return sum(f.moved for f in self.frontends)

    @property
    def moved_share(self) -> float:
        return self.moved / self.requests if self.requests else 0.0

    def lines(self) -> list[str]:
        out = [
            f"replay of {self.requests} request(s) from {self.source}: {self.moved} ({self.moved_share:.1%}) "
            "change backend or server" + (f"; {self.skipped} line(s) skipped" if self.skipped else "")
        ]
        for f in self.frontends:
            out.append(
                f"  {f.frontend}: {f.moved}/{f.requests} moved ({f.moved_share:.1%}): "
                f"{f.moved_backend} to another backend, {f.moved_server} to another server"
            )
            for p in self.pairs:
                if p.frontend == f.frontend and p.before != p.after:
                    out.append(f"    {p.before} → {p.after}: {p.requests} ({p.share:.1%})")
        for s in self.servers:
            if s.before != s.after:
                out.append(f"    {s.backend}/{s.server}: {s.before} → {s.after} request(s)")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "requests": self.requests,
            "skipped": self.skipped,
            "moved": self.moved,
            "moved_share": round(self.moved_share, 4),
            "seconds": round(self.seconds, 3),
            "basis": "replay",
            "frontends": [
                {
                    "frontend": f.frontend,
                    "requests": f.requests,
                    "moved": f.moved,
                    "moved_backend": f.moved_backend,
                    "moved_server": f.moved_server,
                    "moved_share": round(f.moved_share, 4),
                }
                for f in self.frontends
            ],
            "pairs": [p.__dict__ | {"share": round(p.share, 4)} for p in self.pairs],
            "servers": [s.__dict__ for s in self.servers],
        }


def compare(source: str, skipped: int, before: Sequence[Answer], after: Sequence[Answer]) -> ReplayResult:
    """The replay's figures from each request's answer under the live config and the candidate."""
    by_frontend: dict[str, list[tuple[Answer, Answer]]] = defaultdict(list)
    for old, new in zip(before, after, strict=True):
        by_frontend[old.listener].append((old, new))
    frontends, pairs, servers, loads = [], [], [], []
    for frontend, answers in by_frontend.items():
        was_at = Counter((old.backend, old.server or "-") for old, _ in answers if old.backend is not None)
        now_at = Counter((new.backend, new.server or "-") for _, new in answers if new.backend is not None)
        for backend, server in sorted(set(was_at) | set(now_at)):
            loads.append(ServerShift(frontend, backend, server, was_at[backend, server], now_at[backend, server]))
        counted = Counter((_where(old), _where(new)) for old, new in answers)
        for (was, now), n in sorted(counted.items(), key=lambda item: (-item[1], item[0])):
            pairs.append(Pair(frontend, was, now, n, n / len(answers)))
        moved_backend = sum(n for (was, now), n in counted.items() if was != now)
        kept: dict[str, tuple[Counter[str], Counter[str]]] = defaultdict(lambda: (Counter(), Counter()))
        for old, new in answers:
            if old.backend is not None and _where(old) == _where(new):
                kept[old.backend][0][old.server or "-"] += 1
                kept[old.backend][1][new.server or "-"] += 1
        moved_server = 0
        for backend, (was_on, now_on) in sorted(kept.items()):
            moved_server += sum(abs(was_on[s] - now_on[s]) for s in set(was_on) | set(now_on)) // 2
            for server in sorted(set(was_on) | set(now_on)):
                servers.append(ServerShift(frontend, backend, server, was_on[server], now_on[server]))
        frontends.append(FrontendReplay(frontend, len(answers), moved_backend, moved_server))
    return ReplayResult(
        source, len(before), skipped, tuple(frontends), tuple(pairs), tuple(servers), loads=tuple(loads)
    )


def _where(answer: Answer) -> str:
    if answer.backend is not None:
        return answer.backend
    return f"({answer.status})" if answer.status is not None else "(no answer)"


def replay(
    target: Target,
    live: Bundle,
    candidate: Bundle,
    requests: Sequence[Request],
    *,
    source: str,
    skipped: int = 0,
    find_live: FindFile,
    find_candidate: FindFile,
) -> ReplayResult:
    """Send `requests` through `live` and `candidate`, each in its own sandbox started side by side.

    `SandboxUnavailable` when either cannot run.
    """
    import contextlib
    import time
    from concurrent.futures import ThreadPoolExecutor

    from lbctl.sandbox import open_sandbox
    from lbctl.sandbox.running import Sandbox

    started = time.monotonic()
    filename = (target.path or target.source).rsplit("/", 1)[-1]
    with contextlib.ExitStack() as stack:

        def start(bundle: Bundle, find: FindFile) -> Sandbox:
            opened = open_sandbox(target.kind, bundle.main, filename=filename, includes=bundle.files(), find_file=find)
            return stack.enter_context(opened)

        with ThreadPoolExecutor(max_workers=2) as pool:  # both start at once; both are stopped whatever happens
            opening = [pool.submit(start, live, find_live), pool.submit(start, candidate, find_candidate)]
            for future in opening:
                future.exception()  # wait for both, so that a failed start leaves nothing running
        old_box, new_box = (future.result() for future in opening)
        with ThreadPoolExecutor(max_workers=2) as pool:  # each sandbox's LB has its own process: run both at once
            sending = [pool.submit(box.send_all, requests) for box in (old_box, new_box)]
            before, after = (future.result() for future in sending)
    result = compare(source, skipped, before, after)
    from dataclasses import replace

    return replace(result, seconds=time.monotonic() - started)


def routing_moves(result: ReplayResult) -> list[RoutingMove]:
    """The replay's figures as routing moves (basis "replay"), for the blast-radius gate.

    One move per frontend and pair of endpoints whose requests changed: `share` is the part
    of the frontend's requests that move, `pool_share` the part of `from_backend`'s. The
    busiest server of the backend the requests reach, with its share of the frontend's
    requests before and after, goes on the first move into that backend (for `max_share`).
    Requests that stay in their backend but land on another server are the pool preview's
    business (weights), and stay in the replay's own report.
    """
    from lbctl.semantic.routing_model import RoutingMove

    out: list[RoutingMove] = []
    for f in result.frontends:
        pairs = [p for p in result.pairs if p.frontend == f.frontend]
        sent: Counter[str] = Counter()
        for p in pairs:
            sent[p.before] += p.requests
        peaked: set[str] = set()
        for p in pairs:
            if p.before == p.after:
                continue
            detail = (
                f"replay of {result.requests} request(s) from {result.source}: {p.requests} of {f.frontend}'s "
                f"{f.requests} ({p.share:.0%}) move from {p.before} to {p.after}"
            )
            loads = [s for s in result.loads if s.frontend == f.frontend and s.backend == p.after]
            peak = max(loads, key=lambda s: s.after) if loads and p.after not in peaked else None
            peaked.add(p.after)
            if peak is not None:
                detail += f"; {peak.server} takes {peak.after} (was {peak.before})"
            out.append(
                RoutingMove(
                    f.frontend,
                    p.before,
                    p.after,
                    p.share,
                    "replay",
                    True,
                    detail,
                    peak.server if peak else None,
                    peak.after / f.requests if peak else None,
                    p.requests / sent[p.before],
                    peak.before / f.requests if peak else None,
                )
            )
    return out


def replayed(result: ReplayResult) -> Replayed:
    """What `preflight.analyze(replay=...)` judges instead of the estimate."""
    from lbctl.engine.preflight import Replayed

    note = f"a replay of {result.requests} request(s) from {result.source}"
    return Replayed(routing_moves(result), note, frozenset(f.frontend for f in result.frontends if f.requests))
