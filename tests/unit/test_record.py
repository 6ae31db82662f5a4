"""The one writer of journal events (lbctl.engine.record), on a real git store: the event and state are
stored as the journal stores them, the hooks run after the append, a failing hook fails nothing, and no
module of lbctl appends to the journal any other way."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lbctl
from lbctl.engine import record as record_mod
from lbctl.engine.record import on_recorded, record
from lbctl.store.journal import Event
from lbctl.store.repo import Store
from lbctl.store.workspace import Workspace, open_workspace
from tests.conftest import git

TOML = """[targets.edge]
kind = "haproxy"
source = "edge.cfg"
path = "/tmp/lbctl-unit-edge.cfg"
master_socket = "/tmp/lbctl-unit.sock"
"""


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "lbctl.toml").write_text(TOML)
    (tmp_path / "edge.cfg").write_text("# edge\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "seed")
    return open_workspace(str(tmp_path))


def note(text: str) -> Event:
    return Event(
        id=f"note-{text}",
        op="note",
        target="edge",
        who="test",
        started="2026-11-30T00:00:00.000+00:00",
        finished="2026-11-30T00:00:01.000+00:00",
        from_rev=None,
        to_rev=None,
        verdict="note",
        message=text,
    )


def test_record_stores_the_event_and_the_state(ws: Workspace) -> None:
    before = ws.journal.state("edge")
    moved = before.moved_to("abc", None, "good", "note-moved", "2026-11-30T00:00:01.000+00:00")

    commit = record(ws.journal, note("moved"), moved)
    record(ws.journal, note("kept"))  # no state given: the target's state is left as it is

    assert ws.journal.tip() != commit  # two commits, one per event
    assert [e.message for e in ws.journal.events("edge")] == ["kept", "moved"]
    assert ws.journal.state("edge") == moved


def test_hooks_run_after_the_append_and_a_failing_one_fails_nothing(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[tuple[str, str, bool]] = []

    def broken(store: Store, event: Event) -> None:
        raise RuntimeError("the sink is down")

    def watching(store: Store, event: Event) -> None:
        in_journal = any(e.id == event.id for e in ws.journal.events("edge"))
        seen.append((str(store.root), event.message, in_journal))

    remove_broken, remove_watching = on_recorded(broken), on_recorded(watching)
    try:
        record(ws.journal, note("first"))
    finally:
        remove_broken()
        remove_watching()
    record(ws.journal, note("second"))  # removed: not called again

    assert seen == [(str(ws.store.root), "first", True)]
    assert "the sink is down" in capsys.readouterr().err
    assert [e.message for e in ws.journal.events("edge")] == ["second", "first"]
    assert record_mod._hooks == [record_mod._announce]  # notifications stay the one built-in hook


def test_nothing_in_lbctl_appends_to_the_journal_but_record() -> None:
    package = Path(lbctl.__file__).parent
    appending = re.compile(r"journal\.append\(")
    offenders = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "record.py" and appending.search(path.read_text())
    ]
    assert offenders == []
