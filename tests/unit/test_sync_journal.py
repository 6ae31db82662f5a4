"""Journal integration between clones (lbctl.store.sync), on real git repositories: a fast-forward, a
replay of this clone's own events on the remote's, and a target both sides changed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lbctl.store.journal import JOURNAL_REF, Event, TargetState
from lbctl.store.sync import fetch, integrate, publish, remote_of
from lbctl.store.workspace import Workspace, open_workspace
from tests.conftest import git

TOML = """[targets.edge]
kind = "haproxy"
source = "edge.cfg"
path = "/tmp/lbctl-unit-edge.cfg"
master_socket = "/tmp/lbctl-unit.sock"

[targets.api]
kind = "haproxy"
source = "api.cfg"
path = "/tmp/lbctl-unit-api.cfg"
master_socket = "/tmp/lbctl-unit.sock"
"""


def team(tmp_path: Path) -> tuple[Path, Workspace, Workspace]:
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "lbctl.toml").write_text(TOML)
    (seed / "edge.cfg").write_text("# edge\n")
    (seed / "api.cfg").write_text("# api\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-qm", "seed")
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(remote)], check=True)
    for name in ("a", "b"):
        subprocess.run(["git", "clone", "-q", str(remote), str(tmp_path / name)], check=True)
    return remote, open_workspace(str(tmp_path / "a")), open_workspace(str(tmp_path / "b"))


def record(ws: Workspace, target: str, verdict: str, rev: str, *, bad: tuple[str, ...] = ()) -> str:
    state = ws.journal.state(target)
    event = Event(
        id=f"{target}-{verdict}-{rev}",
        op="deploy",
        target=target,
        who="test",
        started="2026-11-30T00:00:00",
        finished="2026-11-30T00:00:01",
        from_rev=state.live,
        to_rev=rev,
        verdict=verdict,
    )
    new = state.moved_to(rev, None, "good", event.id, event.finished) if verdict == "good" else state
    for revision in bad:
        new = new.marked_bad(revision)
    return ws.journal.append(event, new)


def push(ws: Workspace) -> None:
    remote = remote_of(ws)
    assert remote is not None
    report = publish(ws, remote, pending=None)
    assert report.reached and not report.warnings, report


def ids(ws: Workspace) -> list[str]:
    return [e.id for e in ws.journal.events()]


def test_a_clone_without_events_fast_forwards_to_the_remote(tmp_path: Path) -> None:
    _, a, b = team(tmp_path)
    record(a, "edge", "good", "1" * 40)
    push(a)
    remote = remote_of(b)
    assert remote is not None
    fetch(b, remote)
    assert integrate(b, remote) == 0
    assert b.store.ref(JOURNAL_REF) == a.store.ref(JOURNAL_REF)
    assert b.journal.state("edge").live == "1" * 40


def test_our_events_are_replayed_on_top_of_theirs_and_nothing_is_lost(tmp_path: Path) -> None:
    remote_dir, a, b = team(tmp_path)
    record(a, "edge", "good", "1" * 40)
    push(a)
    record(a, "edge", "good", "2" * 40)
    push(a)
    record(b, "api", "good", "3" * 40)  # b never fetched: its journal began apart from a's
    record(b, "api", "good", "4" * 40)

    push(b)  # refused at first (not a fast-forward): fetched, replayed, pushed; never forced

    on_remote = subprocess.run(
        ["git", "--git-dir", str(remote_dir), "log", "--format=%s", JOURNAL_REF], capture_output=True, text=True
    ).stdout.split("\n")
    assert [line for line in on_remote if line] == [
        "deploy api: good",
        "deploy api: good",
        "deploy edge: good",
        "deploy edge: good",
    ]
    assert b.journal.state("edge").live == "2" * 40 and b.journal.state("api").live == "4" * 40
    assert ids(b)[:2] == ["api-good-" + "4" * 40, "api-good-" + "3" * 40]
    # a fetches: a plain fast-forward to the same journal
    remote = remote_of(a)
    assert remote is not None
    fetch(a, remote)
    assert integrate(a, remote) == 0
    assert ids(a) == ids(b) and a.store.ref(JOURNAL_REF) == b.store.ref(JOURNAL_REF)


def test_a_target_both_sides_changed_keeps_every_failure(tmp_path: Path) -> None:
    _, a, b = team(tmp_path)
    record(a, "edge", "good", "1" * 40)
    push(a)
    remote = remote_of(b)
    assert remote is not None
    fetch(b, remote)
    integrate(b, remote)
    # meanwhile: a saw 5... fail on edge; b (cut off from the remote) rolled edge back to 1...
    record(a, "edge", "failed", "5" * 40, bad=("5" * 40,))
    push(a)
    record(b, "edge", "good", "1" * 40, bad=("6" * 40,))
    push(b)
    state: TargetState = b.journal.state("edge")
    assert state.live == "1" * 40  # b's event is the newest for edge
    assert set(state.bad) == {"5" * 40, "6" * 40}  # and what failed on either side stays failed
    assert "5" * 40 not in state.good
