"""How fast lbctl catches the outage's change and has the previous config back, verified.

Scenario (c) of issue 5, on a real HAProxy on loopback under light bounded load: the frontend's
default_backend is switched from `web` (three servers) to a one-server `legacy` pool. Every HTTP
check still answers 200; only HAProxy's own counters show that `web` lost its traffic.

Timed, per round, in-process: from the moment lbctl starts the reload of the bad config to the
end of the verification of the restored one (its `verify restore` stage), with lbctl's default
settings (verify_seconds 10, check_interval 0.5, balance defaults). The same run also deploys
the same bad change to a target that has only the HTTP check, as the peer: "is it up?".

Run: .venv/bin/python bench/detect.py [--rounds 5]
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

from lbctl.lab.processes import Backends, Haproxy, Load, free_port, haproxy_config, haproxy_target_toml

LEGACY = "\nbackend legacy\n    server old1 127.0.0.1:{port} check inter 1s\n"


def toml(haproxy: Haproxy, fe_port: int, *, balance: bool) -> str:
    return haproxy_target_toml("edge", haproxy, f"http://127.0.0.1:{fe_port}/", balance=balance)


def deploy(store: Path, cfg: Path, marks: dict[str, float]) -> int:
    from lbctl.commands import deploy as operations
    from lbctl.store.workspace import open_workspace

    def report(stage: str, message: str) -> None:
        if stage == "reload" and message == "..." and "reload" not in marks:
            marks["reload"] = time.monotonic()
        if stage == "verify restore" and message != "...":
            marks["restored"] = time.monotonic()
        if stage == "verify" and message != "..." and not message.startswith("round"):
            marks["verdict"] = time.monotonic()

    outcome = operations.deploy(
        open_workspace(str(store)),
        "edge",
        file=cfg,
        message="route www to legacy",
        force=True,  # the plan refuses this routing change; the benchmark measures one that gets through
        confirm=lambda plan: True,
        report=report,
    )
    return int(outcome.exit_code)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("GIT_AUTHOR_NAME", "bench")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "bench@lbctl.invalid")
    os.environ.setdefault("GIT_COMMITTER_NAME", "bench")
    os.environ.setdefault("GIT_COMMITTER_EMAIL", "bench@lbctl.invalid")
    tmp = Path(tempfile.mkdtemp(prefix="lbctl-bench-detect-"))
    web = Backends.start(["web1", "web2", "web3"])
    legacy = Backends.start(["old1"])
    fe_port = free_port()
    haproxy = None
    load = None
    try:

        def cfg(route: str) -> str:
            return haproxy_config(
                frontend_port=fe_port,
                backends=web.ports,
                stats_socket=tmp / "lb" / "admin.sock",
                route_to=route,
                extra_backends=LEGACY.format(port=legacy.ports["old1"]),
            )

        haproxy = Haproxy.start(tmp / "lb", cfg("web"))
        load = Load(f"http://127.0.0.1:{fe_port}/", rate=20, concurrency=2, max_requests=5000, max_seconds=600).start()
        bad = tmp / "bad.cfg"
        bad.write_text(cfg("legacy"))
        results: dict[str, list[float]] = {"balance": [], "detect": []}
        for label, balance in (("with balance check", True), ("http check only (peer)", False)):
            store = tmp / f"store-{balance}"
            subprocess.run(
                [sys.executable, "-m", "lbctl", "init", str(store), "-q"], check=True, stdout=subprocess.DEVNULL
            )
            (store / "lbctl.toml").write_text(toml(haproxy, fe_port, balance=balance))
            (store / "configs/edge/haproxy.cfg").write_text(cfg("web"))
            subprocess.run(["git", "-C", str(store), "commit", "-qam", "adopt"], check=True)
            rounds = args.rounds if balance else 1
            for number in range(rounds):
                time.sleep(1.5)  # real traffic on the good config, for the baseline
                marks: dict[str, float] = {}
                code = deploy(store, bad, marks)
                if balance:
                    if code != 1 or "restored" not in marks:
                        print(f"round {number + 1}: unexpected exit {code}", file=sys.stderr)
                        return 1
                    results["balance"].append(marks["restored"] - marks["reload"])
                    results["detect"].append(marks["verdict"] - marks["reload"])
                else:
                    verdict = "rolled back" if code == 1 else f"kept the bad change live (exit {code})"
                    print(f"peer, {label}: {verdict} after a {marks['verdict'] - marks['reload']:.2f} s window")
                    if code == 0:
                        haproxy.config.write_text(cfg("web"))
                        haproxy.master_command("reload")
        timed, detect = results["balance"], results["detect"]
        print(f"scenario (c), {len(timed)} rounds, lbctl defaults (verify_seconds 10, check_interval 0.5):")
        print(
            f"  reload → bad change detected:        min {min(detect):.2f} s, median {statistics.median(detect):.2f} s"
        )
        print(
            f"  reload → previous config verified:   min {min(timed):.2f} s, median {statistics.median(timed):.2f} s"
            f"  (target: under 5 s)"
        )
        print(f"  load during the run: {load.total} requests, {dict(load.statuses)}")
        return 0
    finally:
        if load is not None:
            load.stop()
        if haproxy is not None:
            haproxy.stop()
        web.stop()
        legacy.stop()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    raise SystemExit(main())
