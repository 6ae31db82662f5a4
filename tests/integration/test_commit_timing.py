"""A change that never went live leaves no commit, and nothing staged on the LB."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from lbctl.lab.processes import free_port
from tests.conftest import Lab, LbctlRunner, git, target_toml, write


def test_reload_that_fails_at_runtime_leaves_no_commit(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    (store / "configs/edge/haproxy.cfg").write_text(lab.config())  # the store says what is live
    git(store, "commit", "-qam", "adopt")
    assert lbctl("deploy", "edge", "--yes").code == 0
    # `haproxy -c` accepts a bind on a port another process holds; the reload itself fails.
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        live_before = lab.live_text()
        head = git(store, "rev-parse", "HEAD")
        extra = f"\nfrontend second\n    bind 127.0.0.1:{port}\n    default_backend web\n"
        new = write(tmp_path / "new.cfg", lab.config() + extra)
        result = lbctl("deploy", "edge", "--file", str(new), "--yes", "-m", "a second frontend")
    finally:
        holder.close()
    assert result.code == 1, result.out + result.err
    assert "reload failed" in result.out and "[failed: 1]" in result.out
    assert lab.live_text() == live_before
    assert git(store, "rev-parse", "HEAD") == head  # the change never went live: no commit
    assert git(store, "status", "--porcelain") == ""
    events = json.loads(lbctl("log", "edge", "--json").out)["events"]
    assert events[1]["verdict"] == "failed" and events[0]["op"] == "auto-rollback"


def test_failing_baseline_leaves_no_commit_and_nothing_staged(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    toml = target_toml(lab).replace(f'stats_socket = "{lab.haproxy.stats_socket}"\n', "")
    (store / "lbctl.toml").write_text(toml + '\n[[targets.edge.checks]]\ntype = "balance"\n')
    git(store, "commit", "-qam", "balance without a stats socket")
    head = git(store, "rev-parse", "HEAD")
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 90}))
    result = lbctl("deploy", "edge", "--file", str(new), "--yes")
    assert result.code == 2 and "stats_socket" in result.err
    assert git(store, "rev-parse", "HEAD") == head
    assert not list(lab.haproxy.config.parent.glob(".*lbctl-stage*"))
    assert "weight 90" not in lab.live_text()
