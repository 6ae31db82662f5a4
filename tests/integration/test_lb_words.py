"""HAProxy's own words for a refused config or reload, with the store's file names, in text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Lab, LbctlRunner, git, write
from tests.integration.test_reload_commands import proc, retarget

BROKEN_LINE = "    server x 127.0.0.1:1 bogus-keyword"


def broken(lab: Lab) -> tuple[str, int]:
    """A config HAProxy refuses, and the line it will name."""
    text = lab.config() + "\nbackend oops\n" + BROKEN_LINE + "\n"
    return text, text.splitlines().index(BROKEN_LINE) + 1


def test_validation_failure_shows_haproxys_message_with_the_store_file_and_line(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    text, line = broken(lab)
    bad = write(tmp_path / "bad.cfg", text)
    live = lab.live_text()

    result = lbctl("deploy", "edge", "--file", str(bad), "--yes")

    assert result.code == 3, result.out + result.err
    assert f"[configs/edge/haproxy.cfg:{line}]" in result.err
    assert "unknown keyword 'bogus-keyword'" in result.err
    assert "lbctl-stage" not in result.err
    assert lab.live_text() == live

    as_json = lbctl("deploy", "edge", "--file", str(bad), "--yes", "--json")
    error = json.loads(as_json.out)
    assert as_json.code == 3 and error["exit_code"] == 3
    assert (
        f"configs/edge/haproxy.cfg:{line}" in error["error"]["details"] and "bogus-keyword" in error["error"]["details"]
    )
    events = json.loads(lbctl("log", "edge", "--json").out)["events"]
    assert events[0]["verdict"] == "validation-failed" and f"haproxy.cfg:{line}" in events[0]["message"]


def test_check_json_carries_the_validators_words(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    text, line = broken(lab)
    bad = write(tmp_path / "bad.cfg", text)
    result = lbctl("check", "edge", "--file", str(bad), "--json")
    report = json.loads(result.out)
    assert result.code == 3 and not report["ok"] and not report["validation_ok"]
    assert f"[configs/edge/haproxy.cfg:{line}]" in report["validation"]
    assert "unknown keyword 'bogus-keyword'" in report["validation"]
    assert any(f"configs/edge/haproxy.cfg:{line}" in f for f in report["findings"])

    text_out = lbctl("check", "edge", "--file", str(bad))
    assert text_out.code == 3 and f"configs/edge/haproxy.cfg:{line}" in text_out.out

    good = write(tmp_path / "good.cfg", lab.config())
    result = lbctl("check", "edge", "--file", str(good), "--json")
    report = json.loads(result.out)
    assert result.code == 0 and report["validation_ok"] and "Configuration file is valid" in report["validation"]


def test_a_reload_haproxy_refuses_says_why_in_its_words(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    # Validation skipped, so the candidate reaches the reload: the master refuses it ([failed: 1]).
    retarget(store, lab, extra='validate = "true"')
    text, line = broken(lab)
    bad = write(tmp_path / "bad.cfg", text)
    live = lab.live_text()

    result = lbctl("deploy", "edge", "--file", str(bad), "--yes")

    assert result.code == 1, result.out + result.err
    assert "[failed: 1]" in result.out
    assert f"configs/edge/haproxy.cfg:{line}" in result.out and "bogus-keyword" in result.out
    assert str(lab.haproxy.workdir / "haproxy.log") in result.out  # where the master's words were read
    assert lab.live_text() == live
    assert proc(lab).reloads == 2  # the refused one, then the restore
    events = json.loads(lbctl("log", "edge", "--json").out)["events"]
    assert "bogus-keyword" in events[1]["message"] and events[0]["verdict"] == "good"
    assert git(store, "status", "--porcelain") == ""
