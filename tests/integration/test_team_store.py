"""A team's store: a bare repository on disk as the remote, clones for Alice, Bob and CI,
real HAProxy targets. The remote is part of the store: what one clone deploys, every clone sees;
stale views are refused; the team-wide lease lets exactly one clone change a target at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lbctl.errors import Locked, Refused, Unreachable
from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config, haproxy_target_toml
from tests.conftest import Lab, LbctlRunner, Result, git

LBCTL = [sys.executable, "-m", "lbctl"]
EDGE_SOURCE = "configs/edge/haproxy.cfg"
API_SOURCE = "configs/api/haproxy.cfg"


@dataclass
class Team:
    remote: Path  # a bare repository: the team's GitHub/GitLab
    root: Path
    edge: Lab
    api: Haproxy
    api_port: int
    backends: Backends

    def clone(self, name: str, who: str) -> Path:
        path = self.root / name
        subprocess.run(["git", "clone", "-q", str(self.remote), str(path)], check=True)
        git(path, "config", "user.name", who)
        git(path, "config", "user.email", f"{who.lower()}@example.com")
        return path

    def edge_config(self, **kwargs: object) -> str:
        return self.edge.config(**kwargs)  # type: ignore[arg-type]

    def api_config(self, weights: dict[str, int] | None = None) -> str:
        return haproxy_config(
            frontend_port=self.api_port,
            backends=self.backends.ports,
            stats_socket=self.api.stats_socket,
            weights=weights,
        )


def toml(team: Team, verify_seconds: float, extra: str = "") -> str:
    head = f"[defaults]\nverify_seconds = {verify_seconds}\ncheck_interval = 0.25\nretries = 2\n\n{extra}"
    edge = haproxy_target_toml("edge", team.edge.haproxy, f"http://127.0.0.1:{team.edge.fe_port}/", probes=2)
    api = haproxy_target_toml("api", team.api, f"http://127.0.0.1:{team.api_port}/", source=API_SOURCE, probes=2)
    return head + edge + "\n" + api


def make_team(
    tmp_path: Path, lab: Lab, backends: Backends, lbctl: LbctlRunner, verify_seconds: float, extra: str = ""
) -> Team:
    port = free_port()
    workdir = tmp_path / "lb-api"
    api = Haproxy.start(
        workdir,
        haproxy_config(frontend_port=port, backends=backends.ports, stats_socket=workdir / "admin.sock"),
    )
    team = Team(tmp_path / "remote.git", tmp_path, lab, api, port, backends)
    seed = tmp_path / "seed"
    assert lbctl("init", str(seed)).code == 0
    (seed / "lbctl.toml").write_text(toml(team, verify_seconds, extra))
    (seed / EDGE_SOURCE).write_text(lab.live_text())
    (seed / API_SOURCE).parent.mkdir(parents=True)
    (seed / API_SOURCE).write_text(team.api.config.read_text())
    git(seed, "add", "-A")
    git(seed, "commit", "-qm", "Add targets edge and api")
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(team.remote)], check=True)
    return team


@pytest.fixture
def team(tmp_path: Path, lab: Lab, backends: Backends, lbctl: LbctlRunner) -> Iterator[Team]:
    made = make_team(tmp_path, lab, backends, lbctl, verify_seconds=1.0)
    yield made
    made.api.stop()


@pytest.fixture
def strict_team(tmp_path: Path, lab: Lab, backends: Backends, lbctl: LbctlRunner) -> Iterator[Team]:
    """The team's policy wants at least two active servers in every pool."""
    made = make_team(tmp_path, lab, backends, lbctl, verify_seconds=1.0, extra="[policy]\nmin_active_servers = 2\n\n")
    yield made
    made.api.stop()


@pytest.fixture
def slow_team(tmp_path: Path, lab: Lab, backends: Backends, lbctl: LbctlRunner) -> Iterator[Team]:
    """Deploys that hold their target for a few seconds: long enough for a second clone to try."""
    made = make_team(tmp_path, lab, backends, lbctl, verify_seconds=4.0)
    yield made
    made.api.stop()


def run(lbctl: LbctlRunner, clone: Path, *args: str) -> Result:
    return lbctl(*args, "--store", str(clone))


def commit_edit(clone: Path, source: str, text: str, message: str, *, push: bool = True) -> str:
    (clone / source).write_text(text)
    git(clone, "commit", "-qam", message)
    if push:
        git(clone, "push", "-q", "origin", "HEAD")
    return git(clone, "rev-parse", "HEAD").strip()


def remote_journal(team: Team) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(team.remote), "log", "--format=%B", "refs/lbctl/journal"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def spawn(clone: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*LBCTL, *args], cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )


def status_of(lbctl: LbctlRunner, clone: Path, target: str) -> dict[str, object]:
    result = run(lbctl, clone, "status", target, "--json")
    document: dict[str, object] = json.loads(result.out)["targets"][0]
    return document


# -- a fresh clone knows what the team did ---------------------------------------------------


def test_a_fresh_clone_sees_status_and_log_and_rolls_back_at_once(team: Team, lbctl: LbctlRunner) -> None:
    alice = team.clone("alice", "Alice")
    first = commit_edit(alice, EDGE_SOURCE, team.edge_config(weights={"web1": 2, "web2": 1, "web3": 1}), "2:1:1")
    assert run(lbctl, alice, "deploy", "edge", "--yes").code == 0
    second = commit_edit(alice, EDGE_SOURCE, team.edge_config(weights={"web1": 1, "web2": 1, "web3": 2}), "1:1:2")
    deployed = run(lbctl, alice, "deploy", "edge", "--yes")
    assert deployed.code == 0, deployed.err

    fresh = team.clone("fresh", "Carol")  # a plain `git clone`: no refs/lbctl/* in it
    offline = json.loads(run(lbctl, fresh, "status", "--offline", "--json").out)["targets"]
    assert {t["target"]: t["live"] for t in offline} == {"edge": second, "api": None}
    seen = status_of(lbctl, fresh, "edge")
    assert seen["live"] == second and seen["last_good"] == second and seen["status"] == "good"
    for key in ("live", "last_good", "status", "bad", "updated", "drift"):
        assert seen[key] == status_of(lbctl, alice, "edge")[key], key
    log_fresh = json.loads(run(lbctl, fresh, "log", "edge", "--json").out)["events"]
    log_alice = json.loads(run(lbctl, alice, "log", "edge", "--json").out)["events"]
    assert [e["id"] for e in log_fresh] == [e["id"] for e in log_alice] and len(log_fresh) == 2
    assert log_fresh[0]["subject"] == "1:1:2"

    preview = run(lbctl, fresh, "rollback", "edge", "--to", "last-good", "--dry-run")
    assert preview.code == 0 and second[:10] in preview.out + preview.err, preview.err
    back = run(lbctl, fresh, "rollback", "edge", "--to", "previous", "--yes")
    assert back.code == 0, back.err
    assert "weight 2" in team.edge.live_text() and team.edge.live_text().count("weight 1") == 2
    assert first[:10] in git(fresh, "log", "-1", "--format=%B")  # Lbctl-Restores: the first revision
    # the rollback is on the remote: Alice's clone sees it as soon as it asks
    after = status_of(lbctl, alice, "edge")
    assert after["live"] == git(fresh, "rev-parse", "HEAD").strip() and after["status"] == "good"
    assert "rollback edge: good" in remote_journal(team)


# -- clones racing ---------------------------------------------------------------------------


def test_two_clones_deploy_different_targets_at_once_and_no_event_is_lost(
    team: Team, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    alice, bob = team.clone("alice", "Alice"), team.clone("bob", "Bob")
    edge_file = tmp_path / "edge.cfg"
    edge_file.write_text(team.edge_config(weights={"web1": 3, "web2": 1, "web3": 1}))
    api_file = tmp_path / "api.cfg"
    api_file.write_text(team.api_config(weights={"web1": 1, "web2": 3, "web3": 1}))

    a = spawn(alice, "deploy", "edge", "--file", str(edge_file), "-m", "edge 3:1:1", "--yes")
    b = spawn(bob, "deploy", "api", "--file", str(api_file), "-m", "api 1:3:1", "--yes")
    err_a = a.communicate(timeout=60)[1]
    err_b = b.communicate(timeout=60)[1]

    assert a.returncode == 0, err_a
    assert b.returncode == 0, err_b
    journal = remote_journal(team)
    assert "deploy edge: good" in journal and "deploy api: good" in journal
    fresh = team.clone("fresh", "Carol")
    assert status_of(lbctl, fresh, "edge")["status"] == "good"
    assert status_of(lbctl, fresh, "api")["status"] == "good"
    events = json.loads(run(lbctl, fresh, "log", "--json").out)["events"]
    assert {e["target"] for e in events} == {"edge", "api"}
    assert all(e["subject"] in ("edge 3:1:1", "api 1:3:1") for e in events), events
    # both commits are on the remote's main: the second to push merged the first's
    subjects = git(team.remote, "log", "--format=%s", "main").splitlines()
    assert "edge 3:1:1" in subjects and "api 1:3:1" in subjects, subjects
    assert "lbctl/deploy" not in git(team.remote, "branch", "--list")
    for clone in (alice, bob):  # nothing left to commit; a `git pull` fast-forwards to both changes
        assert git(clone, "status", "--porcelain") == ""
        git(clone, "pull", "-q", "--ff-only")
        assert (clone / EDGE_SOURCE).read_text() == edge_file.read_text()
        assert (clone / API_SOURCE).read_text() == api_file.read_text()


def test_two_clones_deploy_the_same_target_at_once_exactly_one_runs(slow_team: Team, lbctl: LbctlRunner) -> None:
    team = slow_team
    alice = team.clone("alice", "Alice")
    commit_edit(alice, EDGE_SOURCE, team.edge_config(weights={"web1": 2, "web2": 1, "web3": 1}), "2:1:1")
    bob = team.clone("bob", "Bob")

    a = spawn(alice, "deploy", "edge", "--yes")
    b = spawn(bob, "deploy", "edge", "--yes")
    results = {"Alice": a.communicate(timeout=60), "Bob": b.communicate(timeout=60)}
    codes = {"Alice": a.returncode, "Bob": b.returncode}

    assert sorted(codes.values()) == [0, 5], (codes, results)
    loser = next(who for who, code in codes.items() if code == 5)
    winner = "Bob" if loser == "Alice" else "Alice"
    assert f"by {winner} <{winner.lower()}@example.com>" in results[loser][1], results[loser][1]
    assert "locked on origin" in results[loser][1]
    journal = remote_journal(team)
    assert journal.count("deploy edge: good") == 1
    # the lease is gone with the operation; the loser's retry finds nothing left to do
    assert "refs/lbctl/locks/edge" not in git(team.remote, "for-each-ref")
    again = run(lbctl, alice if loser == "Alice" else bob, "deploy", "edge", "--yes")
    assert again.code == 0 and "nothing to do" in again.out + again.err


def test_the_lease_is_shown_by_status_in_every_clone_and_broken_by_break_lease(team: Team, lbctl: LbctlRunner) -> None:
    from lbctl.store import lease
    from lbctl.store.workspace import open_workspace

    alice, bob = team.clone("alice", "Alice"), team.clone("bob", "Bob")
    ws = open_workspace(str(alice))
    with lease.held(ws, "edge", "deploy") as mine:
        assert mine is not None and mine.lease.holder == "Alice <alice@example.com>"
        shown = status_of(lbctl, bob, "edge")
        assert "deploy of edge by Alice <alice@example.com>" in str(shown["lock"])
        assert "team lease" in str(shown["lock"])
        bobs = open_workspace(str(bob))
        with (
            pytest.raises(Locked, match="locked on origin: deploy of edge by Alice"),
            lease.held(bobs, "edge", "deploy"),
        ):
            pass
        broken = lease.break_lease(bobs, "edge")
        assert broken is not None and broken.holder == "Alice <alice@example.com>"
        assert status_of(lbctl, bob, "edge")["lock"] is None
    assert "unlock edge: lease-broken" in remote_journal(team)
    away = team.remote.with_name("away.git")
    team.remote.rename(away)
    with pytest.raises(Unreachable, match="cannot reach origin to break the lease on edge"):
        lease.break_lease(bobs, "edge")
    with pytest.raises(Refused, match="cannot reach origin to take the team lease"), lease.held(bobs, "edge", "deploy"):
        pass
    away.rename(team.remote)


def test_a_stale_clone_is_refused_then_deploys_after_git_pull(team: Team, lbctl: LbctlRunner) -> None:
    alice, bob = team.clone("alice", "Alice"), team.clone("bob", "Bob")
    commit_edit(alice, EDGE_SOURCE, team.edge_config(weights={"web1": 2, "web2": 1, "web3": 1}), "2:1:1")
    assert run(lbctl, alice, "deploy", "edge", "--yes").code == 0
    live = team.edge.live_text()

    stale = run(lbctl, bob, "deploy", "edge", "--yes")  # Bob's HEAD still has the old config

    assert stale.code == 4, stale.err
    assert "stale" in stale.err and "git pull" in stale.err and "2:1:1" in stale.err
    assert team.edge.live_text() == live  # nothing was pushed to the LB
    git(bob, "pull", "-q")
    fresh = run(lbctl, bob, "deploy", "edge", "--yes")
    assert fresh.code == 0, fresh.err


def test_rollback_works_with_the_remote_unreachable_and_pushes_later(team: Team, lbctl: LbctlRunner) -> None:
    alice = team.clone("alice", "Alice")
    commit_edit(alice, EDGE_SOURCE, team.edge_config(weights={"web1": 2, "web2": 1, "web3": 1}), "2:1:1")
    assert run(lbctl, alice, "deploy", "edge", "--yes").code == 0
    commit_edit(alice, EDGE_SOURCE, team.edge_config(weights={"web1": 1, "web2": 1, "web3": 2}), "1:1:2")
    assert run(lbctl, alice, "deploy", "edge", "--yes").code == 0
    away = team.remote.with_name("remote-away.git")
    team.remote.rename(away)  # the remote is down

    back = run(lbctl, alice, "rollback", "edge", "--to", "previous", "--yes")

    assert back.code == 0, back.err
    assert "could not fetch from origin" in back.err and "may be stale" in back.err
    assert "does not appear to be a git repository" in back.err  # git's own reason
    assert "the next lbctl command pushes them" in back.err  # the records wait here for the remote
    assert "weight 2" in team.edge.live_text()
    offline_deploy = run(lbctl, alice, "deploy", "edge", "--yes")
    assert offline_deploy.code == 4 and "cannot reach origin" in offline_deploy.err
    away.rename(team.remote)  # the remote is back
    assert "rollback edge" not in remote_journal(team)

    assert run(lbctl, alice, "log", "edge").code == 0  # any command that reads state pushes what waited

    assert "rollback edge: good" in remote_journal(team)
    rollback_commit = git(alice, "rev-parse", "HEAD").strip()
    assert git(team.remote, "rev-parse", "refs/heads/main").strip() == rollback_commit
    fresh = team.clone("fresh", "Carol")
    assert status_of(lbctl, fresh, "edge")["live"] == rollback_commit


def test_sync_off_and_no_remote_leave_the_store_local(team: Team, lbctl: LbctlRunner) -> None:
    alice = team.clone("alice", "Alice")
    with (alice / "lbctl.toml").open("a") as f:
        f.write('\n[store]\nsync = "off"\n')
    git(alice, "commit", "-qam", "sync off")
    commit_edit(alice, EDGE_SOURCE, team.edge_config(weights={"web1": 2, "web2": 1, "web3": 1}), "2:1:1", push=False)
    assert run(lbctl, alice, "deploy", "edge", "--yes").code == 0
    assert "refs/lbctl" not in git(team.remote, "for-each-ref")
    assert "2:1:1" not in git(team.remote, "log", "--format=%s", "main")
    bad = run(lbctl, alice, "status", "--offline")
    assert bad.code == 0 and "warning" not in bad.err


# -- GitOps through CI -----------------------------------------------------------------------

PROTECT_MAIN = """#!/bin/sh
while read old new ref; do
    if [ "$ref" = refs/heads/main ] && [ -e protected ]; then echo "main is protected" >&2; exit 1; fi
done
"""


def ci_checkout(ci: Path, ref: str) -> None:
    """As a CI runner does: fetch, then a detached checkout of the commit to judge."""
    git(ci, "fetch", "-q", "origin")
    git(ci, "checkout", "-q", "--detach", ref)


def test_ci_plan_refuses_a_route_to_a_one_server_pool_and_apply_deploys_only_what_changed(
    strict_team: Team, lbctl: LbctlRunner
) -> None:
    team = strict_team
    alice, ci = team.clone("alice", "Alice"), team.clone("ci", "CI")
    # a pull request that routes www to a new one-server pool
    solo = haproxy_config(
        frontend_port=team.edge.fe_port,
        backends=team.backends.ports,
        stats_socket=team.edge.haproxy.stats_socket,
        route_to="www-solo",
        extra_backends=f"\nbackend www-solo\n    server solo 127.0.0.1:{team.backends.ports['web1']} check\n",
    )
    git(alice, "checkout", "-qb", "route-www")
    commit_edit(alice, EDGE_SOURCE, solo, "route www to a one-server pool", push=False)
    git(alice, "push", "-q", "origin", "route-www")
    ci_checkout(ci, "origin/route-www")

    plan = run(lbctl, ci, "ci", "plan", "--base", "origin/main")

    assert plan.code == 3, plan.out + plan.err
    assert "### ❌ `edge`: a gate refuses it (exit 3)" in plan.out
    assert "`api`" not in plan.out  # only the targets whose files changed
    assert "- ❌ min_active_servers: 1 active server(s), the policy wants at least 2" in plan.out, plan.out
    assert "default_backend web → www-solo" in plan.out and "plan checksum `" in plan.out
    assert "default_backend web" in team.edge.live_text()  # a plan changes nothing

    # a good pull request for api, merged
    git(alice, "checkout", "-q", "main")
    git(alice, "checkout", "-qb", "tune-api")
    commit_edit(alice, API_SOURCE, team.api_config(weights={"web1": 2, "web2": 1, "web3": 1}), "api 2:1:1", push=False)
    git(alice, "push", "-q", "origin", "tune-api")
    ci_checkout(ci, "origin/tune-api")
    good = run(lbctl, ci, "ci", "plan", "--base", "origin/main")
    assert good.code == 0 and "### ✅ `api`: would deploy" in good.out and "`edge`" not in good.out, good.out
    before = git(alice, "rev-parse", "main").strip()
    git(alice, "checkout", "-q", "main")
    git(alice, "merge", "-q", "--no-ff", "-m", "Merge tune-api", "tune-api")
    git(alice, "push", "-q", "origin", "main")
    ci_checkout(ci, "origin/main")
    edge_before = team.edge.live_text()

    applied = run(lbctl, ci, "ci", "apply", "--base", before)

    assert applied.code == 0, applied.out + applied.err
    assert "### ✅ `api`: deployed, verified good" in applied.out and "`edge`" not in applied.out
    assert "weight 2" in team.api.config.read_text() and team.edge.live_text() == edge_before
    # commit-confirm is on in CI, and a verified change is confirmed at once: nothing stays pending
    journal = remote_journal(team)
    assert journal.count("deploy api: pending-confirm") == 1 and journal.count("confirm api: confirmed") == 1
    assert journal.index("confirm api: confirmed") < journal.index("deploy api: pending-confirm")  # newest first
    home = team.api.config.parent / f".{team.api.config.name}.lbctl-watchdog"
    assert home.is_dir() and not list(home.iterdir())  # it was armed, then disarmed: no watchdog left waiting
    again = run(lbctl, ci, "ci", "apply", "--base", before)
    assert again.code == 0 and "already live, nothing to do" in again.out, again.out
    assert remote_journal(team).count("deploy api") == 1
    assert status_of(lbctl, alice, "api")["status"] == "good"  # the team sees what CI did
    # a pull request that changes only api's table in lbctl.toml: api is planned, its config unchanged
    git(alice, "checkout", "-qb", "api-policy")
    with (alice / "lbctl.toml").open("a") as f:
        f.write("\n[targets.api.safety]\nmax_traffic_moved = 0.4\n")
    git(alice, "commit", "-qam", "api: tighter blast radius")
    git(alice, "push", "-q", "origin", "api-policy")
    ci_checkout(ci, "origin/api-policy")
    table = run(lbctl, ci, "ci", "plan", "--base", "origin/main")
    assert table.code == 0 and "### ✅ `api`: already live, nothing to do" in table.out, table.out
    assert "`edge`" not in table.out


def test_ci_apply_never_redeploys_a_failed_revision_and_its_rollback_goes_to_a_branch(
    team: Team, lbctl: LbctlRunner
) -> None:
    alice, ci = team.clone("alice", "Alice"), team.clone("ci", "CI")
    before = git(alice, "rev-parse", "HEAD").strip()
    # A narrow rule (only `/`, the health check's path) moves no measurable share of traffic, so it
    # passes every gate before the push; verification then sees the check fail.
    broken = team.edge_config().replace(
        "frontend www\n", "frontend www\n    http-request deny deny_status 500 if { path / }\n"
    )
    bad = commit_edit(alice, EDGE_SOURCE, broken, "deny the health path (passes every gate)")
    hook = team.remote / "hooks" / "pre-receive"
    hook.write_text(PROTECT_MAIN)
    hook.chmod(0o755)
    (team.remote / "protected").write_text("")
    ci_checkout(ci, "origin/main")
    live = team.edge.live_text()

    applied = run(lbctl, ci, "ci", "apply", "--base", before)

    assert applied.code == 1, applied.out + applied.err
    assert "failed verification and was rolled back" in applied.out
    assert team.edge.live_text() == live
    assert "refused main" in applied.err and "lbctl/rollback/edge" in applied.err
    side = git(team.remote, "log", "-1", "--format=%B", "refs/heads/lbctl/rollback/edge")
    assert f"Lbctl-Rollback-Of: {bad}" in side
    assert git(team.remote, "rev-parse", "refs/heads/main").strip() == bad  # main untouched, never forced
    ci_checkout(ci, "origin/main")  # the job re-run: a fresh checkout of the same merge
    again = run(lbctl, ci, "ci", "apply", "--base", before)
    assert again.code == 1 and "failed on edge before: not deployed again" in again.out, again.out
    assert remote_journal(team).count("deploy edge: failed") == 1


def test_ci_apply_confirm_within_0_deploys_without_commit_confirm(team: Team, lbctl: LbctlRunner) -> None:
    alice, ci = team.clone("alice", "Alice"), team.clone("ci", "CI")
    before = git(alice, "rev-parse", "HEAD").strip()
    commit_edit(alice, API_SOURCE, team.api_config(weights={"web1": 3, "web2": 1, "web3": 1}), "api 3:1:1")
    ci_checkout(ci, "origin/main")

    applied = run(lbctl, ci, "ci", "apply", "--base", before, "--confirm-within", "0")

    assert applied.code == 0, applied.out + applied.err
    assert "### ✅ `api`: deployed, verified good" in applied.out and "confirmed" not in applied.out
    journal = remote_journal(team)
    assert journal.count("deploy api: good") == 1 and "pending-confirm" not in journal
    assert status_of(lbctl, alice, "api")["status"] == "good"


# -- docs/ci.md's examples, as written -------------------------------------------------------


def ci_lines(block: str, command: str) -> list[str]:
    """The lines of a CI example that a runner would execute for `lbctl ci COMMAND`'s job: its
    `git config` identity and its `lbctl ci COMMAND` line (YAML list markers removed)."""
    found = []
    for raw in block.splitlines():
        line = raw.strip().removeprefix("- ")
        if line.startswith("git config user.") or line.startswith(f"lbctl ci {command} "):
            found.append(line)
    return found


def test_the_ci_examples_in_the_docs_run_as_written(team: Team, tmp_path: Path) -> None:
    import re

    doc = (Path(__file__).parents[2] / "docs" / "ci.md").read_text()
    blocks = re.findall(r"^```yaml\n(.*?)^```", doc, flags=re.S | re.M)
    assert len(blocks) == 2 and "concurrency:" in blocks[0] and "resource_group:" in blocks[1]
    alice, ci = team.clone("alice", "Alice"), team.clone("ci", "CI")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    for number, block in enumerate(blocks):
        plan_lines, apply_lines = ci_lines(block, "plan"), ci_lines(block, "apply")
        assert any("lbctl ci plan" in line for line in plan_lines), block
        assert any("lbctl ci apply" in line for line in apply_lines), block
        # a pull request for api, then its merge
        branch = f"tune-api-{number}"
        git(alice, "checkout", "-q", "main")
        git(alice, "pull", "-q")
        git(alice, "checkout", "-qb", branch)
        weights = {"web1": 2 + number, "web2": 1, "web3": 1}
        commit_edit(alice, API_SOURCE, team.api_config(weights=weights), f"api {weights}", push=False)
        git(alice, "push", "-q", "origin", branch)
        base = git(alice, "rev-parse", "main").strip()
        ci_checkout(ci, f"origin/{branch}")
        for line in plan_lines:
            done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", line], cwd=ci, env={**env, "LBCTL_BASE": base})
            assert done.returncode == 0, line
        assert "### ✅ `api`: would deploy" in (ci / "lbctl-plan.md").read_text()
        (ci / "lbctl-plan.md").unlink()
        git(alice, "checkout", "-q", "main")
        git(alice, "merge", "-q", "--no-ff", "-m", f"Merge {branch}", branch)
        git(alice, "push", "-q", "origin", "main")
        ci_checkout(ci, "origin/main")
        for line in apply_lines:
            done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", line], cwd=ci, env={**env, "LBCTL_BASE": base})
            assert done.returncode == 0, line
        assert f"weight {2 + number}" in team.api.config.read_text()
    journal = remote_journal(team)
    assert journal.count("deploy api: pending-confirm") == 2 and journal.count("confirm api: confirmed") == 2
    assert "deployed, verified good" in (tmp_path / "summary.md").read_text()


def test_a_lease_is_renewed_while_held_and_an_expired_one_can_be_taken_over(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from lbctl.store import lease
    from lbctl.store.workspace import open_workspace

    alice, bob = team.clone("alice", "Alice"), team.clone("bob", "Bob")
    ws = open_workspace(str(alice))

    def remote_lease() -> lease.Lease | None:
        sha = git(team.remote, "for-each-ref", "--format=%(objectname)", "refs/lbctl/locks/edge").strip()
        if not sha:
            return None
        body = json.loads(git(team.remote, "log", "-1", "--format=%B", sha))
        return lease.Lease("edge", body["holder"], body["operation"], body["host"], body["expires"], sha)

    monkeypatch.setattr(lease, "RENEW_EVERY", 0.3)
    monkeypatch.setattr(lease, "TTL_SECONDS", 2.0)
    with lease.held(ws, "edge", "deploy"):
        first = remote_lease()
        assert first is not None and first.holder == "Alice <alice@example.com>"
        deadline = time.monotonic() + 20
        while (now := remote_lease()) is not None and now.sha == first.sha and time.monotonic() < deadline:
            time.sleep(0.1)
        assert now is not None and now.sha != first.sha and now.expires >= first.expires  # renewed in place
    assert remote_lease() is None  # released with the operation

    # a holder that died: its lease stays on the remote until it expires
    monkeypatch.setattr(lease, "TTL_SECONDS", -1.0)
    dead = lease._write(ws, "edge", "rollback", None)
    lease._swap(ws, ws_remote(ws), "edge", dead, None)
    monkeypatch.setattr(lease, "TTL_SECONDS", 60.0)
    with lease.held(open_workspace(str(bob)), "edge", "deploy") as taken:
        assert taken is not None and taken.lease.holder == "Bob <bob@example.com>"
        current = remote_lease()
        assert current is not None and current.holder == "Bob <bob@example.com>"


def ws_remote(ws: object) -> object:
    from lbctl.store.sync import remote_of

    found = remote_of(ws)  # type: ignore[arg-type]
    assert found is not None
    return found


def test_a_remote_that_does_not_answer_costs_its_timeout_once(
    team: Team, lbctl: LbctlRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = team.clone("alice", "Alice")
    with (alice / "lbctl.toml").open("a") as f:
        f.write("\n[store]\ntimeout = 1\n")
    git(alice, "commit", "-qam", "a 1 s budget for the remote")
    commit_edit(alice, EDGE_SOURCE, team.edge_config(weights={"web1": 2, "web2": 1, "web3": 1}), "2:1:1")
    assert run(lbctl, alice, "deploy", "edge", "--yes").code == 0
    commit_edit(alice, EDGE_SOURCE, team.edge_config(weights={"web1": 1, "web2": 1, "web3": 2}), "1:1:2")
    assert run(lbctl, alice, "deploy", "edge", "--yes").code == 0
    # the remote now hangs: an ssh that never answers (the network is down)
    calls = tmp_path / "ssh-calls"
    hang = tmp_path / "hanging-ssh"
    hang.write_text(f"#!/bin/sh\necho call >> {calls}\nexec sleep 5\n")
    hang.chmod(0o755)
    git(alice, "remote", "set-url", "origin", f"git@127.0.0.1:{team.remote}")
    monkeypatch.setenv("GIT_SSH_COMMAND", str(hang))

    back = run(lbctl, alice, "rollback", "edge", "--to", "previous", "--yes")

    assert back.code == 0, back.err
    assert "no answer within 1 s" in back.err and "the next lbctl command pushes them" in back.err
    assert calls.read_text().count("call") == 1  # one wait for the remote, not one per step
    assert "weight 2" in team.edge.live_text()
    monkeypatch.delenv("GIT_SSH_COMMAND")
    git(alice, "remote", "set-url", "origin", str(team.remote))
    assert run(lbctl, alice, "status", "edge", "--offline").code == 0
    assert "rollback edge: good" in remote_journal(team)


def test_pull_pushes_what_it_records(team: Team, lbctl: LbctlRunner) -> None:
    alice = team.clone("alice", "Alice")
    # a hand edit on the LB, recorded from Alice's clone
    team.edge.haproxy.config.write_text(team.edge_config(weights={"web1": 5, "web2": 1, "web3": 1}))
    pulled = run(lbctl, alice, "pull", "edge", "-m", "record the hand edit")
    assert pulled.code == 0, pulled.err
    assert "pull edge" in remote_journal(team)
    assert git(team.remote, "log", "-1", "--format=%s", "main").strip() == "record the hand edit"
    fresh = team.clone("fresh", "Carol")
    assert status_of(lbctl, fresh, "edge")["live"] == git(alice, "rev-parse", "HEAD").strip()
