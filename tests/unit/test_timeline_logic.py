"""Pure logic of `lbctl timeline`: entries, failed changes and their figures, notifications,
the Markdown, and the times it reads. Events are built by hand; the store is a stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lbctl.commands.timeline import build, markdown, parse_moment
from lbctl.errors import UsageError
from lbctl.store.journal import Event, Stage

T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
DEPLOY_STAGES = (Stage("plan", True, 1.0), Stage("reload", True, 1.0), Stage("verify", True, 3.0))


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def event(op: str, verdict: str, start: float, end: float, **kw: Any) -> Event:
    fields: dict[str, Any] = {
        "id": f"e{start}",
        "op": op,
        "target": "edge",
        "who": "alice@host",
        "started": at(start),
        "finished": at(end),
        "from_rev": None,
        "to_rev": None,
        "verdict": verdict,
    }
    fields.update(kw)
    return Event(**fields)


def workspace(tmp_path: Path, events: list[Event], *, notified: list[dict[str, str]] | None = None) -> Any:
    git_dir = tmp_path / ".git"
    (git_dir / "lbctl").mkdir(parents=True)
    if notified:
        (git_dir / "lbctl" / "notified.log").write_text("".join(json.dumps(n) + "\n" for n in notified))
    revisions = {"a" * 40: "Good weights", "b" * 40: "Route to legacy", "c" * 40: "Restore"}
    return SimpleNamespace(
        journal=SimpleNamespace(events=lambda: list(reversed(events))),  # newest first, as the journal
        store=SimpleNamespace(
            git_dir=git_dir,
            revision=lambda sha: SimpleNamespace(subject=revisions[sha], trailers={"Lbctl-Ticket": "OPS-1"}),
        ),
        config=SimpleNamespace(targets={"edge": None}, notify=[]),
    )


BALANCE = {
    "name": "balance",
    "ok": False,
    "summary": "legacy took 100%",
    "figures": {"backends": {"web": {"servers": {"web1": {"share_before": 0.5, "share": 0.0}}}}},
}


def test_a_restore_that_failed_has_no_time_to_restore_and_shows_the_traffic(tmp_path: Path) -> None:
    a, b = "a" * 40, "b" * 40
    events = [
        event("deploy", "good", 0, 6, to_rev=a, stages=DEPLOY_STAGES),
        event("deploy", "failed", 10, 30, from_rev=a, to_rev=b, stages=DEPLOY_STAGES, checks=(BALANCE,)),
        event(
            "auto-rollback",
            "restore-failed",
            10,
            25,
            from_rev=b,
            to_rev=b,
            stages=(Stage("restore", True, 0.5), Stage("reload", True, 1.0), Stage("verify restore", False, 2.0)),
        ),
    ]
    timeline = build(workspace(tmp_path, events), ["edge"], since=None, until=T0 + timedelta(hours=1))

    (incident,) = timeline.incidents
    assert incident.revision == b and incident.undone_by == "auto-rollback"
    assert incident.live_at == T0 + timedelta(seconds=12)  # started + plan + reload
    assert incident.detect == 3.0  # the end of its verification
    assert incident.mitigate == 11.0  # the restore's reload: 25 - 2 (its verify) = 23
    assert incident.restore is None
    text = markdown(timeline)
    assert "- 03:00:15 failed: verification FAILED" in text
    assert "  - traffic web: web1 50% -> 0%" in text
    assert (
        "| edge | bbbbbbbbbb Route to legacy | 03:00:12 | lbctl verification | auto-rollback | 3.0s | 11.0s | - |"
        in text
    )


def test_a_person_rolls_back_after_a_notification_and_every_kind_of_event_shows(tmp_path: Path) -> None:
    a, b = "a" * 40, "b" * 40
    events = [
        event("deploy", "good", 0, 6, to_rev=a, stages=DEPLOY_STAGES),
        event("deploy", "good", 10, 16, from_rev=a, to_rev=b, stages=DEPLOY_STAGES),
        event("unlock", "lease-broken", 100, 100, message="broke the lease: bob"),
        event("unlock", "unlocked", 110, 110, message="broke the lock"),
        event("rollback", "good", 200, 206, from_rev=b, to_rev=a, stages=DEPLOY_STAGES),
        event("deploy", "interrupted", 300, 320, from_rev=a, to_rev=b, message="runs the OLD config"),
        event("note", "note", 400, 401, target="*", message="all clear"),
    ]
    notified = [
        {"id": "e10--sink1", "sink": "sink1", "at": at(60)},
        {"id": "20261123T030100-abcdef--sink1", "sink": "sink1", "at": at(50)},  # a watch alert
    ]
    timeline = build(
        workspace(tmp_path, events, notified=notified), ["edge"], since=None, until=T0 + timedelta(hours=1)
    )

    kinds = [e.kind for e in timeline.entries]
    assert kinds.count("notify") == 2 and "lease-break" in kinds and "unlock" in kinds
    assert "interrupted" in kinds and kinds[-1] == "note"
    (incident,) = timeline.incidents
    assert incident.revision == b and incident.undone_by == "rollback by alice@host"
    assert incident.detected_by.startswith("notify: notified a sink no longer configured (event")
    assert incident.detect == 50 - 12 and incident.mitigate == 202 - 12 and incident.restore == 206 - 12
    text = markdown(timeline)
    assert '03:00:00 deploy: deploy of aaaaaaaaaa "Good weights" started by alice@host (ticket OPS-1)' in text
    assert "[*] note: all clear" in text

    window = build(
        workspace(tmp_path / "w", events),
        ["edge"],
        since=T0 + timedelta(seconds=150),
        until=T0 + timedelta(seconds=250),
    )
    assert {e.kind for e in window.entries} == {"rollback", "reload", "verified"} and window.incidents == ()


def test_times_read_as_iso_clock_or_ago() -> None:
    now = datetime(2026, 11, 23, 5, 30, tzinfo=UTC)
    assert parse_moment("03:00", now=now) == datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    assert parse_moment("2h", now=now) == datetime(2026, 11, 23, 3, 30, tzinfo=UTC)
    assert parse_moment("1d", now=now) == now - timedelta(days=1)
    assert parse_moment("2026-11-23T03:00Z") == datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    assert parse_moment("2026-11-23T03:00") == datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # no zone: UTC
    for garbage in ("soon", "25:00", ""):
        with pytest.raises(UsageError):
            parse_moment(garbage)


def test_an_events_verdict_is_not_said_twice_when_its_message_starts_with_it(tmp_path: Path) -> None:
    events = [
        event("confirm", "confirmed", 0, 1, message="confirmed aaaaaaaaaa before its deadline"),
        event("pull", "adopted", 10, 11, message="recorded what the LB runs"),
    ]
    timeline = build(workspace(tmp_path, events), ["edge"], since=None, until=T0 + timedelta(hours=1))

    texts = [e.text for e in timeline.entries]
    assert "confirm: confirmed aaaaaaaaaa before its deadline" in texts, texts
    assert "pull: adopted recorded what the LB runs" in texts, texts
