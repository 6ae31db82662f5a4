"""The rollback loop on a real HAProxy: deploy, refuse, detect, restore, select."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from lbctl.kinds.haproxy import ProcState, parse_show_proc
from lbctl.lab.processes import Haproxy
from tests.conftest import Lab, LbctlRunner, git, target_toml, write


def show_proc_workers(haproxy: Haproxy) -> ProcState:
    """Reload count, failed reloads and worker pids (not the raw text: it holds a ticking uptime)."""
    return parse_show_proc(haproxy.master_command("show proc"))


def http_get(port: int) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def status_json(lbctl: LbctlRunner) -> dict:  # type: ignore[type-arg]
    result = lbctl("status", "edge", "--json")
    edge = json.loads(result.out)["targets"][0]
    # status is a gate: 0 when healthy and in sync, 1 when degraded (drift, a lock, not verified...)
    assert result.code == (0 if edge["verdict"] == "healthy" else 1), result.err + str(edge["reasons"])
    return edge  # type: ignore[no-any-return]


def test_deploy_ok_is_live_verified_and_recorded(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 50}))
    before = show_proc_workers(lab.haproxy)

    result = lbctl("deploy", "edge", "--file", str(new), "-m", "Halve web3", "--ticket", "OPS-7", "--yes")

    assert result.code == 0, result.err
    assert lab.live_text() == new.read_text()
    after = show_proc_workers(lab.haproxy)
    assert after.failed == 0 and after.reloads == before.reloads + 1 and after.workers.isdisjoint(before.workers)
    assert http_get(lab.fe_port) == 200
    head = git(store, "log", "-1", "--format=%H%n%B")
    sha = head.splitlines()[0]
    assert "Lbctl-Target: edge" in head and "Lbctl-Ticket: OPS-7" in head and "Lbctl-Reason: Halve web3" in head
    status = status_json(lbctl)
    assert status["live"] == sha and status["status"] == "good" and status["last_good"] == sha
    assert status["drift"] == "none" and status["health"][0]["ok"] is True
    events = json.loads(lbctl("log", "edge", "--json").out)["events"]
    assert events[0]["verdict"] == "good" and events[0]["to_rev"] == sha
    stage_names = [s["name"] for s in events[0]["stages"]]
    assert stage_names[:4] == ["path", "read live", "plan", "stage"]
    assert "validate" in stage_names and "verify" in stage_names
    assert all(s["ok"] for s in events[0]["stages"])
    # The journal travels with the repo: it is a plain git ref.
    assert git(store, "for-each-ref", "refs/lbctl/journal").strip()


def test_validation_failure_changes_nothing(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    live_before = lab.live_text()
    proc_before = show_proc_workers(lab.haproxy)
    head_before = git(store, "rev-parse", "HEAD")
    broken = write(tmp_path / "broken.cfg", lab.config() + "\nbackend broken\n    server x 127.0.0.1:notaport\n")

    result = lbctl("deploy", "edge", "--file", str(broken), "-m", "typo", "--yes")

    assert result.code == 3, result.err
    assert "rejected the candidate config" in result.err and "nothing was changed" in result.err
    assert lab.live_text() == live_before
    assert show_proc_workers(lab.haproxy) == proc_before  # no reload happened
    assert git(store, "rev-parse", "HEAD") == head_before  # no commit left behind
    assert not list(lab.haproxy.config.parent.glob(".*lbctl-stage*"))  # staged file cleaned up


def test_failed_check_rolls_back_automatically(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    good = write(tmp_path / "good.cfg", lab.config(weights={"web1": 100, "web2": 50, "web3": 50}))
    assert lbctl("deploy", "edge", "--file", str(good), "-m", "good", "--yes").code == 0
    good_sha = git(store, "rev-parse", "HEAD").strip()
    bad = write(tmp_path / "bad.cfg", lab.config(route_to="maintenance"))

    # --force: the plan refuses this routing change; one that gets through is caught by verification
    result = lbctl("deploy", "edge", "--file", str(bad), "-m", "route to the new pool", "--yes", "--force")

    assert result.code == 1, result.out + result.err
    assert lab.live_text() == good.read_text()  # the previous config is back
    assert http_get(lab.fe_port) == 200
    commits = git(store, "log", "-3", "--format=%H%x00%B%x1e").split("\x1e")
    restore_sha, restore_msg = commits[0].strip().split("\x00")
    bad_sha = commits[1].strip().split("\x00")[0]
    assert f"Lbctl-Rollback-Of: {bad_sha}" in restore_msg and f"Lbctl-Restores: {good_sha}" in restore_msg
    assert (store / "configs/edge/haproxy.cfg").read_text() == good.read_text()  # the store says what is live
    status = status_json(lbctl)
    assert status["live"] == restore_sha and status["status"] == "good" and bad_sha in status["bad"]
    events = json.loads(lbctl("log", "edge", "--json").out)["events"]
    assert [(e["op"], e["verdict"]) for e in events[:2]] == [("auto-rollback", "good"), ("deploy", "failed")]
    assert events[1]["checks"][0]["ok"] is False
    # last-good never selects the failed revision
    assert lbctl("rollback", "edge", "--to", "last-good", "--yes").code == 0
    assert status_json(lbctl)["live"] == restore_sha


def test_every_selector(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    shas = []
    stamps = []
    for weight in (10, 20, 30):
        cfg = write(tmp_path / f"w{weight}.cfg", lab.config(weights={"web1": weight, "web2": 100, "web3": 100}))
        assert lbctl("deploy", "edge", "--file", str(cfg), "-m", f"web1 at {weight}", "--yes").code == 0
        shas.append(git(store, "rev-parse", "HEAD").strip())
        stamps.append(status_json(lbctl)["updated"])
        time.sleep(0.05)

    def live_weight() -> str:
        return next(line for line in lab.live_text().splitlines() if "server web1" in line).split()[-1]

    assert lbctl("rollback", "edge", "--to", "previous", "--yes").code == 0
    assert live_weight() == "20"
    head = git(store, "log", "-1", "--format=%B")
    assert f"Lbctl-Restores: {shas[1]}" in head and f"Lbctl-Rollback-Of: {shas[2]}" in head
    assert lbctl("rollback", "edge", "--to", "~3", "--yes").code == 0  # live history: 20, 30, 20, 10
    assert live_weight() == "10"
    assert lbctl("rollback", "edge", "--to", shas[2][:12], "--yes").code == 0
    assert live_weight() == "30"
    assert lbctl("rollback", "edge", "--to", f"@{stamps[1]}", "--yes").code == 0
    assert live_weight() == "20"
    assert lbctl("rollback", "edge", "--to", "HEAD~1", "--yes").code == 0  # a plain git revision works too
    # last-good: the live one is good, so it is already there
    result = lbctl("rollback", "edge", "--to", "last-good", "--yes")
    assert result.code == 0 and "already at last-good" in result.out
    # selectors that cannot resolve are usage errors
    for bad in ("~99", "deadbeefdeadbeef", "@1999-01-01T00:00:00Z", "@not-a-time"):
        result = lbctl("rollback", "edge", "--to", bad, "--yes")
        assert result.code == 2, (bad, result.err)
        assert "Traceback" not in result.err


def test_unknown_revision_exits_2(store: Path, lbctl: LbctlRunner) -> None:
    result = lbctl("deploy", "edge", "--rev", "no-such-rev", "--yes")
    assert result.code == 2 and "unknown revision" in result.err


def test_second_deploy_of_a_locked_target_exits_5(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    (store / "lbctl.toml").write_text(target_toml(lab, verify_seconds=6))
    git(store, "commit", "-qam", "longer verification")
    first_cfg = write(tmp_path / "a.cfg", lab.config(weights={"web1": 1, "web2": 100, "web3": 100}))
    first = subprocess.Popen(
        [_python(), "-m", "lbctl", "deploy", "edge", "--file", str(first_cfg), "--yes"],
        cwd=store,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_line(first, "round 1")
        second_cfg = write(tmp_path / "b.cfg", lab.config(weights={"web1": 2, "web2": 100, "web3": 100}))
        result = lbctl("deploy", "edge", "--file", str(second_cfg), "--yes")
        assert result.code == 5, result.err
        assert "locked" in result.err and "deploy of edge" in result.err
        held = status_json(lbctl)["lock"]
        assert held and "deploy of edge" in held
    finally:
        assert first.wait(30) == 0
    assert "weight 1" in lab.live_text()


def test_sigint_during_verification_leaves_complete_config(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    import signal

    (store / "lbctl.toml").write_text(target_toml(lab, verify_seconds=20))
    git(store, "commit", "-qam", "long verification")
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 7}))
    proc = subprocess.Popen(
        [_python(), "-m", "lbctl", "deploy", "edge", "--file", str(new), "--yes"],
        cwd=store,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_line(proc, "round 1")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == 130, err
    assert "runs the NEW config" in err
    assert lab.live_text() == new.read_text()  # complete, and the new one
    assert subprocess.run(["haproxy", "-c", "-q", "-f", str(lab.haproxy.config)]).returncode == 0
    status = status_json(lbctl)
    assert status["status"] == "unverified" and status["live"] == git(store, "rev-parse", "HEAD").strip()
    assert status["drift"] == "none" and status["lock"] is None and status["interrupted_operation"] is None


def test_no_terminal_without_yes_refuses(store: Path, lab: Lab, tmp_path: Path) -> None:
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 3, "web2": 100, "web3": 100}))
    proc = subprocess.run(
        [_python(), "-m", "lbctl", "deploy", "edge", "--file", str(new)],
        cwd=store,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--yes" in proc.stderr
    assert "weight 3" not in lab.live_text()


def test_dry_run_shows_the_plan_and_changes_nothing(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 4, "web2": 100, "web3": 100}))
    head = git(store, "rev-parse", "HEAD")
    result = lbctl("deploy", "edge", "--file", str(new), "--dry-run", "--json")
    assert result.code == 0
    plan = json.loads(result.out)["plan"]
    assert plan["diff"] == "backend web: server web1 weight 100 → 4"  # what it means, not which lines moved
    shares = {s["name"]: s for s in plan["semantic"]["traffic"]["pools"][0]["servers"]}
    assert shares["web1"]["after"] < shares["web1"]["before"]
    assert "weight 4" not in lab.live_text() and git(store, "rev-parse", "HEAD") == head


def test_diff_between_revisions_and_against_live(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    first = write(tmp_path / "1.cfg", lab.config(weights={"web1": 11, "web2": 100, "web3": 100}))
    assert lbctl("deploy", "edge", "--file", str(first), "--yes").code == 0
    (store / "configs/edge/haproxy.cfg").write_text(lab.config(weights={"web1": 12, "web2": 100, "web3": 100}))
    git(store, "commit", "-qam", "web1 at 12")
    result = lbctl("diff", "edge", "--exit-code")
    assert result.code == 1 and "~ server web1 weight 11 → 12" in result.out and "Traffic shares" in result.out
    unified = lbctl("diff", "edge", "--format", "unified")
    assert "-    server web1" in unified.out and "weight 12" in unified.out
    markdown = lbctl("diff", "edge", "--format", "markdown")
    assert "weight 11 → 12" in markdown.out and "|" in markdown.out
    assert lbctl("diff", "edge", "--live", "--exit-code").code == 0  # the LB runs the live revision
    lab.haproxy.config.write_text(lab.live_text().replace("weight 11", "weight 99"))  # a hand edit
    drifted = lbctl("diff", "edge", "--live", "--exit-code")
    assert drifted.code == 1 and "weight 11 → 99" in drifted.out
    assert status_json(lbctl)["drift"] == "drifted"


def _python() -> str:
    import sys

    return sys.executable


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"{needle!r} never appeared; stderr so far: {''.join(seen)}")
