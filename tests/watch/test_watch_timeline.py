"""Alerts that `lbctl watch` fires and resolves are journal events, so `lbctl timeline` shows
them (and they travel with the store's remote), and a change a person then rolls back counts the
alert as its detection."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import LbctlRunner, git, write
from tests.watch.conftest import Running, Watched, admin


def wait_for(condition: object, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:.0f} s")


def test_alerts_fired_and_resolved_are_in_the_timeline(watched: Watched, lbctl: LbctlRunner) -> None:
    def state() -> tuple[str, str]:
        edge = json.loads(lbctl("status", "edge", "--offline", "--json").out)["targets"][0]
        return edge["live"], edge["status"]

    before = state()
    load = watched.load().start()
    running = Running(watched.root)
    try:
        running.wait_rounds(3)
        admin(watched.lab.haproxy, "set server web/web2 weight 0")
        wait_for(lambda: any(c.what == "firing" for _, c in running.changes))
        admin(watched.lab.haproxy, "set server web/web2 weight 100")
        wait_for(lambda: any(c.what == "resolved" for _, c in running.changes))
    finally:
        running.close()
        load.stop()

    data = json.loads(lbctl("timeline", "edge", "--json").out)
    fired = [e for e in data["entries"] if e["kind"] == "alert"]
    resolved = [e for e in data["entries"] if e["kind"] == "alert-resolved"]
    assert fired and resolved and fired[0]["at"] < resolved[0]["at"]
    assert "web/web2" in fired[0]["text"] and fired[0]["text"].startswith("alert firing: ")
    markdown = lbctl("timeline", "edge").out
    assert " alert firing: " in markdown and " alert-resolved: alert resolved: " in markdown
    # the target's state is what it was: an alert records, it does not change what is live
    assert state() == before


def test_an_alert_is_the_detection_of_a_change_a_person_rolls_back(
    watched: Watched, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    git(watched.root, "commit", "-qam", "watch settings")
    change = write(tmp_path / "change.cfg", watched.lab.config(weights={"web3": 90}))
    assert lbctl("deploy", "edge", "--file", str(change), "-m", "Tune web3", "--yes").code == 0
    load = watched.load().start()
    running = Running(watched.root)
    try:
        running.wait_rounds(2)
        admin(watched.lab.haproxy, "set server web/web2 weight 0")  # what the change did, as the LB runs it
        wait_for(lambda: any(c.what == "firing" for _, c in running.changes))
    finally:
        running.close()
        load.stop()
    assert lbctl("rollback", "edge", "--to", "previous", "--yes").code == 0
    incidents = json.loads(lbctl("timeline", "edge", "--json").out)["incidents"]
    assert [i["subject"] for i in incidents] == ["Tune web3"]
    assert incidents[0]["detected_by"].startswith("alert: alert firing: ")
    assert 0 < incidents[0]["time_to_detect"] < incidents[0]["time_to_restore"]
