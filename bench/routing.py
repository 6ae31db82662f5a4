"""Replay at scale: a 1,000-route HAProxy config, 10,000 requests through old and new sandboxes.

The old config routes `/svc<i>/` to backend `be<i>` (two servers each) with 1,000
`use_backend` rules in order, as a hand-grown config does (`--style rules`, the default and the
worst case: HAProxy tries the rules one by one), or with one lookup in a map file that the
sandbox takes from the store (`--style map`); the new one swaps two rules and sends ten
services to their neighbours' backends. The replay sends
the same 10,000 requests (spread over the routes, from a log of plain `METHOD HOST PATH`
lines) through a sandbox of each, the real HAProxy with stub servers, and compares.

Prints the time each part takes and the requests per second, for `--repeat` runs (the
median is the figure), and the CPU seconds they took (lbctl's client, and the sandboxes'
HAProxy and stub processes): on a machine shared with other work, the wall time follows
the load, the CPU time much less. Aim: under 5 s for the whole replay on this machine.
Run: `.venv/bin/python bench/routing.py [--routes 1000] [--requests 10000] [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import time

from lbctl.config import Safety, Target
from lbctl.engine.gates import routing_radius
from lbctl.engine.replay import parse_log, replay, routing_moves
from lbctl.semantic.routing_model import RoutingReport
from lbctl.store.bundle import Bundle

MAP = "/etc/haproxy/routes.map"


def generate(routes: int, *, changed: bool, style: str = "rules") -> str:
    """`rules`: one `use_backend ... if { path_beg }` per route, in order; `map`: one lookup in a map file."""
    out = [
        "global",
        "    log /dev/log local0",
        "    maxconn 20000",
        "    stats socket /run/haproxy/admin.sock mode 660 level admin",
        "defaults",
        "    mode http",
        "    timeout connect 5s",
        "    timeout client 30s",
        "    timeout server 30s",
        "frontend www",
        "    bind :80",
    ]
    if style == "map":
        out.append(f"    use_backend %[path,map_beg({MAP},be0)]")
    else:
        order = list(range(routes))
        if changed:  # a rule now comes after one it used to precede
            order[1], order[10] = order[10], order[1]
        for i in order:
            out.append(f"    use_backend {_backend(i, changed)} if {{ path_beg /svc{i}/ }}")
    out.append("    default_backend be0")
    for i in range(routes):
        out += [f"backend be{i}", "    balance roundrobin"]
        address = f"10.{i // 250}.{i % 250}"
        out += [f"    server s{i}a {address}.1:80 check", f"    server s{i}b {address}.2:80 check"]
    return "\n".join(out) + "\n"


def route_map(routes: int, *, changed: bool) -> bytes:
    """The map of the `map` style, as the store would hold it beside the config."""
    return "".join(f"/svc{i}/ {_backend(i, changed)}\n" for i in range(routes)).encode()


def _backend(i: int, changed: bool) -> str:
    return f"be{i + 1}" if changed and 100 <= i < 110 else f"be{i}"  # ten services move to their neighbours'


def log_lines(routes: int, requests: int) -> list[str]:
    rng = random.Random(12)
    return [f"GET shop.example.com /svc{rng.randrange(routes)}/item/{n}" for n in range(requests)]


def run(routes: int, requests: int, style: str) -> dict[str, float]:
    target = Target(
        name="bench",
        kind="haproxy",
        source="haproxy.cfg",
        path="/etc/haproxy/haproxy.cfg",
        master_socket="/run/haproxy-master.sock",
    )
    old = Bundle(generate(routes, changed=False, style=style).encode())
    new = Bundle(generate(routes, changed=True, style=style).encode())
    maps = {changed: route_map(routes, changed=changed) for changed in (False, True)}
    started = time.perf_counter()
    cpu_before = _cpu()
    parsed, skipped = parse_log(log_lines(routes, requests))
    parse_seconds = time.perf_counter() - started
    result = replay(
        target,
        old,
        new,
        parsed,
        source="bench",
        skipped=skipped,
        find_live=lambda path: maps[False] if path == MAP else None,
        find_candidate=lambda path: maps[True] if path == MAP else None,
    )
    total = time.perf_counter() - started
    lbctl_cpu, sandbox_cpu = (after - before for after, before in zip(_cpu(), cpu_before, strict=True))
    moves = RoutingReport(moves=tuple(routing_moves(result)))  # what the blast-radius gate judges
    refused = routing_radius(Safety(max_traffic_moved=0.005), None, moves)
    return {
        "seconds": total,
        "parse": parse_seconds,
        "replay": result.seconds,
        "rps": 2 * len(parsed) / result.seconds,
        "moved": result.moved,
        "moved_share": result.moved_share,
        "refused": len(refused),
        "lbctl_cpu": lbctl_cpu,
        "sandbox_cpu": sandbox_cpu,
    }


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process (the client) and of its reaped children (the LBs and the stubs)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--style", choices=("rules", "map"), default="rules", help="routes as rules, or a map")
    args = parser.parse_args()
    runs = [run(args.routes, args.requests, args.style) for _ in range(args.repeat)]
    for number, figures in enumerate(runs, start=1):
        print(
            f"run {number}: {figures['seconds']:.2f} s in all (log parse {figures['parse'] * 1000:.0f} ms, "
            f"two sandboxes + 2 x {args.requests} requests {figures['replay']:.2f} s = "
            f"{figures['rps']:.0f} requests/s); moved {figures['moved']:.0f} ({figures['moved_share']:.2%}); "
            f"CPU: lbctl {figures['lbctl_cpu']:.2f} s, sandboxes {figures['sandbox_cpu']:.2f} s"
        )
    median = statistics.median(r["seconds"] for r in runs)
    rps = statistics.median(r["rps"] for r in runs)
    cpu = statistics.median(r["lbctl_cpu"] + r["sandbox_cpu"] for r in runs)
    verdict = "meets" if median < 5 else "MISSES"
    print(
        f"median: {median:.2f} s for {args.requests} requests through {args.routes}-route ({args.style}) old and new "
        f"sandboxes ({rps:.0f} requests/s, {cpu:.2f} CPU-seconds in all): {verdict} the 5 s aim"
    )


if __name__ == "__main__":
    main()
