"""Benchmark: a change to a fleet of 20 HAProxy targets against the same change to one target.

    python bench/fleet.py [--targets 20] [--parallel 10] [--rounds 2] [--delay 25ms]

One run starts one private sshd, three backends and N HAProxy master-workers on loopback, and a
store whose targets edge1..edgeN are reached over that sshd, grouped as `[groups.edge]` with
`parallel` (verify_seconds = 0: one round of checks, one HTTP probe each). With `--delay`, lbctl
reaches sshd through the lab's latency relay (`lbctl.lab.netproxy`), that much each way.

Timed, as whole processes from spawn to exit (each round alternates two configs):
- deploy, one target: `lbctl deploy edge1 --yes` (a change committed to edge1's source), and with the
  safety a fleet member gets: `deploy edge1 --confirm-within 5m` then `lbctl confirm edge1` (two processes);
- deploy @edge, all at once: canary = 0, batches = ["100%"] (every member's source changed);
- deploy @edge, with the default policy's shape: canary = 1 (bake 0 s), batches = ["25%", "100%"];
- rollback, one target / @edge: the LBs' files replaced by hand and reloaded, then recorded with
  `lbctl pull` (untimed), then `lbctl rollback edge1 --to last-good --yes` / `rollback @edge ...`.

A fleet deploy arms a commit-confirm watchdog on each member (confirm_within = 5m), keeps it armed
until the rollout ends and then confirms it; the one-target deploy has none (its default).
Prints min and median per case and the ratio against one target (aim: <= 2.5x).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lbctl.lab.netproxy import Relay  # noqa: E402
from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config, temp_dir  # noqa: E402
from lbctl.lab.sshd import start_sshd  # noqa: E402


def run(argv: list[str], env: dict[str, str], cwd: Path, *, check: bool = True) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--delay", default="0ms", help="one-way latency between lbctl and sshd, e.g. 25ms")
    args = parser.parse_args()
    delay = float(args.delay[:-2]) / 1000 if args.delay.endswith("ms") else float(args.delay.rstrip("s"))

    env = dict(os.environ)
    env.update(
        GIT_AUTHOR_NAME="lbctl bench",
        GIT_AUTHOR_EMAIL="bench@lbctl.invalid",
        GIT_COMMITTER_NAME="lbctl bench",
        GIT_COMMITTER_EMAIL="bench@lbctl.invalid",
        PYTHONPATH=str(ROOT),
    )
    env.pop("SSH_AUTH_SOCK", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "lbctl")], check=True)
    lbctl = [sys.executable, "-m", "lbctl"]

    with temp_dir("lbctl-bench-fleet-") as tmp:
        env["HOME"] = str(tmp / "home")
        (tmp / "home" / ".ssh").mkdir(parents=True)
        backends = Backends.start(["web1", "web2", "web3"])
        sshd = start_sshd(tmp / "sshd", extra="MaxSessions 100\nMaxStartups 200\n")
        relay: Relay | None = None
        lbs: dict[str, Haproxy] = {}
        try:
            port = sshd.port
            if delay > 0:
                relay = Relay(sshd.port, delay=delay).start()
                port = relay.port
                line = sshd.known_hosts.read_text().splitlines()[0]
                sshd.known_hosts.write_text(f"{line}\n{line.replace(f']:{sshd.port} ', f']:{port} ')}\n")
            names = [f"edge{i}" for i in range(1, args.targets + 1)]
            ports = {n: free_port() for n in names}

            def cfg(name: str, weight: int) -> str:
                return haproxy_config(
                    frontend_port=ports[name],
                    backends=backends.ports,
                    stats_socket=tmp / name / "admin.sock",
                    weights={"web1": 100, "web2": 100, "web3": weight},
                )

            store = tmp / "store"
            subprocess.run([*lbctl, "init", str(store), "--quiet"], env=env, check=True, capture_output=True)
            toml = ["[defaults]", "verify_seconds = 0", "retries = 3", ""]
            for name in names:
                lbs[name] = Haproxy.start(tmp / name, cfg(name, 100))
                (store / "configs").mkdir(exist_ok=True)
                (store / "configs" / f"{name}.cfg").write_text(cfg(name, 100))
                toml += [
                    f"[targets.{name}]",
                    'kind = "haproxy"',
                    'transport = "ssh"',
                    'host = "127.0.0.1"',
                    f"port = {port}",
                    f'identity_file = "{sshd.client_key}"',
                    f'known_hosts = "{sshd.known_hosts}"',
                    f'source = "configs/{name}.cfg"',
                    f'path = "{lbs[name].config}"',
                    f'master_socket = "{lbs[name].master_socket}"',
                    f'stats_socket = "{lbs[name].stats_socket}"',
                    "",
                    f"[[targets.{name}.checks]]",
                    'type = "http"',
                    f'url = "http://127.0.0.1:{ports[name]}/"',
                    "probes = 1",
                    "",
                ]
            toml += ["[groups.edge]", 'targets = ["edge*"]', "", "[groups.edge.rollout]"]
            toml += [f"parallel = {args.parallel}", 'canary_bake = "0s"', "", "[safety]", "max_traffic_moved = 1.0"]
            (store / "lbctl.toml").write_text("\n".join(toml) + "\n")
            subprocess.run(["git", "-C", str(store), "add", "-A"], env=env, check=True)
            subprocess.run(["git", "-C", str(store), "commit", "-qm", "a fleet"], env=env, check=True)
            for name in names:
                run([*lbctl, "pull", name], env, store)

            weight = [100]

            def commit(which: list[str]) -> None:
                weight[0] = 50 if weight[0] == 100 else 100
                for name in which:
                    (store / "configs" / f"{name}.cfg").write_text(cfg(name, weight[0]))
                subprocess.run(["git", "-C", str(store), "commit", "-qam", f"weight {weight[0]}"], env=env, check=True)

            def hand_edit(which: list[str]) -> None:
                """Untimed: each LB's file replaced by hand and reloaded, then recorded by `lbctl pull`."""
                for name in which:
                    haproxy = lbs[name]
                    staging = haproxy.config.with_suffix(".harness")
                    staging.write_text(cfg(name, 10))
                    staging.rename(haproxy.config)
                    with contextlib.suppress(OSError):
                        haproxy.master_command("reload")
                time.sleep(0.5)
                for name in which:
                    run([*lbctl, "pull", name], env, store)

            results: dict[str, list[float]] = {}
            fleet_all = ["--canary", "0", "--batches", "100%"]
            fleet_default = ["--canary", "1", "--batches", "25%,100%"]
            for _ in range(args.rounds):
                commit(["edge1"])
                results.setdefault("deploy edge1", []).append(run([*lbctl, "deploy", "edge1", "--yes"], env, store))
                commit(["edge1"])  # the same safety as a fleet member: commit-confirm, then confirm
                armed = run([*lbctl, "deploy", "edge1", "--yes", "--confirm-within", "5m"], env, store)
                armed += run([*lbctl, "confirm", "edge1"], env, store)
                results.setdefault("deploy edge1 --confirm-within + confirm", []).append(armed)
                run([*lbctl, "deploy", "@edge", "--yes"], env, store)  # untimed: every member in step again
                commit(names)
                results.setdefault("deploy @edge (all at once)", []).append(
                    run([*lbctl, "deploy", "@edge", "--yes", *fleet_all], env, store)
                )
                commit(names)
                results.setdefault("deploy @edge (canary 1, 25%, 100%)", []).append(
                    run([*lbctl, "deploy", "@edge", "--yes", *fleet_default], env, store)
                )
                hand_edit(["edge1"])
                results.setdefault("rollback edge1 --to last-good", []).append(
                    run([*lbctl, "rollback", "edge1", "--to", "last-good", "--yes"], env, store)
                )
                hand_edit(names)
                results.setdefault("rollback @edge --to last-good", []).append(
                    run([*lbctl, "rollback", "@edge", "--to", "last-good", "--yes"], env, store)
                )
        finally:
            for haproxy in lbs.values():
                haproxy.stop()
            if relay is not None:
                relay.close()
            sshd.stop()
            backends.stop()

    print(
        f"\nfleet of {args.targets} HAProxy targets over ssh, parallel = {args.parallel}, "
        f"delay {args.delay} each way, {args.rounds} round(s)"
    )
    base = {"deploy": statistics.median(results["deploy edge1"]), "rollback": None}
    base["rollback"] = statistics.median(results["rollback edge1 --to last-good"])
    for case, times in results.items():
        one = base["rollback" if case.startswith("rollback") else "deploy"] or 1.0
        ratio = statistics.median(times) / one
        print(
            f"  {case:<38} min {min(times):6.2f} s  median {statistics.median(times):6.2f} s  {ratio:4.1f}x one target"
        )


if __name__ == "__main__":
    main()
