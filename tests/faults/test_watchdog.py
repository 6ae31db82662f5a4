"""Commit-confirm against a real HAProxy (local, and over the private sshd): the watchdog on the LB host.

lbctl is SIGKILLed right after the reload (`LBCTL_FAULT_AT=after:reload`), or its link to the LB is
cut (the sshd stopped): nobody is left to undo the change but the watchdog, which puts the previous
config back byte for byte at the deadline and reloads HAProxy (a new worker). The next `lbctl status`
records `watchdog-reverted`. Confirmed in time, nothing changes; extended, it reverts at the new
deadline; superseded by a newer deploy, it does nothing; its reload failing, `status` exits 1.
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from lbctl.lab.processes import Backends
from lbctl.lab.sshd import start_sshd
from tests.faults.conftest import Scene, ssh_scene_in

WINDOW = "2s"


def workers(scene: Scene) -> set[str]:
    """The pids of HAProxy's current workers, from the master CLI (none while the master re-executes)."""
    try:
        text = scene.haproxy.master_command("show proc")
    except OSError:
        return set()
    pids = set()
    for line in text.splitlines():
        if line.startswith("# old"):
            break
        fields = line.split()
        if len(fields) > 1 and fields[1] == "worker":
            pids.add(fields[0])
    return pids


def wait_for(what: Callable[[], bool], timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if what():
            return True
        time.sleep(0.1)
    return what()


def served(scene: Scene) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{scene.frontend_port}/", timeout=5) as answer:
        return bool(answer.status == 200)


def watchdog_dirs(scene: Scene) -> list[str]:
    home = scene.lb_dir / f".{scene.haproxy.config.name}.lbctl-watchdog"
    return sorted(p.name for p in home.iterdir()) if home.is_dir() else []


def pending_deploy(
    scene: Scene, weight: int, *, fault: str | None = "after:reload", window: str = WINDOW
) -> tuple[str, str]:
    """A good config live, then a deploy of `weight` with --confirm-within, killed after the reload."""
    good, new = scene.file(100), scene.file(weight)
    code, out, err = scene.lbctl("deploy", "edge", "--file", str(good), "--yes")
    assert code == 0, out + err
    if fault is None:
        code, out, err = scene.lbctl("deploy", "edge", "--file", str(new), "--yes", "--confirm-within", window)
        assert code == 0, out + err
        assert "PENDING CONFIRMATION" in out, out
    else:
        killed = scene.spawn("deploy", "edge", "--file", str(new), "--yes", "--confirm-within", window, fault=fault)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert scene.live() == new.read_text()
    return good.read_text(), new.read_text()


def assert_reverted(scene: Scene, old: str, before: set[str]) -> None:
    assert wait_for(lambda: scene.live() == old), "the watchdog did not put the previous config back"
    assert wait_for(lambda: bool(workers(scene)) and not workers(scene) & before), "no new worker after the revert"
    assert served(scene)
    home = scene.lb_dir / f".{scene.haproxy.config.name}.lbctl-watchdog"
    assert wait_for(lambda: any(home.glob("*/result"))), "the watchdog wrote no result"  # it saw the worker too


def test_killed_after_reload_the_lb_reverts_by_itself(local_scene: Scene) -> None:
    scene = local_scene
    old, _ = pending_deploy(scene, 30)
    before = workers(scene)
    assert_reverted(scene, old, before)
    assert len(watchdog_dirs(scene)) == 1  # its result waits there for the next command
    code, out, err = scene.lbctl("status", "edge", "--json")
    data = json.loads(out)["targets"][0]
    assert any(line.startswith("watchdog-reverted") for line in data["watchdog"]), data
    assert data["drift"] == "none", data
    assert data["status"] == "good", err + str(data)  # the previous, good config runs
    # The killed run is recorded as interrupted, and what happened to it is told: its change was live
    # and the watchdog reverted it. Nothing is left for a human: healthy on the previous revision.
    assert code == 0 and data["reasons"] == [] and data["verdict"] == "healthy", data
    assert data["interrupted_operation"] is None, data
    events = scene.events()
    assert events[0]["verdict"] == "watchdog-reverted", events[0]
    interrupted = next(e for e in events if e["verdict"] == "interrupted")
    assert "the NEW config" in interrupted["message"] and "watchdog on the LB put" in interrupted["message"]
    assert "did not take" not in interrupted["message"], interrupted
    assert scene.content_at(str(data["live"])) == old
    assert scene.content_at("HEAD") == old  # a forward commit: the store's HEAD says what is live
    assert watchdog_dirs(scene) == []  # recorded once, then its files are gone
    code, out, err = scene.lbctl("confirm", "edge")
    assert code == 1 and "watchdog-reverted" in err, out + err  # too late, even once status recorded it
    scene.lbctl("status", "edge", "--json")
    assert [e["verdict"] for e in scene.events()].count("watchdog-reverted") == 1  # never twice


def test_killed_run_recorded_before_the_deadline_then_reverted(local_scene: Scene) -> None:
    """`log` records the killed run while its change is still live; the revert then settles it."""
    scene = local_scene
    old, _ = pending_deploy(scene, 30, window="6s")
    before = workers(scene)
    interrupted = next(e for e in scene.events() if e["verdict"] == "interrupted")  # `log` recorded it
    assert "runs the NEW config" in str(interrupted["message"]), interrupted
    assert_reverted(scene, old, before)
    code, out, err = scene.lbctl("status", "edge", "--json")
    data = json.loads(out)["targets"][0]
    assert any(line.startswith("watchdog-reverted") for line in data["watchdog"]), data
    assert code == 0 and data["status"] == "good" and data["reasons"] == [], err + str(data)
    assert data["interrupted_operation"] is None, data
    assert scene.content_at(str(data["live"])) == old


def test_confirmed_in_time_nothing_changes(local_scene: Scene) -> None:
    scene = local_scene
    _, new = pending_deploy(scene, 30, fault=None)
    code, out, err = scene.lbctl("status", "edge", "--json")
    data = json.loads(out)["targets"][0]
    assert code == 1 and data["status"] == "pending-confirm", data
    assert any(line.startswith("pending confirmation") for line in data["watchdog"]), data
    code, out, err = scene.lbctl("confirm", "edge")
    assert code == 0, out + err
    before = workers(scene)
    time.sleep(3.5)
    assert scene.live() == new and workers(scene) == before
    assert watchdog_dirs(scene) == []
    assert scene.status()["status"] == "good"
    assert scene.events()[0]["verdict"] == "confirmed"
    code, out, err = scene.lbctl("confirm", "edge")
    assert code == 2, out + err  # nothing pending


def test_extend_moves_the_deadline(local_scene: Scene) -> None:
    scene = local_scene
    old, new = pending_deploy(scene, 30, fault=None)
    code, out, err = scene.lbctl("confirm", "edge", "--extend", "5s")
    assert code == 0, out + err
    extended = time.monotonic()
    before = workers(scene)
    time.sleep(3.0)
    assert scene.live() == new  # the first deadline passed: nothing
    assert_reverted(scene, old, before)
    assert time.monotonic() - extended >= 4.0
    code, out, err = scene.lbctl("confirm", "edge")
    assert code == 1, out + err  # too late: it reverted
    assert scene.events()[0]["verdict"] == "watchdog-reverted"


def test_a_newer_deploy_supersedes_a_pending_one(local_scene: Scene) -> None:
    scene = local_scene
    pending_deploy(scene, 30, fault=None)
    newer = scene.file(60)
    code, out, err = scene.lbctl("deploy", "edge", "--file", str(newer), "--yes")
    assert code == 0, out + err
    before = workers(scene)
    time.sleep(3.5)
    assert workers(scene) == before  # no reload either
    assert scene.live() == newer.read_text()
    code, out, err = scene.lbctl("status", "edge", "--json")
    data = json.loads(out)["targets"][0]
    assert code == 0 and data["watchdog"] == [], data  # disarmed as the newer change landed: nothing pending
    superseded = [e for e in scene.events() if e["verdict"] == "superseded"]
    assert len(superseded) == 1 and "its watchdog is disarmed" in superseded[0]["message"], superseded
    assert watchdog_dirs(scene) == []
    assert scene.live() == newer.read_text()


def test_a_revert_whose_reload_fails_pages_a_human(local_scene: Scene) -> None:
    scene = local_scene
    reload_script = scene.lb_dir / "reload.sh"
    reload_script.write_text(f"echo reload | socat stdio unix-connect:{scene.haproxy.master_socket}\n")
    toml = scene.store / "lbctl.toml"
    toml.write_text(toml.read_text().replace('kind = "haproxy"', f'kind = "haproxy"\nreload = "sh {reload_script}"'))
    scene.commit_all("reload through a script")
    old, _ = pending_deploy(scene, 30, window="4s")
    reload_script.write_text("echo 'reload is broken' >&2; exit 1\n")
    assert wait_for(lambda: scene.live() == old)
    home = scene.lb_dir / f".{scene.haproxy.config.name}.lbctl-watchdog"
    assert wait_for(lambda: any(home.glob("*/result")))
    code, out, err = scene.lbctl("status", "edge")
    assert code == 1, out + err
    assert "page a human" in out, out
    assert scene.events()[0]["verdict"] == "watchdog-reload-failed"


def test_over_ssh_killed_after_reload_the_lb_reverts_by_itself(ssh_scene: Scene) -> None:
    scene = ssh_scene
    old, _ = pending_deploy(scene, 30)
    before = workers(scene)
    assert_reverted(scene, old, before)
    code, out, _ = scene.lbctl("status", "edge", "--json")
    data = json.loads(out)["targets"][0]
    assert any(line.startswith("watchdog-reverted") for line in data["watchdog"]), data
    assert data["status"] == "good" and data["drift"] == "none", data
    # The killed run's lock directory on the LB host outlived it: once its watchdog's revert explains
    # that run, status breaks it (its holder is provably gone) and says so: healthy, nothing left to do.
    assert code == 0 and data["reasons"] == [] and data["lb_lock"] is None, data
    assert [e["verdict"] for e in scene.events()][:2] == ["unlocked", "watchdog-reverted"]


def test_over_ssh_the_sshd_stopped_after_the_reload(tmp_path: Path, backends: Backends) -> None:
    """The operator's link is gone (the LB host's sshd itself stopped): the LB still reverts."""
    own = start_sshd(tmp_path / "own-sshd")
    with ssh_scene_in(tmp_path, own, backends) as scene:
        try:
            old, new = pending_deploy(scene, 30, fault=None)
        finally:
            own.stop()
        before = workers(scene)
        assert scene.live() == new
        assert_reverted(scene, old, before)
        # The link comes back (a new sshd, same client key): the next status records what happened.
        again = start_sshd(tmp_path / "sshd-again", client_key=own.client_key)
        try:
            toml = scene.store / "lbctl.toml"
            text = re.sub(r"(?m)^port = \d+$", f"port = {again.port}", toml.read_text())
            toml.write_text(text.replace(str(own.known_hosts), str(again.known_hosts)))
            scene.commit_all("the LB host's sshd is back")
            code, out, err = scene.lbctl("status", "edge", "--json")
            data = json.loads(out)["targets"][0]
            assert any(line.startswith("watchdog-reverted") for line in data["watchdog"]), err + str(data)
            assert code == 0 and data["status"] == "good" and data["drift"] == "none", data
        finally:
            again.stop()


def test_rollback_with_confirm_within_reverts_too(local_scene: Scene) -> None:
    scene = local_scene
    first, second = scene.file(100), scene.file(30)
    for config in (first, second):
        code, out, err = scene.lbctl("deploy", "edge", "--file", str(config), "--yes")
        assert code == 0, out + err
    code, out, err = scene.lbctl("rollback", "edge", "--to", "previous", "--yes", "--confirm-within", WINDOW)
    assert code == 0 and "PENDING CONFIRMATION" in out, out + err
    assert scene.live() == first.read_text()
    before = workers(scene)
    assert_reverted(scene, second.read_text(), before)
    assert scene.lbctl("status", "edge")[0] == 0
    assert scene.events()[0]["verdict"] == "watchdog-reverted"


def test_the_target_key_arms_it_and_a_bad_duration_is_refused(local_scene: Scene) -> None:
    scene = local_scene
    toml = scene.store / "lbctl.toml"
    toml.write_text(toml.read_text().replace('kind = "haproxy"', 'kind = "haproxy"\nconfirm_within = "2s"'))
    scene.commit_all("confirm within 2s")
    good = scene.file(100)
    code, out, err = scene.lbctl("deploy", "edge", "--file", str(good), "--yes")
    assert code == 0 and "PENDING CONFIRMATION" in out, out + err
    assert scene.lbctl("confirm", "edge")[0] == 0
    code, out, err = scene.lbctl("deploy", "edge", "--file", str(scene.file(30)), "--yes", "--confirm-within", "soon")
    assert code == 2 and "not a duration" in err, out + err
    code, out, err = scene.lbctl("deploy", "edge", "--file", str(scene.file(30)), "--yes", "--confirm-within", "0")
    assert code == 0 and "PENDING" not in out, out + err  # 0 turns the target's default off
    assert watchdog_dirs(scene) == []


def test_a_change_lbctl_rolls_back_itself_leaves_no_watchdog(local_scene: Scene) -> None:
    scene = local_scene
    good = scene.file(100)
    code, out, err = scene.lbctl("deploy", "edge", "--file", str(good), "--yes")
    assert code == 0, out + err
    outage = scene.store.parent / "outage.cfg"
    outage.write_text(scene.config(100).replace("default_backend web", "default_backend maintenance"))
    code, out, err = scene.lbctl(
        "deploy", "edge", "--file", str(outage), "--yes", "--force", "--reason", "test", "--confirm-within", WINDOW
    )
    assert code == 1, out + err  # verification failed: lbctl restored it at once
    assert scene.live() == good.read_text()
    assert watchdog_dirs(scene) == []  # disarmed by the restore: it will not act later
    before = workers(scene)
    time.sleep(3.0)
    assert scene.live() == good.read_text() and workers(scene) == before


def test_confirm_by_the_event_id_deploy_printed(local_scene: Scene) -> None:
    scene = local_scene
    code, out, err = scene.lbctl("deploy", "edge", "--file", str(scene.file(100)), "--yes")
    assert code == 0, out + err
    code, out, err = scene.lbctl(
        "deploy", "edge", "--file", str(scene.file(30)), "--yes", "--confirm-within", "30s", "--json"
    )
    outcome = json.loads(out)
    assert code == 0 and outcome["verdict"] == "pending-confirm", out + err
    event_id = outcome["events"][0]
    assert watchdog_dirs(scene) == [event_id]
    assert scene.lbctl("confirm", "edge", "20000101T000000-000000")[0] == 2  # not that one
    code, out, err = scene.lbctl("confirm", "edge", event_id, "--json")
    assert code == 0 and json.loads(out)["verdict"] == "confirmed", out + err
    assert watchdog_dirs(scene) == []
    assert scene.status()["status"] == "good"


def test_confirm_with_nothing_pending_says_what_to_do(local_scene: Scene) -> None:
    scene = local_scene
    code, out, err = scene.lbctl("deploy", "edge", "--file", str(scene.file(100)), "--yes")
    assert code == 0, out + err
    code, out, err = scene.lbctl("confirm", "edge", "--json")
    document = json.loads(out)
    assert code == 2 and document["verdict"] == "nothing-pending", out + err
    assert document["error"]["code"] == 2 and document["error"]["type"] == "nothing-pending"
    assert "lbctl status edge" in document["error"]["hint"]
    code, out, err = scene.lbctl("confirm", "edge")
    assert code == 2 and "no change is pending confirmation" in err and "hint: `lbctl status edge`" in err
