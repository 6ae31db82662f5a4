"""`lbctl demo`: the outage, replayed on a real HAProxy on loopback, caught and undone.

Everything runs in a temp dir: three backends, a HAProxy master-worker, light bounded
load, a fresh store. Each step is a real `lbctl` command, printed as a user would type it.
Every process the demo starts is stopped before it returns.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lbctl.errors import UsageError
from lbctl.lab.processes import Backends, Haproxy, Load, free_port, haproxy_config, haproxy_target_toml, temp_dir

LEGACY_BACKEND = """
backend legacy
    server old1 127.0.0.1:{legacy_port} check inter 1s
"""


@dataclass
class Step:
    title: str
    argv: list[str]
    code: int
    seconds: float


def run_demo(*, keep: bool = False) -> int:
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        raise UsageError("the demo needs HAProxy", hint="apt-get install haproxy (the README's setup does it)")
    if not os.environ.get("GIT_AUTHOR_NAME") and not _git_identity():
        os.environ.update(
            GIT_AUTHOR_NAME="lbctl demo",
            GIT_AUTHOR_EMAIL="demo@lbctl.invalid",
            GIT_COMMITTER_NAME="lbctl demo",
            GIT_COMMITTER_EMAIL="demo@lbctl.invalid",
        )
    started = time.monotonic()
    steps: list[Step] = []
    with temp_dir("lbctl-demo-", keep=keep) as tmp:
        backends = Backends.start(["web1", "web2", "web3"])
        legacy = Backends.start(["old1"])
        haproxy: Haproxy | None = None
        load: Load | None = None
        try:
            lb = tmp / "lb"
            fe_port = free_port()
            stats = lb / "admin.sock"

            def cfg(route_to: str = "web", weights: dict[str, int] | None = None) -> str:
                return haproxy_config(
                    frontend_port=fe_port,
                    backends=backends.ports,
                    stats_socket=stats,
                    extra_backends=LEGACY_BACKEND.format(legacy_port=legacy.ports["old1"]),
                    route_to=route_to,
                    weights=weights,
                )

            haproxy = Haproxy.start(lb, cfg())
            _banner(
                f"A real HAProxy {_version()} (master pid {haproxy.proc.pid if haproxy.proc else '?'}) "
                f"on 127.0.0.1:{fe_port}: backend web (web1-3) and backend legacy (old1), light load; "
                f"everything in {tmp}"
            )
            load = Load(f"http://127.0.0.1:{fe_port}/", rate=20, max_requests=3000, max_seconds=60).start()

            store = tmp / "store"
            steps.append(_lbctl("Create a store", ["init", str(store)]))
            _write_target(store, haproxy, fe_port)
            _git(store, "add", "lbctl.toml")
            _git(store, "commit", "-q", "-m", "Add target edge")

            good = tmp / "good.cfg"
            good.write_text(cfg(weights={"web1": 100, "web2": 100, "web3": 50}))
            steps.append(
                _lbctl(
                    "Deploy a good change (web3 at half weight)",
                    [
                        "deploy",
                        "edge",
                        "--file",
                        str(good),
                        "-m",
                        "Halve web3's share",
                        "--ticket",
                        "OPS-101",
                        "--yes",
                        "--store",
                        str(store),
                    ],
                )
            )
            bad = tmp / "bad.cfg"
            bad.write_text(cfg(route_to="legacy"))
            ship = ["deploy", "edge", "--file", str(bad), "-m", "Route www to the new pool", "--ticket", "OPS-102"]
            steps.append(
                _lbctl(
                    "The outage's change (www routed to the one-server legacy pool) is refused before the push",
                    [*ship, "--yes", "--store", str(store)],
                )
            )
            steps.append(
                _lbctl(
                    "Ship it anyway with --force: the HTTP checks still pass, the LB's counters do not",
                    [*ship, "--force", "--reason", "demo", "--yes", "--store", str(store)],
                )
            )
            steps.append(
                _lbctl(
                    "The on-call runbook's one command",
                    ["rollback", "edge", "--to", "last-good", "--yes", "--store", str(store)],
                )
            )
            steps.append(_lbctl("What is live, and is it healthy?", ["status", "edge", "--store", str(store)]))
            steps.append(_lbctl("What happened", ["log", "edge", "-n", "5", "--store", str(store)]))
        finally:
            if load is not None:
                load.stop()
            if haproxy is not None:
                haproxy.stop()
            backends.stop()
            legacy.stop()
        _timeline(steps, load, time.monotonic() - started)
    expected = [0, 0, 4, 1, 0, 0, 0]
    return 0 if [s.code for s in steps] == expected else 70


def _lbctl(title: str, args: list[str]) -> Step:
    from lbctl.cli import main

    _banner(title)
    print(f"$ lbctl {shlex.join(args)}", flush=True)
    start = time.monotonic()
    code = main(args)
    seconds = time.monotonic() - start
    sys.stdout.flush()
    print(f"  → exit {code} in {seconds:.2f} s", flush=True)
    return Step(title, args, code, seconds)


def _write_target(store: Path, haproxy: Haproxy, fe_port: int) -> None:
    defaults = "[defaults]\nverify_seconds = 3\ncheck_interval = 0.5\nretries = 3\n\n"
    table = haproxy_target_toml("edge", haproxy, f"http://127.0.0.1:{fe_port}/", probes=3, balance=0.6)
    (store / "lbctl.toml").write_text(defaults + table)


def _git(store: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", "-C", str(store), *args], check=True)


def _git_identity() -> bool:
    import subprocess

    result = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True)
    return bool(result.stdout.strip())


def _version() -> str:
    import subprocess

    out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.split()
    return out[2] if len(out) > 2 else "?"


def _banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _timeline(steps: list[Step], load: Load | None, total: float) -> None:
    print("\n== Timeline")
    clock = 0.0
    for step in steps:
        print(f"  {clock:6.2f} s  {step.title:<72} exit {step.code}  ({step.seconds:.2f} s)")
        clock += step.seconds
    if load is not None:
        served = ", ".join(f"{k}: {v}" for k, v in sorted(load.backends.items()))
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(load.statuses.items()))
        print(f"  load during the demo: {sum(load.statuses.values())} requests ({codes}); by backend: {served}")
    print(f"  demo total {total:.1f} s; every process it started has been stopped")
    print(
        "\nOn your own store:  lbctl deploy edge --file new.cfg -m 'why' --ticket OPS-1"
        "\n                    lbctl rollback edge --to last-good"
    )
