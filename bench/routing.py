"""Replay at scale: a 1,000-route HAProxy config, 10,000 requests through old and new sandboxes.

The old config routes `/svc<i>/` to backend `be<i>` (two servers each) with 1,000
`use_backend` rules in order, as a hand-grown config does; the new one swaps the order of
two rules whose paths overlap and sends ten services to another backend. The replay sends
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

from lbctl.bundle import Bundle
from lbctl.config import Safety, Target
from lbctl.replay import judge, parse_log, replay


def generate(routes: int, *, changed: bool) -> str:
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
    order = list(range(routes))
    if changed:  # a longer prefix's rule now comes after the shorter one that shadows it
        order[1], order[10] = order[10], order[1]
    for i in order:  # ten services are now served by their neighbours' backends
        out.append(f"    use_backend be{(i + 1) if changed and 100 <= i < 110 else i} if {{ path_beg /svc{i}/ }}")
    out.append("    default_backend be0")
    for i in range(routes):
        out += [f"backend be{i}", "    balance roundrobin"]
        address = f"10.{i // 250}.{i % 250}"
        out += [f"    server s{i}a {address}.1:80 check", f"    server s{i}b {address}.2:80 check"]
    return "\n".join(out) + "\n"


def log_lines(routes: int, requests: int) -> list[str]:
    rng = random.Random(12)
    return [f"GET shop.example.com /svc{rng.randrange(routes)}/item/{n}" for n in range(requests)]


def run(routes: int, requests: int) -> dict[str, float]:
    target = Target(
        name="bench",
        kind="haproxy",
        source="haproxy.cfg",
        path="/etc/haproxy/haproxy.cfg",
        master_socket="/run/haproxy-master.sock",
    )
    old = Bundle(generate(routes, changed=False).encode())
    new = Bundle(generate(routes, changed=True).encode())
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
        find_live=lambda p: None,
        find_candidate=lambda p: None,
    )
    total = time.perf_counter() - started
    lbctl_cpu, sandbox_cpu = (after - before for after, before in zip(_cpu(), cpu_before, strict=True))
    refused = judge(Safety(max_traffic_moved=0.005), result)
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
    args = parser.parse_args()
    runs = [run(args.routes, args.requests) for _ in range(args.repeat)]
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
        f"median: {median:.2f} s for {args.requests} requests through {args.routes}-route old and new "
        f"sandboxes ({rps:.0f} requests/s, {cpu:.2f} CPU-seconds in all): {verdict} the 5 s aim"
    )


if __name__ == "__main__":
    main()
