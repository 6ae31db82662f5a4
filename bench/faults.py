"""Kill-and-recover loop: lbctl SIGKILLed mid-deploy N times, and the runbook's command after each.

    python bench/faults.py [--runs 30] [--transport both|local|ssh]

One run starts three backends, one HAProxy master-worker and (for ssh) one private sshd on
loopback, and a store whose target reaches that HAProxy. Each round:

1. config A (weight 100) is live and verified good (deployed by lbctl when it is not);
2. `lbctl deploy --file B` (B differs every round) runs as its own process and is SIGKILLed at
   one stage (`LBCTL_FAULT_AT`, cycling through the stages from staging to recording);
3. the on-call engineer runs `lbctl status`, `lbctl log`, then `lbctl rollback --to last-good --yes`
   (never --force), each as its own process.

Counted per round: whether the LB's file was complete right after the kill (byte-equal to A or B,
and `haproxy -c` accepts it); whether the rollback exited 0 without --force with the last-good
config live and the store's HEAD holding it; events lost (the killed deploy's `interrupted` event,
or its `good` one when it was killed after recording, and the rollback's own event, each missing
from `lbctl log --json`); leftovers (files lbctl staged or half made beside the live config, or an
in-flight record, after the rollback). Prints the totals.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config, haproxy_target_toml  # noqa: E402
from lbctl.lab.sshd import Sshd, start_sshd  # noqa: E402

STAGES = [
    "before:stage",
    "after:stage",
    "after:validate",
    "after:snapshot",
    "after:commit",
    "before:swap",
    "after:swap",
    "after:reload",
    "after:land commit",
    "before:verify",
    "before:record",
    "after:record",
]
LEFTOVER_MARKS = ("lbctl-stage", "lbctl-restore", ".tmp-", "lbctl-tmp", ".lbctl.lock.d")


@dataclass
class Totals:
    runs: int = 0
    complete: int = 0
    recovered: int = 0
    events_lost: int = 0
    leftovers: int = 0
    seconds: float = 0.0


class Rig:
    """One HAProxy and a store reaching it over `transport`; lbctl run as a process each time."""

    def __init__(self, workdir: Path, backends: Backends, transport: str, sshd: Sshd | None) -> None:
        self.workdir, self.backends, self.transport = workdir, backends, transport
        self.frontend, self.dead = free_port(), free_port()
        lb = workdir / "lb"
        self.haproxy = Haproxy.start(lb, self.config(100))
        self.store = workdir / "store"
        self.env = {**os.environ, "LBCTL_STORE": str(self.store)}
        self.env.pop("LBCTL_FAULT_AT", None)
        self.deployed = False
        subprocess.run(
            [sys.executable, "-m", "lbctl", "init", str(self.store)], env=self.env, check=True, capture_output=True
        )
        head = "[defaults]\nverify_seconds = 0\ncheck_interval = 0.2\nretries = 2\n\n"
        target = haproxy_target_toml("edge", self.haproxy, f"http://127.0.0.1:{self.frontend}/", probes=1)
        if transport == "ssh" and sshd is not None:
            target = target.replace(
                'transport = "local"',
                f'transport = "ssh"\nhost = "127.0.0.1"\nport = {sshd.port}\n'
                f'identity_file = "{sshd.client_key}"\nknown_hosts = "{sshd.known_hosts}"',
            )
        (self.store / "lbctl.toml").write_text(head + target)
        self.git("add", "lbctl.toml")
        self.git("commit", "-q", "-m", "Add target edge")

    def config(self, weight: int) -> str:
        return haproxy_config(
            frontend_port=self.frontend,
            backends=self.backends.ports,
            stats_socket=self.workdir / "lb" / "admin.sock",
            weights={"web1": 100, "web2": weight, "web3": 100},
            extra_backends=f"\nbackend maintenance\n    server sorry 127.0.0.1:{self.dead} check inter 1s\n",
        )

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.store), *args], check=True, capture_output=True, text=True).stdout

    def lbctl(self, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "LBCTL_FAULT_AT": fault} if fault else self.env
        return subprocess.run([sys.executable, "-m", "lbctl", *args], env=env, capture_output=True, text=True)

    def round(self, number: int, stage: str, totals: Totals) -> None:
        good_text = self.config(100)
        good = self.workdir / "good.cfg"
        good.write_text(good_text)
        if self.haproxy.config.read_text() != good_text or not self.deployed:
            self.deployed = True
            done = self.lbctl("deploy", "edge", "--file", str(good), "--yes")
            if done.returncode != 0:
                raise SystemExit(f"setup deploy failed: {done.stderr}")
        new_text = self.config(10 + number % 80)
        new = self.workdir / "new.cfg"
        new.write_text(new_text)
        events_before = len(self.events())

        killed = self.lbctl("deploy", "edge", "--file", str(new), "--yes", fault=stage)
        if killed.returncode != -9:
            raise SystemExit(f"lbctl was not killed at {stage}: exit {killed.returncode}: {killed.stderr}")
        started = time.perf_counter()
        live = self.haproxy.config.read_text()
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(self.haproxy.config)], capture_output=True)
        totals.complete += live in (good_text, new_text) and check.returncode == 0

        self.lbctl("status", "edge")
        self.lbctl("log", "edge")
        rollback = self.lbctl("rollback", "edge", "--to", "last-good", "--yes")
        finished = stage == "after:record"  # the deploy had recorded good: last-good is B
        want = new_text if finished else good_text
        live = self.haproxy.config.read_text()
        head = self.git("show", "HEAD:configs/edge/haproxy.cfg")
        totals.recovered += rollback.returncode == 0 and live == want and head == want
        totals.seconds += time.perf_counter() - started

        events = self.events()
        verdicts = [e["verdict"] for e in events[: len(events) - events_before]]
        expected = ["good"] if finished else ["interrupted"]  # the killed deploy's own event
        if "nothing to do" not in rollback.stdout:
            expected.append("good")  # the rollback's (none when the LB already ran last-good)
        totals.events_lost += sum(max(0, expected.count(v) - verdicts.count(v)) for v in set(expected))

        lb_dir = self.haproxy.config.parent
        left = [p for p in lb_dir.iterdir() if any(mark in p.name for mark in LEFTOVER_MARKS)]
        inflight = list((self.store / ".git" / "lbctl" / "inflight").glob("*.json*"))
        totals.leftovers += bool(left or inflight)
        totals.runs += 1
        if rollback.returncode != 0 or left or inflight:
            print(f"  round {number} ({stage}): rollback exit {rollback.returncode}, left {left + inflight}")
            print("   ", rollback.stderr.strip()[:400])

    def events(self) -> list[dict[str, object]]:
        done = self.lbctl("log", "edge", "--json", "-n", "100000")
        events: list[dict[str, object]] = json.loads(done.stdout)["events"]
        return events

    def stop(self) -> None:
        self.haproxy.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--transport", choices=["both", "local", "ssh"], default="both")
    args = parser.parse_args()
    transports = ["local", "ssh"] if args.transport == "both" else [args.transport]
    with tempfile.TemporaryDirectory(prefix="lbctl-bench-faults-") as tmp:
        work = Path(tmp)
        home = work / "home"
        home.mkdir()
        os.environ.update(
            HOME=str(home),
            GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
            GIT_AUTHOR_NAME="bench",
            GIT_AUTHOR_EMAIL="bench@lbctl.invalid",
            GIT_COMMITTER_NAME="bench",
            GIT_COMMITTER_EMAIL="bench@lbctl.invalid",
        )
        backends = Backends.start(["web1", "web2", "web3"])
        sshd = start_sshd(work / "sshd") if "ssh" in transports else None
        rigs = {t: Rig(work / t, backends, t, sshd) for t in transports}
        totals = {t: Totals() for t in transports}
        try:
            for number in range(args.runs):
                transport = transports[number % len(transports)]
                stage = STAGES[(number // len(transports)) % len(STAGES)]
                rigs[transport].round(number, stage, totals[transport])
        finally:
            for rig in rigs.values():
                rig.stop()
            if sshd is not None:
                sshd.stop()
            backends.stop()
    print(f"{'transport':<10} {'runs':>5} {'complete':>9} {'recovered':>10} {'events lost':>12} {'leftovers':>10}")
    for transport, t in totals.items():
        print(
            f"{transport:<10} {t.runs:>5} {t.complete:>9} {t.recovered:>10} {t.events_lost:>12} {t.leftovers:>10}"
            f"   (recovery: {t.seconds / max(t.runs, 1):.2f} s per run: status, log, rollback)"
        )
    all_runs = sum(t.runs for t in totals.values())
    ok = all(t.complete == t.runs == t.recovered and not t.events_lost and not t.leftovers for t in totals.values())
    print(f"{all_runs} runs: " + ("every promise held" if ok else "SOME PROMISES BROKEN (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
