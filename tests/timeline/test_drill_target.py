"""Drills on a target of the store (`lbctl drill SCENARIO --target T`) against the lab's real HAProxy.

The scenario's change is derived from the target's own config; a production target needs
`--force --reason`; the kill switch is the LB's commit-confirm watchdog, which reverts an idle
trainee's drill at `--max-duration` even when lbctl itself is gone; a trainee's rollback works while
that watchdog is armed and disarms it; every notification of the drill's events says `[DRILL]`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lbctl.commands.drill_scenarios import derive
from lbctl.commands.drill_target import run_target_drill
from lbctl.errors import CannotHost, ExitCode, UsageError
from lbctl.notify import settle as notifications_sent
from lbctl.store.workspace import open_workspace
from tests.conftest import Lab, LbctlRunner, git
from tests.notify.sink import Sink


@pytest.fixture
def sink() -> Iterator[Sink]:
    started = Sink()
    yield started
    started.close()


def ready(store: Path, lab: Lab, lbctl: LbctlRunner, *, environment: str | None = None, notify: str = "") -> str:
    """Target `edge` as `environment`, with `notify` sinks, running the lab's config deployed by lbctl."""
    toml = store / "lbctl.toml"
    text = toml.read_text()
    if environment:
        text = text.replace('kind = "haproxy"', f'kind = "haproxy"\nenvironment = "{environment}"')
    if environment or notify:
        toml.write_text(text + notify)
        git(store, "commit", "-qam", "edge's environment and sinks")
    good = store.parent / "good.cfg"
    good.write_text(lab.config())
    result = lbctl("deploy", "edge", "--file", str(good), "--yes")
    assert result.code == 0, result.out + result.err
    return lab.live_text()


def weights(lab: Lab) -> dict[str, int]:
    """web's servers and their weights as HAProxy runs them (`show servers state`)."""
    lines = lab.haproxy.runtime_command("show servers state web").splitlines()
    header = lines[1].lstrip("# ").split()
    name, weight = header.index("srv_name"), header.index("srv_uweight")
    return {f[name]: int(f[weight]) for f in (line.split() for line in lines[2:]) if len(f) == len(header)}


def answer(lab: Lab) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{lab.fe_port}/", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_for(what: Callable[[], bool], timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if what():
            return True
        time.sleep(0.1)
    return what()


def events(lbctl: LbctlRunner) -> list[dict[str, object]]:
    result = lbctl("log", "edge", "--json", "-n", "50")
    assert result.code == 0, result.err
    found: list[dict[str, object]] = json.loads(result.out)["events"]
    return found


def test_each_scenario_is_derived_from_the_config_and_validates(tmp_path: Path, lab: Lab) -> None:
    text = lab.config()
    for scenario, expected in {
        "misroute": "    default_backend maintenance\n",  # the smallest other pool: one server
        "drain-half": " weight 0\n",
        "bad-acl": "    use_backend lbctl_drill_void if TRUE\n",  # no pool without a server up: a new empty one
        "reload-fail": "    bind unix@/nonexistent-lbctl-drill/www.sock\n",
    }.items():
        change = derive(scenario, "haproxy", text, filename="haproxy.cfg")
        assert expected in change.text and change.text != text, scenario
        cfg = tmp_path / f"{scenario}.cfg"
        cfg.write_text(change.text)
        checked = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, scenario + checked.stderr  # every one passes native validation
    disabled = text + "\nbackend parked\n    server p1 127.0.0.1:9 disabled\n"
    assert "use_backend parked if TRUE" in derive("bad-acl", "haproxy", disabled, filename="h.cfg").text
    one_pool = "frontend www\n    bind :80\n    default_backend web\n\nbackend web\n    server a 127.0.0.1:1\n"
    for scenario in ("misroute", "drain-half"):
        with pytest.raises(CannotHost) as refused:
            derive(scenario, "haproxy", one_pool, filename="h.cfg")
        assert refused.value.exit_code == ExitCode.USAGE and refused.value.hint
    with pytest.raises(UsageError, match="nginx"):
        derive("misroute", "nginx", "events {}\n", filename="nginx.conf")


def test_production_needs_force_and_a_reason(store: Path, lab: Lab, lbctl: LbctlRunner) -> None:
    ready(store, lab, lbctl, environment="production")
    head = git(store, "rev-parse", "HEAD")
    for extra in ((), ("--force",), ("--reason", "game day")):
        refused = lbctl("drill", "misroute", "--target", "edge", "--max-duration", "3s", *extra)
        assert refused.code == 4, refused.out + refused.err
        assert "production" in refused.err and "--force --reason" in refused.err
    assert git(store, "rev-parse", "HEAD") == head  # nothing committed, nothing deployed
    assert lbctl("drill", "misroute", "--target", "edge", "--sandbox").code == 2


def test_an_idle_trainees_drill_is_reverted_by_the_watchdog(
    store: Path, lab: Lab, lbctl: LbctlRunner, sink: Sink
) -> None:
    notify = f'\n[[notify]]\ntype = "slack"\nurl = "{sink.url}"\non = ["good", "pending-confirm", "rolled-back"]\n'
    good = ready(store, lab, lbctl, environment="production", notify=notify)
    before = weights(lab)
    seen: dict[str, object] = {}

    def look(root: Path, target: str) -> None:  # the trainee is away: only look at what the drill did
        seen["weights"] = weights(lab)
        seen["live"] = lab.live_text()

    report = run_target_drill(
        open_workspace(str(store)),
        "edge",
        "drain-half",
        max_duration=3,
        force=True,
        reason="game day, agreed with on-call",
        on_ready=look,
        say=lambda text: None,
        poll=0.2,
    )
    assert seen["weights"] == {**before, "web1": 0} and seen["live"] != good  # the drill was live
    assert report.ended_by == "kill-switch" and report.live_rev != report.drill_rev
    assert lab.live_text() == good and weights(lab) == before  # the LB's file and running state are back
    assert answer(lab) == 200
    reverted = [e for e in events(lbctl) if e["verdict"] == "watchdog-reverted"]
    assert len(reverted) == 1 and reverted[0]["from_rev"] == report.drill_rev, reverted
    assert "watchdog-reverted" in report.timeline_markdown
    trailers = git(store, "log", "-1", "--format=%(trailers)", str(report.drill_rev))
    assert "Lbctl-Drill: drain-half" in trailers
    assert "Lbctl-Forced: drill on production: game day, agreed with on-call" in trailers
    notifications_sent(10)
    texts = [m["text"] for m in sink.received]
    drill_deploy = [t for t in texts if report.drill_rev is not None and f"-> {report.drill_rev[:10]}" in t]
    assert drill_deploy and all(t.startswith("[DRILL] lbctl: deploy edge") for t in drill_deploy), texts
    assert not any("[DRILL]" in t for t in texts if t not in drill_deploy)  # the first good deploy is not one


def test_the_lb_reverts_the_drill_when_lbctl_is_gone(store: Path, lab: Lab, lbctl: LbctlRunner) -> None:
    good = ready(store, lab, lbctl, environment="staging")
    env = {**os.environ, "LBCTL_STORE": str(store)}
    drill = subprocess.Popen(
        [sys.executable, "-m", "lbctl", "drill", "misroute", "--target", "edge", "--max-duration", "3s"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: "default_backend maintenance" in lab.live_text()), "the drill never went live"
        assert wait_for(lambda: answer(lab) == 503, 10)  # www goes to the one-server pool, whose server is down
    finally:
        drill.send_signal(signal.SIGKILL)  # lbctl is gone, and nobody is at the keyboard
        drill.wait(10)
    assert wait_for(lambda: lab.live_text() == good), "the watchdog did not put the previous config back"
    assert wait_for(lambda: answer(lab) == 200)
    home = lab.haproxy.config.parent / f".{lab.haproxy.config.name}.lbctl-watchdog"
    assert wait_for(lambda: any(home.glob("*/result"))), "the watchdog wrote no result"  # it saw the new worker
    status = lbctl("status", "edge", "--json")  # the next command records what the watchdog did
    data = json.loads(status.out)["targets"][0]
    assert any(line.startswith("watchdog-reverted") for line in data["watchdog"]), json.dumps(data, indent=1)
    assert status.code == 0 and data["status"] == "good", data


def test_a_trainee_undoes_the_drill_while_the_watchdog_is_armed(
    store: Path, lab: Lab, lbctl: LbctlRunner, sink: Sink
) -> None:
    good = ready(
        store, lab, lbctl, notify=f'\n[[notify]]\ntype = "webhook"\nurl = "{sink.url}"\non = ["rolled-back"]\n'
    )
    seen: dict[str, object] = {}

    def trainee(root: Path, target: str) -> None:
        seen["answer"] = answer(lab)
        status = lbctl("status", target, "--json")
        seen["pending"] = json.loads(status.out)["targets"][0]["watchdog"]
        diff = lbctl("diff", target, "last-good", "live")
        assert diff.code == 0, diff.err
        seen["diff"] = diff.out
        undo = lbctl("rollback", target, "--to", "last-good", "--yes")
        assert undo.code == 0, undo.out + undo.err
        after = lbctl("status", target, "--json")
        seen["after"] = (after.code, json.loads(after.out)["targets"][0]["watchdog"])

    report = run_target_drill(
        open_workspace(str(store)), "edge", "bad-acl", max_duration=60, on_ready=trainee, say=lambda text: None
    )
    assert seen["answer"] == 503 and "lbctl_drill_void" in str(seen["diff"])
    assert any(str(line).startswith("pending confirmation") for line in seen["pending"])  # type: ignore[attr-defined]
    pending = " ".join(str(line) for line in seen["pending"])  # type: ignore[attr-defined]
    assert "lbctl rollback edge --to last-good" in pending and "runs `lbctl confirm" not in pending, pending
    assert seen["after"] == (0, [])  # the rollback disarmed the drill's watchdog: nothing pending, healthy
    assert lab.live_text() == good and answer(lab) == 200
    assert report.ended_by == "trainee" and report.time_to_restore is not None
    superseded = [e for e in events(lbctl) if e["verdict"] == "superseded"]
    assert len(superseded) == 1 and superseded[0]["from_rev"] == report.drill_rev, superseded
    notifications_sent(10)
    rollbacks = [m for m in sink.received if m["op"] == "rollback"]  # the trainee's, of the drill's revision
    assert len(rollbacks) == 1 and rollbacks[0]["from"] == report.drill_rev, sink.received
    assert rollbacks[0]["drill"] == "bad-acl" and rollbacks[0]["message"].startswith("[DRILL] bad-acl: ")


def test_a_reload_fail_drill_is_caught_by_lbctl_and_leaves_the_store_as_it_was(
    store: Path, lab: Lab, lbctl: LbctlRunner
) -> None:
    good = ready(store, lab, lbctl)
    head = git(store, "show", "HEAD:configs/edge/haproxy.cfg")
    report = run_target_drill(open_workspace(str(store)), "edge", "reload-fail", max_duration=60, say=lambda text: None)
    assert report.ended_by == "lbctl" and report.live_rev != report.drill_rev  # the reload's confirmation caught it
    assert lab.live_text() == good and answer(lab) == 200
    assert git(store, "show", "HEAD:configs/edge/haproxy.cfg") == head  # no broken config left at HEAD
    home = lab.haproxy.config.parent / f".{lab.haproxy.config.name}.lbctl-watchdog"
    assert not home.is_dir() or not any(home.iterdir())  # lbctl's restore disarmed the watchdog
    assert lbctl("status", "edge").code == 0
