"""Benchmark: a HAProxy rollback over SSH, lbctl vs a bare paramiko script vs ansible-playbook.

    python bench/rollback_ssh.py [--rounds 7] [--ansible-rounds 3] [--no-ansible] [--delay 25ms]

One run starts one private sshd, three backends and one HAProxy master-worker on loopback,
and a store whose target `edge` is reached over that sshd (verify_seconds = 0: one round of
checks, one HTTP probe). Config A is deployed with lbctl and verified good.

Every round of every contender starts from the same state, set up untimed: the LB runs config B
(written over the live file and reloaded by the harness, as a hand edit or a bad push would).
Each contender then puts A back; what is timed is the whole process, from spawn to exit:

- lbctl-last-good: untimed `lbctl pull edge` (lbctl refuses to overwrite a hand edit; the operator
  records it), then timed `python -m lbctl rollback edge --to last-good --yes` (A is last-good; lbctl sees
  B live, so it really stages, validates, swaps, reloads, confirms with `show proc`, probes, records).
- lbctl-previous: untimed `lbctl deploy edge --file B` (verified good), then timed `python -m lbctl
  rollback edge --to previous --yes`: the same, plus the forward commit and marking B bad.
- bare: `python bare.py`: paramiko connect (TCP_NODELAY), SFTP upload to a temp file beside the
  live one, `haproxy -c`, rename, reload via socat on the master socket, first healthy HTTP
  answer, `show proc` confirm. One connection.
- ansible: `ansible-playbook` (ansible-core from PyPI, installed by this script into
  /tmp/lbctl-bench-ansible): copy with validate, reload via shell+socat, uri until 200. SSH with
  OpenSSH's ControlPersist master (ansible's default), warmed by an untimed first run.

With `--delay 25ms`, every contender reaches sshd through the lab's latency relay
(`lbctl.lab.netproxy`), 25 ms each way, as over a VPN to a remote site; the relay counts the
round trips each contender's timed run makes (turns from client-to-server to server-to-client
traffic, SSH's handshake included).

Prints min and median per contender (and round trips) and the ratios against PRODUCT.md §6's targets:
within 1.25x the bare script and 7x faster than ansible without delay; with delay, no slower than the
bare script and 7x faster than ansible.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lbctl.lab.netproxy import Relay  # noqa: E402
from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config, temp_dir  # noqa: E402
from lbctl.lab.sshd import start_sshd  # noqa: E402

ANSIBLE_HOME = Path(os.environ.get("LBCTL_BENCH_ANSIBLE", "/tmp/lbctl-bench-ansible"))

BARE = r"""
import http.client, socket, sys, time
from urllib.parse import urlsplit
import paramiko

host, port, key, known_hosts, path, master, url, local = sys.argv[1:9]
parts = urlsplit(url)
s = socket.create_connection((host, int(port)), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c = paramiko.SSHClient()
c.load_host_keys(known_hosts)
c.set_missing_host_key_policy(paramiko.RejectPolicy())
c.connect(host, int(port), username="root", key_filename=key, sock=s, allow_agent=False, look_for_keys=False)

def run(cmd, stdin=b""):
    ch = c.get_transport().open_session()
    ch.exec_command(cmd)
    if stdin:
        ch.sendall(stdin)
    ch.shutdown_write()
    out = ch.makefile("rb").read()
    code = ch.recv_exit_status()
    ch.close()
    return code, out

def master_cmd(cmd):
    for _ in range(100):
        try:  # while the master re-executes, socat may end before it took its input
            code, out = run(f"socat -t 5 stdio unix-connect:{master}", cmd.encode() + b"\n")
        except OSError:
            code = -1
        if code == 0:
            return out.decode()
        time.sleep(0.02)
    raise SystemExit("master socket never answered")

sftp = c.open_sftp()
tmp = path + ".bare-tmp"
sftp.put(local, tmp)
code, out = run(f"haproxy -c -q -f {tmp}")
if code != 0:
    raise SystemExit("invalid config: " + out.decode())
before = master_cmd("show proc")
sftp.posix_rename(tmp, path)
master_cmd("reload")
while True:  # first healthy answer
    try:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
        conn.request("GET", "/")
        if conn.getresponse().status == 200:
            break
    except OSError:
        pass
    time.sleep(0.01)
while True:  # show proc: a new worker, no failed reload
    after = master_cmd("show proc")
    if after != before and "[failed: 0]" in after:
        break
    time.sleep(0.02)
c.close()
"""

PLAYBOOK = """\
- hosts: lb
  gather_facts: false
  tasks:
    - name: upload and validate
      copy:
        src: "{src}"
        dest: "{path}"
        validate: "haproxy -c -q -f %s"
    - name: reload
      shell: "echo reload | socat stdio unix-connect:{master}"
    - name: first healthy answer
      uri:
        url: "{url}"
        status_code: 200
      register: answer
      until: answer.status == 200
      retries: 50
      delay: 0.1
      delegate_to: localhost
"""


@contextlib.contextmanager
def private_sshd(workdir: Path) -> Iterator[tuple[int, Path, Path]]:
    """An sshd on a free loopback port (the tests' own): (port, client key, known_hosts)."""
    sshd = start_sshd(workdir, extra="MaxSessions 50\n")
    try:
        yield sshd.port, sshd.client_key, sshd.known_hosts
    finally:
        sshd.stop()


def ensure_ansible() -> Path:
    playbook = ANSIBLE_HOME / "venv" / "bin" / "ansible-playbook"
    if not playbook.exists():
        print(f"installing ansible-core into {ANSIBLE_HOME}/venv (once) ...", flush=True)
        ANSIBLE_HOME.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(ANSIBLE_HOME / "venv")], check=True)
        subprocess.run([str(ANSIBLE_HOME / "venv/bin/pip"), "install", "-q", "ansible-core"], check=True)
    return playbook


LAST_OUTPUT: dict[str, str] = {}
RELAY: list[Relay] = []  # the latency relay, when --delay is set
LAST_TRIPS: list[int] = [0]  # round trips through the relay of the last timed command


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    if RELAY:
        RELAY[0].reset()
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd)
    seconds = time.perf_counter() - start
    if RELAY:
        LAST_TRIPS[0] = RELAY[0].reset().round_trips
    LAST_OUTPUT[" ".join(argv[:4])] = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} ... exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds


def http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ansible-rounds", type=int, default=3)
    parser.add_argument("--no-ansible", action="store_true")
    parser.add_argument(
        "--profile", type=Path, help="also write a cProfile and -X importtime of one lbctl rollback here"
    )
    parser.add_argument("--verbose", action="store_true", help="print each command's last output (stage timings)")
    parser.add_argument(
        "--delay", default="0", help="latency each way between the contenders and sshd, e.g. 25ms (default 0)"
    )
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
    # An installed package has its bytecode compiled at install time; an editable checkout run
    # with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every lbctl module on every run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "lbctl")], check=True)
    ansible = None if args.no_ansible else ensure_ansible()

    with temp_dir("lbctl-bench-") as tmp:
        env["HOME"] = str(tmp / "home")
        (tmp / "home" / ".ssh").mkdir(parents=True)
        (tmp / "sshd").mkdir()
        backends = Backends.start(["web1", "web2", "web3"])
        haproxy: Haproxy | None = None
        try:
            with private_sshd(tmp / "sshd") as (sshd_port, key, known):
                ssh_port = sshd_port
                if delay > 0:
                    relay = Relay(sshd_port, delay=delay).start()
                    RELAY.append(relay)
                    ssh_port = relay.port
                    line = known.read_text().splitlines()[0]
                    known.write_text(f"{line}\n{line.replace(f']:{sshd_port} ', f']:{ssh_port} ')}\n")
                fe = free_port()
                lb = tmp / "lb"
                stats = lb / "admin.sock"

                def cfg(weight: int) -> str:
                    return haproxy_config(
                        frontend_port=fe,
                        backends=backends.ports,
                        stats_socket=stats,
                        weights={"web1": 100, "web2": 100, "web3": weight},
                    )

                a_text, b_text = cfg(50), cfg(100)
                haproxy = Haproxy.start(lb, b_text)
                url = f"http://127.0.0.1:{fe}/"
                a_file, b_file = tmp / "a.cfg", tmp / "b.cfg"
                a_file.write_text(a_text)
                b_file.write_text(b_text)
                store = tmp / "store"
                lbctl = [sys.executable, "-m", "lbctl"]
                subprocess.run([*lbctl, "init", str(store), "--quiet"], env=env, check=True, capture_output=True)
                (store / "lbctl.toml").write_text(f"""\
[defaults]
verify_seconds = 0
retries = 3

[targets.edge]
kind = "haproxy"
transport = "ssh"
host = "127.0.0.1"
port = {ssh_port}
user = "root"
identity_file = "{key}"
known_hosts = "{known}"
source = "configs/edge/haproxy.cfg"
path = "{haproxy.config}"
master_socket = "{haproxy.master_socket}"
stats_socket = "{haproxy.stats_socket}"

[[targets.edge.checks]]
type = "http"
url = "{url}"
probes = 1
""")
                subprocess.run(["git", "-C", str(store), "add", "-A"], env=env, check=True)
                subprocess.run(["git", "-C", str(store), "commit", "-qm", "target edge"], env=env, check=True)
                timed([*lbctl, "deploy", "edge", "--file", str(a_file), "--yes", "--store", str(store)], env)

                def put_b_live() -> None:
                    """The untimed starting point of every round: B live, reloaded, answering."""
                    assert haproxy is not None
                    staging = haproxy.config.with_suffix(".harness")
                    staging.write_text(b_text)
                    staging.rename(haproxy.config)
                    before = haproxy.master_command("show proc")
                    for _ in range(100):
                        with contextlib.suppress(OSError):
                            haproxy.master_command("reload")
                            break
                        time.sleep(0.02)
                    for _ in range(500):
                        with contextlib.suppress(OSError):
                            now = haproxy.master_command("show proc")
                            if now != before and http_ok(url):
                                break
                        time.sleep(0.02)
                    time.sleep(0.2)

                def check_a_live() -> None:
                    assert haproxy is not None and haproxy.config.read_text() == a_text, "A is not live"

                bare_py = tmp / "bare.py"
                bare_py.write_text(BARE)
                bare_argv = [
                    sys.executable,
                    str(bare_py),
                    "127.0.0.1",
                    str(ssh_port),
                    str(key),
                    str(known),
                    str(haproxy.config),
                    str(haproxy.master_socket),
                    url,
                    str(a_file),
                ]

                def lbctl_last_good() -> float:
                    put_b_live()
                    # lbctl refuses to overwrite a hand edit (drift); an operator records it first.
                    timed([*lbctl, "pull", "edge", "--store", str(store)], env)
                    argv = [*lbctl, "rollback", "edge", "--to", "last-good", "--yes", "--store", str(store)]
                    return timed(argv, env)

                def lbctl_previous() -> float:
                    # B goes live through lbctl itself (A is live from the previous contender).
                    timed([*lbctl, "deploy", "edge", "--file", str(b_file), "--yes", "--store", str(store)], env)
                    time.sleep(0.2)
                    return timed([*lbctl, "rollback", "edge", "--to", "previous", "--yes", "--store", str(store)], env)

                def bare() -> float:
                    put_b_live()
                    return timed(bare_argv, env)

                contenders: dict[str, Callable[[], float]] = {
                    "lbctl-last-good": lbctl_last_good,
                    "lbctl-previous": lbctl_previous,
                    "bare": bare,
                }
                if ansible is not None:
                    ansible_fn = ansible_contender(
                        ansible, tmp, env, ssh_port, key, known, haproxy, a_file, url, put_b_live
                    )
                    ansible_fn()  # untimed warm-up: starts the ControlPersist master, fills caches
                    contenders["ansible"] = ansible_fn

                results: dict[str, list[float]] = {name: [] for name in contenders}
                trips: dict[str, list[int]] = {name: [] for name in contenders}
                for number in range(args.rounds):
                    for name, fn in contenders.items():
                        if name == "ansible" and number >= args.ansible_rounds:
                            continue
                        results[name].append(fn())
                        trips[name].append(LAST_TRIPS[0])
                        check_a_live()
                report(results, trips if RELAY else None, delay)
                if args.profile:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    rb = ["rollback", "edge", "--to", "last-good", "--yes", "--store", str(store)]
                    pull = [*lbctl, "pull", "edge", "--store", str(store)]
                    put_b_live()
                    timed(pull, env)
                    timed(
                        [sys.executable, "-m", "cProfile", "-o", str(args.profile / "lbctl.prof"), "-m", "lbctl", *rb],
                        env,
                    )
                    put_b_live()
                    timed(pull, env)
                    start = time.perf_counter()
                    with (args.profile / "importtime.txt").open("w") as out:
                        subprocess.run(
                            [sys.executable, "-X", "importtime", "-m", "lbctl", *rb], env=env, stderr=out, check=True
                        )
                    print(f"profile in {args.profile} ({time.perf_counter() - start:.3f} s with -X importtime)")
                if args.verbose:
                    for argv, output in LAST_OUTPUT.items():
                        print(f"\n--- last output of {argv} ...\n{output}")
        finally:
            if haproxy is not None:
                haproxy.stop()
            backends.stop()
            for relay in RELAY:
                relay.close()
            # ansible's ControlPersist master would otherwise linger for its idle timeout.
            subprocess.run(["pkill", "-f", f"{tmp}/home/.ansible/cp"], check=False)
    return 0


def ansible_contender(
    playbook_bin: Path,
    tmp: Path,
    env: dict[str, str],
    ssh_port: int,
    key: Path,
    known: Path,
    haproxy: Haproxy,
    a_file: Path,
    url: str,
    put_b_live: Callable[[], None],
) -> Callable[[], float]:
    work = tmp / "ansible"
    work.mkdir()
    (work / "inventory.ini").write_text(
        f"lb ansible_host=127.0.0.1 ansible_port={ssh_port} ansible_user=root "
        f"ansible_ssh_private_key_file={key} ansible_python_interpreter=/usr/bin/python3 "
        f"ansible_ssh_common_args='-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes'\n"
        "localhost ansible_connection=local ansible_python_interpreter=" + sys.executable + "\n"
    )
    (work / "rollback.yml").write_text(
        PLAYBOOK.format(src=a_file, path=haproxy.config, master=haproxy.master_socket, url=url)
    )
    ansible_env = dict(env, ANSIBLE_HOME=str(work / "home"), ANSIBLE_LOCAL_TEMP=str(work / "tmp"))
    ansible_env["ANSIBLE_NOCOLOR"] = "1"
    argv = [str(playbook_bin), "-i", str(work / "inventory.ini"), str(work / "rollback.yml")]

    def run() -> float:
        put_b_live()
        return timed(argv, ansible_env, cwd=work)

    return run


def report(results: dict[str, list[float]], trips: dict[str, list[int]] | None, delay: float) -> None:
    if delay:
        print(f"\nwith {delay * 1000:.0f} ms each way between the contenders and sshd (lab latency relay)")
    print(f"\n{'contender':<18}{'rounds':>7}{'min s':>9}{'median s':>10}" + ("  round trips" if trips else ""))
    medians = {}
    for name, times in results.items():
        medians[name] = statistics.median(times)
        line = f"{name:<18}{len(times):>7}{min(times):>9.3f}{medians[name]:>10.3f}"
        if trips:
            line += f"  {statistics.median(trips[name]):>11.0f}"
        print(line)
    bare = medians["bare"]
    limit = 1.0 if delay else 1.25  # PRODUCT.md §6: with latency, no slower than the bare script
    print()
    for name in ("lbctl-last-good", "lbctl-previous"):
        ratio = medians[name] / bare
        verdict = "OK" if ratio <= limit else "MISSED"
        print(f"{name} / bare          = {ratio:5.2f}x   (target ≤ {limit}x: {verdict})")
        if "ansible" in medians:
            speedup = medians["ansible"] / medians[name]
            verdict = "OK" if speedup >= 7 else "MISSED"
            print(f"ansible / {name}   = {speedup:5.2f}x   (target ≥ 7x: {verdict})")
    if "ansible" in medians:
        # lbctl does at least what the bare script does, so this is the most any tool can reach here;
        # both targets together need it at 7 x 1.25 = 8.75x or more.
        print(f"ansible / bare              = {medians['ansible'] / bare:5.2f}x   (the ceiling for the 7x target)")


if __name__ == "__main__":
    raise SystemExit(main())
