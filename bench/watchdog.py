"""Commit-confirm: from the watchdog's deadline to the previous config served, over N runs.

    python bench/watchdog.py [--runs 10] [--window 2] [--transport local|ssh]

One run starts three backends, one HAProxy master-worker (and, for ssh, a private sshd) on
loopback, and a store whose target reaches it. Config A is deployed and verified good. Each round,
`lbctl deploy --file B --confirm-within WINDOW` runs as its own process and is SIGKILLed right after
the reload (`LBCTL_FAULT_AT=after:reload`): nobody but the watchdog on the LB host can undo it. The
bench then polls every 5 ms and reports, from the deadline (read from the watchdog's own file):

- file:   the live file holds A again (the watchdog's own clock, `restored_ms` in its result);
- worker: a new HAProxy worker is up and the old one gone (`show proc`, seen by the bench);
- served: the first answer 200 through the frontend after that (the previous config serving).

`lbctl status` then records the `watchdog-reverted` event (checked). Prints each round and the
median / max of each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config, haproxy_target_toml  # noqa: E402
from lbctl.lab.sshd import start_sshd  # noqa: E402


def workers(haproxy: Haproxy) -> set[str]:
    try:
        text = haproxy.master_command("show proc")
    except OSError:
        return set()
    found = set()
    for line in text.splitlines():
        if line.startswith("# old"):
            break
        fields = line.split()
        if len(fields) > 1 and fields[1] == "worker":
            found.add(fields[0])
    return found


def served(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def lbctl(store: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LBCTL_STORE": str(store)}
    env.pop("LBCTL_FAULT_AT", None)
    if fault:
        env["LBCTL_FAULT_AT"] = fault
    return subprocess.run([sys.executable, "-m", "lbctl", *args], env=env, capture_output=True, text=True, timeout=120)


def git(store: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(store), *args], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--transport", choices=("local", "ssh"), default="local")
    options = parser.parse_args()

    backends = Backends.start(["web1", "web2", "web3"])
    work = Path(tempfile.mkdtemp(prefix="lbctl-bench-watchdog-"))
    port = free_port()
    lb_dir = work / "lb"

    def config(weight: int, note: str = "") -> str:
        text = haproxy_config(
            frontend_port=port,
            backends=backends.ports,
            stats_socket=lb_dir / "admin.sock",
            weights={"web1": 100, "web2": weight, "web3": 100},
        )
        return text + (f"# {note}\n" if note else "")

    haproxy = Haproxy.start(lb_dir, config(100))
    sshd = start_sshd(work / "sshd") if options.transport == "ssh" else None
    store = work / "store"
    figures: dict[str, list[float]] = {"file": [], "worker": [], "served": []}
    try:
        assert lbctl(store.parent, "init", str(store), "--quiet").returncode == 0
        toml = "[defaults]\nverify_seconds = 0\ncheck_interval = 0.2\nretries = 2\n\n"
        toml += haproxy_target_toml("edge", haproxy, f"http://127.0.0.1:{port}/", probes=1)
        if sshd is not None:
            toml = toml.replace(
                'transport = "local"',
                f'transport = "ssh"\nhost = "127.0.0.1"\nport = {sshd.port}\n'
                f'identity_file = "{sshd.client_key}"\nknown_hosts = "{sshd.known_hosts}"',
            )
        (store / "lbctl.toml").write_text(toml)
        git(store, "add", "lbctl.toml")
        git(store, "commit", "-qm", "Add target edge")
        good = work / "a.cfg"
        good.write_text(config(100))
        done = lbctl(store, "deploy", "edge", "--file", str(good), "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        home = lb_dir / ".haproxy.cfg.lbctl-watchdog"
        print(f"transport {options.transport}, window {options.window:g} s, {options.runs} runs")
        print("run  deadline→file  deadline→new worker  deadline→served")
        for n in range(1, options.runs + 1):
            bad = work / f"b{n}.cfg"
            bad.write_text(config(30, f"round {n}"))
            window = f"{options.window:g}s"
            argv = ("deploy", "edge", "--file", str(bad), "--yes", "--confirm-within", window)
            killed = lbctl(store, *argv, fault="after:reload")
            assert killed.returncode == -signal.SIGKILL, killed.stderr
            armed = sorted(home.iterdir())[-1]
            deadline = int((armed / "deadline").read_text()) / 1000
            before = workers(haproxy)
            new_worker = answer = None
            limit = time.time() + options.window + 30
            while time.time() < limit and answer is None:
                now = time.time()
                if new_worker is None:
                    current = workers(haproxy)
                    if current and not current & before and haproxy.config.read_text() == good.read_text():
                        new_worker = now
                elif served(port):
                    answer = time.time()
                time.sleep(0.005)
            while not (armed / "result").exists() and time.time() < limit:
                time.sleep(0.02)  # the watchdog writes it once it saw the new worker too
            result = dict(line.split("=", 1) for line in (armed / "result").read_text().splitlines() if "=" in line)
            assert result["result"] == "reverted", result
            assert new_worker is not None and answer is not None, "not reverted in time"
            file_back = (int(result["restored_ms"]) - int(result["deadline_ms"])) / 1000
            row = {"file": file_back, "worker": new_worker - deadline, "served": answer - deadline}
            for key, value in row.items():
                figures[key].append(value)
            status = lbctl(store, "status", "edge", "--json")
            recorded = json.loads(status.stdout)["targets"][0]["watchdog"]
            assert any(line.startswith("watchdog-reverted") for line in recorded), recorded
            print(f"{n:3d}  {row['file']:12.3f}  {row['worker']:19.3f}  {row['served']:15.3f}")
        print("median " + "  ".join(f"{k} {statistics.median(v):.3f} s" for k, v in figures.items()))
        print("max    " + "  ".join(f"{k} {max(v):.3f} s" for k, v in figures.items()))
    finally:
        haproxy.stop()
        backends.stop()
        if sshd is not None:
            sshd.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
