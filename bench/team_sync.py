"""What the team remote costs on the on-call path: `lbctl status --offline` and a local rollback
(`--to previous`, one round of verification) as whole processes, against a real local HAProxy.

Modes: `none` (a store without a remote), `off` (a remote, `[store] sync = "off"`), `auto` (a bare
repository on disk as the remote, `sync = "auto"`: a fetch before, the lease and two pushes around
the rollback). `none` runs on any lbctl, so the same script measures an older checkout with
`PYTHONPATH=/path/to/old/src python bench/team_sync.py --modes none`.

    python bench/team_sync.py [--rounds 10] [--modes none,off,auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config, haproxy_target_toml

LBCTL = [sys.executable, "-m", "lbctl"]


def sh(*argv: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
    return done


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    sh(*argv, cwd=cwd, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--modes", default="none,off,auto")
    args = parser.parse_args()
    backends = Backends.start(["web1", "web2", "web3"])
    try:
        with tempfile.TemporaryDirectory(prefix="lbctl-bench-") as tmp:
            root = Path(tmp)
            for mode in args.modes.split(","):
                run_mode(root / mode, mode, backends, args.rounds)
    finally:
        backends.stop()


def run_mode(root: Path, mode: str, backends: Backends, rounds: int) -> None:
    root.mkdir()
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(root / "cache"),
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
    }
    port = free_port()
    config = haproxy_config(frontend_port=port, backends=backends.ports, stats_socket=root / "lb" / "admin.sock")
    haproxy = Haproxy.start(root / "lb", config)
    try:
        store = root / "store"
        sh(*LBCTL, "init", str(store), cwd=root, env=env)
        toml = "[defaults]\nverify_seconds = 0\nretries = 1\n\n"
        if mode == "off":
            toml = '[store]\nsync = "off"\n\n' + toml
        toml += haproxy_target_toml("edge", haproxy, f"http://127.0.0.1:{port}/", probes=1)
        (store / "lbctl.toml").write_text(toml)
        (store / "configs/edge/haproxy.cfg").write_text(config)
        sh("git", "commit", "-qam", "target edge", cwd=store, env=env)
        if mode in ("off", "auto"):
            sh("git", "init", "-q", "--bare", str(root / "remote.git"), cwd=root, env=env)
            sh("git", "remote", "add", "origin", str(root / "remote.git"), cwd=store, env=env)
            sh("git", "push", "-q", "-u", "origin", "HEAD", cwd=store, env=env)
        for weight in (2, 3):
            (root / "next.cfg").write_text(config.replace("weight 100", f"weight {weight}", 1))
            sh(*LBCTL, "deploy", "edge", "--file", str(root / "next.cfg"), "--yes", "-q", cwd=store, env=env)
        print(sh(*LBCTL, "log", "edge", cwd=store, env=env).stdout, file=sys.stderr) if os.environ.get(
            "BENCH_DEBUG"
        ) else None
        status = [timed([*LBCTL, "status", "--offline"], store, env) for _ in range(rounds)]
        rollback = []
        for number in range(rounds):  # a rollback marks what it undoes bad: each round undoes a new deploy
            (root / "next.cfg").write_text(config.replace("weight 100", f"weight {10 + number}", 1))
            sh(*LBCTL, "deploy", "edge", "--file", str(root / "next.cfg"), "--yes", "-q", cwd=store, env=env)
            rollback.append(timed([*LBCTL, "rollback", "edge", "--to", "previous", "--yes", "-q"], store, env))
        print(
            f"{mode:>5}: status --offline median {statistics.median(status) * 1000:6.0f} ms   "
            f"rollback --to previous median {statistics.median(rollback) * 1000:6.0f} ms   ({rounds} rounds)"
        )
    finally:
        haproxy.stop()


if __name__ == "__main__":
    main()
