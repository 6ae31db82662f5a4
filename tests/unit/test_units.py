"""Pure logic: show proc parsing, trailers, journal state transitions, selectors' parsing."""

from __future__ import annotations

import pytest

from lbctl.errors import TransientError, UsageError
from lbctl.kinds.haproxy import parse_show_proc
from lbctl.store.journal import TargetState, blob_id
from lbctl.store.repo import compose_message, parse_trailers
from lbctl.store.selectors import parse_time

SHOW_PROC = """\
#<PID>          <type>          <reloads>       <uptime>        <version>
3048            master          2 [failed: 1]   0d00h00m01s     2.6.12-1+deb12u4
# workers
3059            worker          1               0d00h00m01s     2.6.12-1+deb12u4
# old workers
3049            worker          2               0d00h00m09s     2.6.12-1+deb12u4
# programs
"""


def test_show_proc_reads_master_and_current_workers_only() -> None:
    state = parse_show_proc(SHOW_PROC)
    assert (state.master_pid, state.reloads, state.failed) == (3048, 2, 1)
    assert state.workers == frozenset({3059})


def test_show_proc_garbage_is_transient() -> None:
    with pytest.raises(TransientError):
        parse_show_proc("Unknown command\n")


def test_trailers_round_trip_and_newlines_are_flattened() -> None:
    message = compose_message("Route www", {"Lbctl-Target": "edge", "Lbctl-Reason": "line one\nline two", "X": ""})
    assert parse_trailers(message) == {"Lbctl-Target": "edge", "Lbctl-Reason": "line one line two"}
    assert parse_trailers("just a subject") == {}
    assert parse_trailers("subject\n\nnot: a trailer paragraph\nbecause this line has none") == {}


def test_state_moves_and_marks_bad() -> None:
    s = TargetState("edge").moved_to("a", "blob-a", "good", "e1", "t1")
    s = s.moved_to("b", "blob-b", "good", "e2", "t2")
    assert s.last_good == "b" and [h.rev for h in s.history] == ["b", "a"]
    s = s.marked_bad("b")
    assert s.last_good == "a" and s.bad == ("b",)
    s = s.moved_to("b", "blob-b", "good", "e3", "t3")  # verified good again later: no longer bad
    assert s.bad == () and s.last_good == "b"


def test_blob_id_matches_git() -> None:
    assert blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_parse_time_accepts_iso_and_refuses_garbage() -> None:
    assert parse_time("2026-11-23T03:00:00Z").tzinfo is not None
    assert parse_time("2026-11-23T03:00").tzinfo is not None
    with pytest.raises(UsageError):
        parse_time("yesterday")


def test_staging_gate_follows_the_change_or_the_content() -> None:
    from pathlib import Path

    from lbctl.config import validate
    from lbctl.engine.gates import staging_gate

    raw = {
        "targets": {
            "stg": {
                "kind": "haproxy",
                "source": "x.cfg",
                "path": "/x",
                "reload": "true",
                "confirm_reload": False,
                "environment": "staging",
            },
            "prod": {
                "kind": "haproxy",
                "source": "x.cfg",
                "path": "/y",
                "reload": "true",
                "confirm_reload": False,
                "environment": "production",
            },
        }
    }
    root = Path(__file__).parent
    (root / "x.cfg").write_text("")
    try:
        config = validate(raw, text="", path=root / "lbctl.toml")
    finally:
        (root / "x.cfg").unlink()

    class FakeJournal:
        def __init__(self, state: TargetState) -> None:
            self._state = state

        def state(self, target: str) -> TargetState:
            return self._state

    verified = TargetState("stg").moved_to("c1", "blob1", "good", "e", "t")
    prod = config.targets["prod"]
    assert staging_gate(config, FakeJournal(verified), prod, "c1", "other") == []  # the same commit
    assert staging_gate(config, FakeJournal(verified), prod, "c2", "blob1") == []  # content verified there
    refused = staging_gate(config, FakeJournal(verified), prod, "c2", "blob2")
    assert refused and refused[0].rule == "staging_first" and "stg" in refused[0].message
    assert staging_gate(config, FakeJournal(verified), config.targets["stg"], "c2", "b") == []


def test_a_section_gaining_its_first_setting_is_a_readable_change() -> None:
    from lbctl.semantic import diff_texts

    old = "backend web\n    server a 10.0.0.1:80\n"
    new = "backend web\n    timeout server 5s\n    server a 10.0.0.1:80\n"
    added = [c.text for c in diff_texts("haproxy", old, new, filename="x.cfg").changes]
    removed = [c.text for c in diff_texts("haproxy", new, old, filename="x.cfg").changes]
    assert len(added) == 1 and "timeout server 5s added" in added[0]
    assert len(removed) == 1 and "removed" in removed[0]


def test_caddy_handler_gaining_its_first_setting_reads_as_one_change() -> None:
    import json

    from lbctl.semantic import diff_texts

    def config(extra: dict[str, object]) -> str:
        handler = {"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:81"}, {"dial": "127.0.0.1:82"}]}
        route = {"handle": [{**handler, **extra}]}
        return json.dumps({"apps": {"http": {"servers": {"s": {"listen": [":80"], "routes": [route]}}}}})

    plain, retrying = config({}), config({"load_balancing": {"try_duration": "5s"}})
    added = [c.text for c in diff_texts("caddy", plain, retrying, filename="c.json").changes]
    assert added == ['reverse_proxy s: load_balancing.try_duration "5s" added']
    removed = [c.text for c in diff_texts("caddy", retrying, plain, filename="c.json").changes]
    assert removed == ['reverse_proxy s: load_balancing.try_duration "5s" removed']


def test_shell_commands_quote_placeholders_and_leave_the_rest_to_the_shell() -> None:
    from lbctl.errors import ConfigError
    from lbctl.shell import quoted_placeholder, shell_line

    values: dict[str, str | None] = {"path": "/etc/a b/it's.cfg", "master_socket": None}
    line = shell_line("haproxy -c -f {path} && echo ${HOME} {other}", values, key="k")
    assert line == "haproxy -c -f '/etc/a b/it'\"'\"'s.cfg' && echo ${HOME} {other}"
    with pytest.raises(ConfigError, match=r"k uses \{master_socket\}"):
        shell_line("echo reload | socat stdio unix-connect:{master_socket}", values, key="k")
    assert quoted_placeholder("cat '{path}'") == "'{path}'"
    assert quoted_placeholder('cat "{stats_socket}"') == '"{stats_socket}"'
    assert quoted_placeholder("cat {path} '{x}'") is None


def test_commands_in_lbctl_toml_are_checked_when_read() -> None:
    from lbctl.config import target_from

    base = {"name": "e", "kind": "haproxy", "source": "x.cfg", "path": "/x", "master_socket": "/m"}
    with pytest.raises(Exception, match="write \\{path\\} bare"):
        target_from({**base, "reload": "cat '{path}'"})
    with pytest.raises(Exception, match="not both"):
        target_from({**base, "checks": [{"type": "command", "command": "true", "argv": ["true"]}]})
    with pytest.raises(Exception, match="cannot confirm"):
        target_from({**{k: v for k, v in base.items() if k != "master_socket"}, "reload": "true"})
    with pytest.raises(Exception, match=r"`reload` uses \{stats_socket\}, but the target has no `stats_socket`"):
        target_from({**base, "reload": "echo reload | socat stdio unix:{stats_socket}"})
    unconfirmed = target_from({**base, "master_socket": None, "reload": "true", "confirm_reload": False})
    assert not unconfirmed.confirm_reload
