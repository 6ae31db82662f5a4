"""Semantic diff at scale: HAProxy configs with 1k, 5k and 20k servers, one weight changed.

Times, in one run, the whole in-process work `lbctl diff` does (parse both versions,
diff the models, compute the traffic preview) against `diff -u` on the same two
files (a subprocess, so its time includes process start-up), and prints each
ratio and the growth exponent (the log-log slope of time against server count).
Target (PRODUCT.md §6): under 1 s at 20k servers, within 10x of `diff -u`, close
to linear. Run: `.venv/bin/python bench/diff_scale.py [--repeat N]`.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SIZES = (1_000, 5_000, 20_000)
SERVERS_PER_BACKEND = 1_000


def generate(servers: int) -> str:
    """A realistic config: frontends routing by host to backends of up to 1,000 servers each."""
    backends = max(1, servers // SERVERS_PER_BACKEND)
    out = [
        "global",
        "    log stdout format raw local0",
        "    maxconn 100000",
        "defaults",
        "    mode http",
        "    timeout connect 5s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    default-server inter 2s fall 3 rise 2",
        "frontend www",
        "    bind :80",
    ]
    for b in range(backends):
        out += [f"    acl host_b{b} hdr(host) -i b{b}.example.com", f"    use_backend b{b} if host_b{b}"]
    out.append("    default_backend b0")
    n = 0
    for b in range(backends):
        out += [f"backend b{b}", "    balance roundrobin", "    option httpchk GET /health"]
        for _ in range(min(SERVERS_PER_BACKEND, servers - n)):
            out.append(f"    server s{n} 10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}:8080 weight 100 check")
            n += 1
    return "\n".join(out) + "\n"


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) if repeat < 5 else statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    start = time.perf_counter()
    from lbctl.semantic import diff_texts

    import_s = time.perf_counter() - start
    diff_texts("haproxy", generate(10), generate(10).replace("weight 100", "weight 5", 1), filename="warm.cfg")
    warm_s = time.perf_counter() - start
    print(f"import lbctl.semantic: {import_s * 1000:.0f} ms; first diff incl. lazy deepdiff import: "
          f"{(warm_s - import_s) * 1000:.0f} ms (paid once per process, not in the figures below)\n")  # fmt: skip

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            old = generate(size)
            new = re.sub(rf"(server s{size // 2} \S+) weight 100", r"\1 weight 0", old, count=1)
            a, b = Path(tmp, f"a{size}.cfg"), Path(tmp, f"b{size}.cfg")
            a.write_text(old)
            b.write_text(new)
            result = diff_texts("haproxy", old, new, filename=str(b))
            assert [c.description for c in result.changes] == [f"server s{size // 2} weight 100 → 0"], result.changes
            semantic = best_of(args.repeat, lambda o=old, n=new, f=str(b): diff_texts("haproxy", o, n, filename=f))
            unified = best_of(args.repeat, lambda a=a, b=b: subprocess.run(["diff", "-u", a, b], capture_output=True))
            rows.append((size, semantic, unified))

    print(f"{'servers':>8} {'semantic':>10} {'diff -u':>9} {'ratio':>7}")
    for size, semantic, unified in rows:
        print(f"{size:>8} {semantic * 1000:>8.0f}ms {unified * 1000:>7.1f}ms {semantic / unified:>6.1f}x")
    (n0, t0, _), (n1, t1, _) = rows[0], rows[-1]
    slope = math.log(t1 / t0) / math.log(n1 / n0)
    print(f"growth exponent (log-log slope, {n0} → {n1} servers): {slope:.2f}")
    biggest, ratio = rows[-1][1], rows[-1][1] / rows[-1][2]
    verdict = {"under 1 s at 20k": biggest < 1.0, "within 10x of diff -u": ratio <= 10, "near-linear": slope < 1.15}
    print("targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in verdict.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
