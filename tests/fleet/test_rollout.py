"""`deploy @edge`: canary, batches, consistent undo, exit codes, and the rollout in the journal."""

from __future__ import annotations

import json

from tests.conftest import LbctlRunner
from tests.fleet.conftest import FleetFactory


def test_good_change_reaches_every_member_and_is_confirmed(make_fleet: FleetFactory, lbctl: LbctlRunner) -> None:
    fleet = make_fleet(3, rollout='batches = ["50%", "100%"]')
    head = fleet.commit("Add a spare backend", spare=True)

    plan = lbctl("deploy", "@edge", "--dry-run", "--json")
    assert plan.code == 0, plan.out + plan.err
    data = json.loads(plan.out)
    assert [m["verdict"] for m in data["plan"]["members"]] == ["change"] * 3
    assert data["plan"]["waves"] == [["edge1"], ["edge2"], ["edge3"]]

    result = lbctl("deploy", "@edge", "--yes", "--checksum", data["plan"]["checksum"])
    assert result.code == 0, result.out + result.err
    for name in fleet.names:
        assert fleet.live(name) == fleet.config(name, spare=True)
        state = fleet.state(name)
        assert state.live == head and state.status == "good"  # confirmed: no watchdog left pending
