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

    stale = lbctl("deploy", "@edge", "--yes", "--checksum", "0123456789abcdef")
    assert stale.code == 4 and "changed since it was reviewed" in stale.out
    shared_file = lbctl("deploy", "@edge", "--yes", "--file", "configs/edge1.cfg")
    assert shared_file.code == 2 and "share one source file" in shared_file.err
    assert all(fleet.live(n) == fleet.config(n) for n in fleet.names)  # nothing changed so far

    result = lbctl("deploy", "@edge", "--yes", "--checksum", data["plan"]["checksum"])
    assert result.code == 0, result.out + result.err
    for name in fleet.names:
        assert fleet.live(name) == fleet.config(name, spare=True)
        state = fleet.state(name)
        assert state.live == head and state.status == "good"  # confirmed: no watchdog left pending


def test_bad_change_fails_on_the_canary_and_touches_no_other_member(
    make_fleet: FleetFactory, lbctl: LbctlRunner
) -> None:
    fleet = make_fleet(3)
    before = {n: (fleet.live(n), fleet.workers(n)) for n in fleet.names}
    fleet.commit("Route everything to the maintenance pool", route_to="maintenance")

    result = lbctl("deploy", "@edge", "--yes", "--json")

    assert result.code == 1, result.out + result.err
    data = json.loads(result.out)
    verdicts = {m["name"]: m["verdict"] for m in data["members"]}
    assert verdicts == {"edge1": "rolled-back", "edge2": "skipped", "edge3": "skipped"}
    assert fleet.live("edge1") == before["edge1"][0]  # the canary put itself back
    for name in ("edge2", "edge3"):  # never reached: same file, no reload
        assert (fleet.live(name), fleet.workers(name)) == before[name]


def test_failure_on_member_4_of_6_puts_1_to_3_back_and_leaves_5_6_untouched(
    make_fleet: FleetFactory, lbctl: LbctlRunner
) -> None:
    fleet = make_fleet(6, rollout='batches = ["50%", "4", "100%"]\nparallel = 2')
    # edge4's override checks its aux listener, which the change drops: a dead port once it is live
    aux = fleet.aux_ports["edge4"]
    members = f'[groups.edge.members.edge4]\nchecks = [{{ type = "tcp", port = {aux}, timeout = 0.3 }}]\n'
    fleet.set_members(members)
    before = {n: (fleet.live(n), fleet.workers(n), fleet.state(n).live) for n in fleet.names}
    head = fleet.commit("Drop the aux listener", aux=False)

    result = lbctl("deploy", "@edge", "--yes")

    assert result.code == 1, result.out + result.err
    for name in ("edge1", "edge2", "edge3", "edge4"):  # each back on its own previous config, recorded
        assert fleet.live(name) == before[name][0]
        state = fleet.state(name)
        assert state.status == "good" and head in state.bad
    for name in ("edge5", "edge6"):  # untouched: same file, same worker, same record
        assert (fleet.live(name), fleet.workers(name), fleet.state(name).live) == before[name]
    table = result.out
    assert "edge4" in table and "rolled-back" in table and "restored" in table and "skipped" in table

    log = lbctl("log", "@edge")
    assert log.code == 0
    assert "rolled-back" in log.out and "edge1 | edge2, edge3 | edge4 | edge5, edge6" in log.out
    rows = {line.split()[0]: line.split()[2] for line in log.out.splitlines() if line.strip().startswith("edge")}
    assert rows == {
        "edge1": "restored",
        "edge2": "restored",
        "edge3": "restored",
        "edge4": "rolled-back",
        "edge5": "skipped",
        "edge6": "skipped",
    }
    rollout = json.loads(lbctl("log", "@edge", "--json").out)["rollouts"][0]
    assert rollout["op"] == "rollout" and rollout["verdict"] == "rolled-back"
    assert [m["name"] for m in rollout["data"]["members"]] == fleet.names


def test_max_failures_1_leaves_a_mixed_fleet_exit_8(make_fleet: FleetFactory, lbctl: LbctlRunner) -> None:
    fleet = make_fleet(3, rollout='batches = ["100%"]\nmax_failures = 1\nparallel = 1')
    aux = fleet.aux_ports["edge2"]
    fleet.set_members(f'[groups.edge.members.edge2]\nchecks = [{{ type = "tcp", port = {aux}, timeout = 0.3 }}]\n')
    original = fleet.live("edge2")
    head = fleet.commit("Drop the aux listener", aux=False)

    result = lbctl("deploy", "@edge", "--yes", "--json")

    assert result.code == 8, result.out + result.err
    data = json.loads(result.out)
    runs = {m["name"]: (m["verdict"], m["now"]) for m in data["members"]}
    assert runs["edge1"] == ("confirmed", head) and runs["edge3"] == ("confirmed", head)
    assert runs["edge2"][0] == "rolled-back" and runs["edge2"][1] != head
    assert fleet.live("edge2") == original and fleet.live("edge1") == fleet.config("edge1", aux=False)
    assert data["verdict"] == "mixed" and data["error"]["code"] == 8
    assert "lbctl rollback @edge --to last-good" in data["error"]["hint"]
    text = lbctl("status", "@edge", "--offline")
    assert text.out.count("state       good") == 3


def test_a_member_locked_by_someone_else_stops_the_rollout_in_preflight(
    make_fleet: FleetFactory, lbctl: LbctlRunner
) -> None:
    from pathlib import Path

    from lbctl.lock import hold_flock, holder_info

    fleet = make_fleet(3)
    before = {n: (fleet.live(n), fleet.workers(n), fleet.state(n).live) for n in fleet.names}
    fleet.commit("Add a spare backend", spare=True)
    lb_lock = fleet.lbs["edge2"].config.parent / ".haproxy.cfg.lbctl.lock"  # beside the live file

    with hold_flock(Path(lb_lock), holder_info("deploy", "edge2")):
        result = lbctl("deploy", "@edge", "--yes")

    assert result.code == 5, result.out + result.err
    assert "edge2" in result.out and "refused" in result.out and "nothing was changed" in result.out
    for name in fleet.names:
        assert (fleet.live(name), fleet.workers(name), fleet.state(name).live) == before[name]


def test_on_failure_halt_leaves_the_changed_members_confirmed_exit_8(
    make_fleet: FleetFactory, lbctl: LbctlRunner
) -> None:
    fleet = make_fleet(3, rollout='batches = ["2", "100%"]\non_failure = "halt"')
    aux = fleet.aux_ports["edge2"]
    fleet.set_members(f'[groups.edge.members.edge2]\nchecks = [{{ type = "tcp", port = {aux}, timeout = 0.3 }}]\n')
    untouched = (fleet.live("edge3"), fleet.workers("edge3"))
    head = fleet.commit("Drop the aux listener", aux=False)

    result = lbctl("deploy", "@edge", "--yes")

    assert result.code == 8, result.out + result.err
    rows = {line.split()[0]: line.split()[2] for line in result.out.splitlines() if line.startswith("edge")}
    assert rows == {"edge1": "confirmed", "edge2": "rolled-back", "edge3": "skipped"}
    assert "on_failure = halt" in result.out
    assert fleet.state("edge1").live == head and fleet.state("edge1").status == "good"  # kept, confirmed
    assert (fleet.live("edge3"), fleet.workers("edge3")) == untouched
