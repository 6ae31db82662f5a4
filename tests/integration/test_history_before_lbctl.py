"""History reaches back before lbctl's first deploy, and past revisions this clone lacks."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import Lab, LbctlRunner, git, write


def commit_running_config(store: Path, lab: Lab) -> str:
    """The store learns what the LB runs (as a team adopting lbctl would commit it), without a deploy."""
    source = store / "configs/edge/haproxy.cfg"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(lab.live_text())
    git(store, "add", "configs/edge/haproxy.cfg")
    git(store, "commit", "-qm", "The config edge runs today")
    return git(store, "rev-parse", "HEAD").strip()


def test_previous_after_the_first_deploy_is_what_ran_before(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    original = lab.live_text()
    before = commit_running_config(store, lab)
    time.sleep(1.1)  # commit times have a resolution of one second
    between = datetime.now(tz=UTC).isoformat()
    time.sleep(0.05)
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 10}))
    assert lbctl("deploy", "edge", "--file", str(new), "-m", "first lbctl deploy", "--yes").code == 0

    event = json.loads(lbctl("log", "edge", "--json").out)["events"][0]
    assert event["from_rev"] == before
    for selector in ("previous", "~1", f"@{between}"):
        checked = lbctl("check", "edge", "--rev", selector, "--json")
        assert checked.code == 0, (selector, checked.err)
        assert json.loads(checked.out)["candidate"].startswith(before[:10]), selector

    result = lbctl("rollback", "edge", "--to", "previous", "--yes")

    assert result.code == 0, result.out + result.err
    assert lab.live_text() == original


def test_log_shows_events_whose_revision_this_clone_lacks(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    first = write(tmp_path / "first.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 50}))
    assert lbctl("deploy", "edge", "--file", str(first), "-m", "first", "--yes").code == 0
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(store), str(clone)], check=True)
    second = write(tmp_path / "second.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 20}))
    assert lbctl("deploy", "edge", "--file", str(second), "-m", "second", "--yes").code == 0
    missing = git(store, "rev-parse", "HEAD").strip()
    # A teammate's journal arrives, without the branch that holds their commit.
    git(clone, "fetch", "-q", "origin", "+refs/lbctl/journal:refs/lbctl/journal")
    git(clone, "remote", "remove", "origin")  # else lbctl's own sync would fetch the branch too
    assert subprocess.run(["git", "-C", str(clone), "cat-file", "-e", missing], capture_output=True).returncode != 0

    result = lbctl("log", "edge", "--store", str(clone), "--json")

    assert result.code == 0, result.err
    events = json.loads(result.out)["events"]
    assert events[0]["to_rev"] == missing and events[0]["revision_missing"] is True
    assert events[1]["revision_missing"] is False and events[1]["subject"] == "first"
    text = lbctl("log", "edge", "--store", str(clone))
    assert text.code == 0 and "revision not in this clone" in text.out
