"""How long from a weight set through HAProxy's runtime API to lbctl watch's alert at Alertmanager.

On a real HAProxy on loopback (three backends, light bounded load), `lbctl watch` runs with
interval 1s, window 3s, for 2s and posts to a real Alertmanager (Debian's package). Each round:
wait until nothing is active, `set server web/web2 weight 0`, then poll Alertmanager's v2 API
every 50 ms until the alert is there (timed), restore the weight, and time the resolution too.

The bound to compare with: the deviation shows once the window holds enough post-change traffic
(a fraction of `window`), is judged at the next round (up to `interval`), then must hold `for`.

Run: .venv/bin/python bench/watch_alert.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from lbctl.lab.monitoring import Alertmanager
from lbctl.lab.processes import Backends, Haproxy, Load, free_port, haproxy_config, haproxy_target_toml

SETTINGS = {"interval": 1.0, "window": 3.0, "for_": 2.0, "min_requests": 20}


def admin(haproxy: Haproxy, command: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(haproxy.stats_socket))
        s.sendall(command.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass


def until(condition: object, timeout: float = 60.0, step: float = 0.05) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return time.monotonic()
        time.sleep(step)
    raise RuntimeError(f"not within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    from lbctl.store.workspace import open_workspace
    from lbctl.watch.runner import run

    with tempfile.TemporaryDirectory(prefix="lbctl-bench-watch-") as tmp:
        root = Path(tmp)
        backends = Backends.start(["web1", "web2", "web3"])
        fe_port = free_port()
        haproxy = Haproxy.start(
            root / "lb",
            haproxy_config(frontend_port=fe_port, backends=backends.ports, stats_socket=root / "lb" / "admin.sock"),
        )
        manager = Alertmanager.start(root / "alertmanager")
        load = Load(f"http://127.0.0.1:{fe_port}/", rate=40, concurrency=2, max_requests=40 * 900, max_seconds=900)
        stop = threading.Event()
        try:
            store = root / "store"
            subprocess.run([sys.executable, "-m", "lbctl", "init", str(store)], check=True, capture_output=True)
            (store / "lbctl.toml").write_text(haproxy_target_toml("edge", haproxy, f"http://127.0.0.1:{fe_port}/"))
            subprocess.run(
                [sys.executable, "-m", "lbctl", "pull", "edge", "--store", str(store)], check=True, capture_output=True
            )
            ws = open_workspace(str(store))
            settings = dataclasses.replace(ws.config.watch, alertmanager=manager.url, **SETTINGS)
            thread = threading.Thread(
                target=run, args=(ws, [ws.target("edge")], settings), kwargs={"stop": stop}, daemon=True
            )
            load.start()
            thread.start()
            raised: list[float] = []
            cleared: list[float] = []
            for n in range(args.rounds):
                until(lambda: not manager.alerts(source="lbctl"), step=0.2)
                time.sleep(settings.window + settings.interval)  # a clean window before the change
                changed = time.monotonic()
                admin(haproxy, "set server web/web2 weight 0")
                arrived = until(lambda: manager.alerts(alertname="LbctlShareDeviation", server="web2"))
                admin(haproxy, "set server web/web2 weight 100")
                restored = time.monotonic()
                gone = until(lambda: not manager.alerts(source="lbctl"))
                raised.append(arrived - changed)
                cleared.append(gone - restored)
                print(f"round {n + 1}: alert after {raised[-1]:.2f} s, resolved after {cleared[-1]:.2f} s", flush=True)
        finally:
            stop.set()
            load.stop()
            manager.stop()
            haproxy.stop()
            backends.stop()

    print(
        f"\nsettings: interval {SETTINGS['interval']:g} s, window {SETTINGS['window']:g} s, for {SETTINGS['for_']:g} s"
    )
    for name, values in (("weight change -> alert at Alertmanager", raised), ("weight restored -> resolved", cleared)):
        print(
            f"{name}: median {statistics.median(values):.2f} s, min {min(values):.2f}, max {max(values):.2f} "
            f"over {len(values)} runs"
        )


if __name__ == "__main__":
    main()
