"""Does history slow the on-call commands? `status` and `rollback --dry-run` at 100 and 10,000 deploys.

For each size, a store is given that many revisions of the target's config on its branch and that many
deploy events in `refs/lbctl/journal` (written in one `git fast-import` stream, with the per-target state
each event would leave), then two real deploys to a real HAProxy on loopback, so the newest events and
what the LB runs agree. Timed as whole processes, several rounds each:

- `lbctl status edge` (reads the LB, runs the target's checks);
- `lbctl rollback edge --to last-good --dry-run` and `--to previous --dry-run` (plan only).

It prints the medians at both sizes and their ratio (aim: at most 1.2x).

Run: .venv/bin/python bench/history.py [--sizes 100 10000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config, haproxy_target_toml
from lbctl.store.journal import JOURNAL_REF, Event, TargetState

SOURCE = "configs/edge/haproxy.cfg"


def lbctl(store: Path, *args: str) -> tuple[int, float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "lbctl", *args, "--store", str(store)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"lbctl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return proc.returncode, elapsed


def git(store: Path, *args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["git", "-C", str(store), *args], input=stdin, check=True, capture_output=True)
    return proc.stdout.decode().strip()


def synthesize(store: Path, count: int, config_for: list[str]) -> None:
    """`count` commits of the source on the branch and `count` deploy events, in one fast-import."""
    head = git(store, "rev-parse", "HEAD")
    branch = git(store, "symbolic-ref", "HEAD")
    stamp = int(time.time()) - count * 60
    lines: list[bytes] = []

    def data(payload: bytes) -> None:
        lines.append(b"data %d\n" % len(payload) + payload + b"\n")

    for i in range(count):
        lines.append(f"commit {branch}\nmark :{i + 1}\n".encode())
        lines.append(f"committer bench <bench@lbctl.invalid> {stamp + i * 60} +0000\n".encode())
        data(f"Change edge ({i})\n\nLbctl-Target: edge\n".encode())
        if i == 0:
            lines.append(f"from {head}\n".encode())
        lines.append(f"M 100644 inline {SOURCE}\n".encode())
        data(config_for[i % len(config_for)].encode())
    lines.append(b"done\n")
    marks = store / ".git" / "bench-marks"
    git(store, "fast-import", "--quiet", f"--export-marks={marks}", stdin=b"".join(lines))
    revs = {int(m[1:]): sha for m, sha in (line.split() for line in marks.read_text().splitlines())}
    marks.unlink()

    # The journal: one event per revision, each with the state it leaves (as lbctl writes it).
    state = TargetState(target="edge")
    lines = []
    for i in range(count):
        rev = revs[i + 1]
        at = time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime(stamp + i * 60))
        verdict = "failed" if i % 10 == 9 else "good"
        event = Event(
            id=f"bench-{i:06d}",
            op="deploy",
            target="edge",
            who="bench@host",
            started=at,
            finished=at,
            from_rev=state.live,
            to_rev=rev,
            verdict=verdict,
            message="synthetic history",
        )
        good = verdict == "good"
        state = state.moved_to(rev, None, "good", event.id, at) if good else state.marked_bad(rev)
        lines.append(f"commit {JOURNAL_REF}\ncommitter bench <bench@lbctl.invalid> {stamp + i * 60} +0000\n".encode())
        data(f"deploy edge: {verdict}\n\n{json.dumps(event.to_json(), indent=1)}\n".encode())
        if i == 0:
            lines.append(b"deleteall\n")
        lines.append(b"M 100644 inline edge.json\n")
        data(json.dumps(state.to_json(), indent=1).encode())
    lines.append(b"done\n")
    git(store, "fast-import", "--quiet", "--force", stdin=b"".join(lines))


COMMANDS = {
    "status edge": ("status", "edge"),
    "rollback --to last-good --dry-run": ("rollback", "edge", "--to", "last-good", "--dry-run"),
    "rollback --to previous --dry-run": ("rollback", "edge", "--to", "previous", "--dry-run"),
}


def measure(stores: dict[int, Path], rounds: int) -> dict[int, dict[str, float]]:
    """Medians per store and command; the stores take turns in every round, so load hits both alike."""
    times: dict[int, dict[str, list[float]]] = {size: {label: [] for label in COMMANDS} for size in stores}
    for store in stores.values():
        for args in COMMANDS.values():
            lbctl(store, *args)  # warm the settings cache and the page cache
    for _ in range(rounds):
        for label, args in COMMANDS.items():
            for size, store in stores.items():
                times[size][label].append(lbctl(store, *args)[1])
    return {size: {label: statistics.median(t) for label, t in per.items()} for size, per in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs=2, default=[100, 10000])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for var, value in (("NAME", "bench"), ("EMAIL", "bench@lbctl.invalid")):
        os.environ.setdefault(f"GIT_AUTHOR_{var}", value)
        os.environ.setdefault(f"GIT_COMMITTER_{var}", value)
    tmp = Path(tempfile.mkdtemp(prefix="lbctl-bench-history-"))
    web = Backends.start(["web1", "web2", "web3"])
    fe_port = free_port()
    haproxy = None
    try:

        def cfg(weights: dict[str, int]) -> str:
            return haproxy_config(
                frontend_port=fe_port, backends=web.ports, stats_socket=tmp / "lb" / "admin.sock", weights=weights
            )

        variants = [cfg({"web1": 100, "web2": 100, "web3": w}) for w in (100, 90, 80, 70)]
        haproxy = Haproxy.start(tmp / "lb", variants[0])
        stores: dict[int, Path] = {}
        for size in args.sizes:
            store = tmp / f"store-{size}"
            init = [sys.executable, "-m", "lbctl", "init", str(store), "-q"]
            subprocess.run(init, check=True, stdout=subprocess.DEVNULL)
            toml = haproxy_target_toml("edge", haproxy, f"http://127.0.0.1:{fe_port}/", probes=1)
            (store / "lbctl.toml").write_text("[defaults]\nverify_seconds = 0\n\n" + toml)
            (store / SOURCE).write_text(variants[0])
            git(store, "add", "-A")
            git(store, "commit", "-qm", "adopt edge")
            start = time.perf_counter()
            synthesize(store, size, variants)
            made = time.perf_counter() - start
            for weights in (60, 50):  # two real deploys: the newest events are true of the LB
                new = tmp / "next.cfg"
                new.write_text(cfg({"web1": 100, "web2": 100, "web3": weights}))
                code, _ = lbctl(store, "deploy", "edge", "--file", str(new), "-m", "bench", "--yes")
                if code != 0:
                    raise SystemExit(f"real deploy exited {code}")
            events = git(store, "rev-list", "--count", JOURNAL_REF)
            print(f"{size} synthetic deploys ({events} journal events, written in {made:.1f} s)", file=sys.stderr)
            for line in subprocess.run(
                [sys.executable, "-m", "lbctl", "status", "edge", "--store", str(store)],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
            ).stdout.splitlines()[:6]:
                print(f"  | {line}", file=sys.stderr)
            stores[size] = store
        results = measure(stores, args.rounds)
        small, large = args.sizes
        print(f"history: {small} vs {large} deploy events, median of {args.rounds} whole-process runs")
        print(f"  {'command':<38} {small:>8} {large:>8}  ratio (aim <= 1.2x)")
        for label in results[small]:
            a, b = results[small][label], results[large][label]
            print(f"  {label:<38} {a:>7.3f}s {b:>7.3f}s  {b / a:.2f}x")
        return 0
    finally:
        if haproxy is not None:
            haproxy.stop()
        web.stop()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    raise SystemExit(main())
