"""The plan as a value, on real HAProxies: plans for several targets computed (and shown) before any
of them is touched, then each put live by `execute`; a plan the LB or the journal moved away from is
refused under the lock, and nothing changes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbctl.commands.deploy import deploy_candidate, deploy_plan
from lbctl.engine.execute import execute
from lbctl.engine.plan import Plan, plan_change
from lbctl.errors import ExitCode, Refused
from lbctl.lab.processes import Haproxy, free_port, haproxy_config, haproxy_target_toml
from lbctl.store.workspace import Workspace, open_workspace
from tests.conftest import DEAD_BACKEND, Lab, LbctlRunner, git, write
from tests.integration.test_lifecycle import show_proc_workers


@pytest.fixture
def second(tmp_path: Path, lab: Lab) -> Iterator[Lab]:
    """Another HAProxy in front of the same backends: target `api`."""
    workdir = tmp_path / "lb-api"
    fe_port, dead_port = free_port(), free_port()
    text = haproxy_config(
        frontend_port=fe_port,
        backends=lab.backends.ports,
        stats_socket=workdir / "admin.sock",
        extra_backends=DEAD_BACKEND.format(dead_port=dead_port),
    )
    haproxy = Haproxy.start(workdir, text)
    yield Lab(haproxy, lab.backends, fe_port, dead_port, workdir)
    haproxy.stop()


@pytest.fixture
def fleet(store: Path, second: Lab) -> Workspace:
    """The store with a second target, `api`, whose source is what its HAProxy runs."""
    toml = store / "lbctl.toml"
    url = f"http://127.0.0.1:{second.fe_port}/"
    api = haproxy_target_toml("api", second.haproxy, url, source="configs/api/haproxy.cfg", probes=2)
    toml.write_text(toml.read_text() + "\n" + api)
    (store / "configs" / "api").mkdir(parents=True, exist_ok=True)
    write(store / "configs" / "api" / "haproxy.cfg", second.live_text())
    git(store, "add", "-A")
    git(store, "commit", "-q", "-m", "Add target api")
    return open_workspace(str(store))


def test_plans_for_two_targets_touch_nothing_then_each_is_executed(
    store: Path, lab: Lab, second: Lab, fleet: Workspace, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    labs = {"edge": lab, "api": second}
    new = {
        name: write(tmp_path / f"{name}.cfg", each.config(weights={"web1": 100, "web2": 100, "web3": 40}))
        for name, each in labs.items()
    }
    running = {name: each.live_text() for name, each in labs.items()}
    procs = {name: show_proc_workers(each.haproxy) for name, each in labs.items()}
    head, journal = git(store, "rev-parse", "HEAD"), fleet.journal.tip()

    plans: dict[str, Plan] = {}
    for name in labs:
        target = fleet.target(name)
        plans[name] = plan_change(fleet, target, deploy_candidate(fleet, target, file=new[name], message="web3 to 40"))

    # Every plan exists before anything changed anywhere: LBs, processes, store branch, journal.
    for name, each in labs.items():
        assert each.live_text() == running[name]
        assert show_proc_workers(each.haproxy) == procs[name]
    assert git(store, "rev-parse", "HEAD") == head and fleet.journal.tip() == journal
    for name, plan in plans.items():
        assert plan.target == name and plan.op == "deploy" and not plan.unchanged and not plan.problems
        assert "web3" in plan.diff
        # The same plan as the CLI's own dry run: same checksum, so one review approves either.
        dry = lbctl("deploy", name, "--file", str(new[name]), "--dry-run", "--json")
        assert dry.code == 0, dry.err
        assert json.loads(dry.out)["plan"]["checksum"] == plan.checksum

    # The engine's own entry point, and the command's (the store's remote around it, none here).
    outcomes = {"edge": execute(fleet, fleet.target("edge"), plans["edge"]), "api": deploy_plan(fleet, plans["api"])}

    for name, each in labs.items():
        outcome = outcomes[name]
        assert outcome.verdict == "good" and outcome.exit_code == ExitCode.OK, outcome.message
        assert each.live_text() == new[name].read_text()
        after = show_proc_workers(each.haproxy)
        assert after.reloads == procs[name].reloads + 1 and after.failed == 0
        events = json.loads(lbctl("log", name, "--json").out)["events"]
        assert events[0]["verdict"] == "good" and events[0]["id"] == outcome.events[0]
        assert [s["name"] for s in events[0]["stages"]][:3] == ["path", "read live", "stage"]
        assert "Lbctl-Target: " + name in git(store, "log", "-1", "--format=%B", outcome.to_rev or "")


def test_a_plan_the_lb_moved_away_from_is_refused_and_changes_nothing(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    ws = open_workspace(str(store))
    target = ws.target("edge")
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 40}))
    plan = plan_change(ws, target, deploy_candidate(ws, target, file=new))
    # A hand edit on the LB after the plan was computed: the plan no longer says what would change.
    edited = lab.config(weights={"web1": 100, "web2": 100, "web3": 90})
    lab.haproxy.config.write_text(edited)
    procs, head, journal = show_proc_workers(lab.haproxy), git(store, "rev-parse", "HEAD"), ws.journal.tip()

    with pytest.raises(Refused) as refused:
        execute(ws, target, plan)

    assert refused.value.exit_code == ExitCode.REFUSED
    assert "the plan is stale" in str(refused.value) and "nothing was pushed" in str(refused.value)
    assert lab.live_text() == edited and show_proc_workers(lab.haproxy) == procs
    assert git(store, "rev-parse", "HEAD") == head and ws.journal.tip() == journal


def test_a_plan_another_deploy_went_past_is_refused(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    ws = open_workspace(str(store))
    target = ws.target("edge")
    planned = write(tmp_path / "planned.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 40}))
    plan = plan_change(ws, target, deploy_candidate(ws, target, file=planned))
    other = write(tmp_path / "other.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 60}))
    assert lbctl("deploy", "edge", "--file", str(other), "--yes").code == 0
    head = git(store, "rev-parse", "HEAD")

    with pytest.raises(Refused, match="the plan is stale"):
        execute(ws, target, plan)

    assert lab.live_text() == other.read_text() and git(store, "rev-parse", "HEAD") == head
