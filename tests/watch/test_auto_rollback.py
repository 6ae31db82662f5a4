"""Optional automatic rollback from `lbctl watch`: a recent revision that alerts is rolled back
through the normal `rollback --to previous`, once per revision; an old one never."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lbctl.config import WatchSettings
from lbctl.store.journal import LiveEntry, TargetState
from lbctl.watch.autorollback import due
from tests.conftest import Lab, LbctlRunner, git
from tests.watch.conftest import Running, Watched, admin, watch_toml

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def state(live: str, deployed: datetime) -> TargetState:
    return TargetState("edge", live=live, history=(LiveEntry(live, deployed.isoformat(), "e1"),))


def test_only_a_recent_revision_not_rolled_back_before_is_due() -> None:
    on = WatchSettings(auto_rollback=True, auto_rollback_max_age=1800)
    assert due(state("b" * 40, NOW - timedelta(minutes=5)), on, set(), NOW)
    assert not due(state("b" * 40, NOW - timedelta(minutes=31)), on, set(), NOW)
    assert not due(state("b" * 40, NOW - timedelta(minutes=5)), on, {"b" * 40}, NOW)
    assert not due(state("b" * 40, NOW - timedelta(minutes=5)), WatchSettings(), set(), NOW)  # off by default


def wait_until(condition: object, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout:.0f} s")


def test_an_alerting_recent_deploy_is_rolled_back_once(store: Path, lab: Lab, lbctl: LbctlRunner) -> None:
    source = store / "configs" / "edge" / "haproxy.cfg"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(lab.live_text())
    git(store, "add", "-A")
    git(store, "commit", "-q", "-m", "The config that runs")
    assert lbctl("deploy", "edge", "--yes").code == 0
    first = git(store, "rev-parse", "HEAD").strip()
    candidate = store.parent / "candidate.cfg"
    candidate.write_text(lab.config(weights={"web1": 120}))
    assert lbctl("deploy", "edge", "--file", str(candidate), "-m", "web1 a little more", "--yes").code == 0
    second = git(store, "rev-parse", "HEAD").strip()
    settings = {"interval": "1s", "window": "3s", "for": "2s", "min_requests": 20, "auto_rollback": True}
    (store / "lbctl.toml").write_text((store / "lbctl.toml").read_text() + watch_toml(**settings))
    git(store, "commit", "-qam", "Watch edge")

    watched = Watched(store, lab)
    load = watched.load().start()
    running = Running(store)
    try:
        running.wait_rounds(3)
        assert running.rollbacks == []
        admin(lab.haproxy, "set server web/web2 weight 0")
        wait_until(lambda: running.rollbacks)
        [(target, outcome)] = running.rollbacks
        assert target == "edge" and getattr(outcome, "exit_code", None) == 0, outcome
        assert "weight 120" not in lab.live_text()  # the previous config is live again, reloaded
        events = [e for e in watched_events(store) if e.op == "rollback"]
        assert len(events) == 1 and events[0].from_rev == second
        assert "lbctl watch: automatic rollback" in git(store, "log", "-1", "--format=%B")
        assert git(store, "show", "HEAD:configs/edge/haproxy.cfg") == git(
            store, "show", f"{first}:configs/edge/haproxy.cfg"
        )

        # The revision the rollback made live is recent too, but watch never rolls back its own rollback.
        admin(lab.haproxy, "set server web/web2 weight 0")
        wait_until(lambda: sum(c.what == "firing" for _, c in running.changes) >= 2)
        running.wait_rounds(2)
        assert len(running.rollbacks) == 1
        assert len([e for e in watched_events(store) if e.op == "rollback"]) == 1
    finally:
        running.close()
        load.stop()


def watched_events(store: Path) -> list:  # type: ignore[type-arg]
    from lbctl.store.workspace import open_workspace

    return list(open_workspace(str(store)).journal.events("edge"))
