"""`rollback @edge`, `status @edge`, `diff @edge`, `check @edge`, and the group settings in lbctl.toml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbctl.fleet.plan import waves
from tests.conftest import LbctlRunner
from tests.fleet.conftest import FleetFactory


def test_rollback_puts_every_member_back_on_its_own_revision(make_fleet: FleetFactory, lbctl: LbctlRunner) -> None:
    fleet = make_fleet(3, rollout='batches = ["100%"]')
    first = fleet.commit("Add a spare backend", spare=True)
    assert lbctl("deploy", "@edge", "--yes").code == 0
    fleet.commit("Drop the aux listener", spare=True, aux=False)
    assert lbctl("deploy", "@edge", "--yes").code == 0
    assert fleet.live("edge2") == fleet.config("edge2", spare=True, aux=False)

    assert lbctl("check", "@edge").code == 0
    diff = lbctl("diff", "@edge", "HEAD~1", "HEAD", "--exit-code")
    assert diff.code == 1 and diff.out.count("== edge") == 3

    result = lbctl("rollback", "@edge", "--to", "previous", "--yes", "--json")

    assert result.code == 0, result.out + result.err
    data = json.loads(result.out)
    assert {m["name"]: m["verdict"] for m in data["members"]} == {f"edge{i}": "good" for i in (1, 2, 3)}
    for name in fleet.names:
        assert fleet.live(name) == fleet.config(name, spare=True)  # the first rollout's config
        assert fleet.state(name).status == "good"
    assert first  # the store moved forward (a rollback is a new commit)
    again = json.loads(lbctl("rollback", "@edge", "--to", "last-good", "--yes", "--json").out)
    assert again["exit_code"] == 0 and {m["verdict"] for m in again["members"]} == {"unchanged"}
    status = lbctl("status", "@edge", "--json")
    assert [t["target"] for t in json.loads(status.out)["targets"]] == fleet.names
    assert "rollback-good" in lbctl("log", "@edge").out


def test_waves_cut_the_canary_then_the_batches() -> None:
    names = [f"e{i}" for i in range(1, 11)]
    assert waves(names, 1, ["25%", "100%"]) == (("e1",), ("e2", "e3"), tuple(names[3:]))
    assert waves(names, 0, ["5"]) == (tuple(names[:5]), tuple(names[5:]))
    assert waves(names[:2], 3, ["100%"]) == (("e1", "e2"),)


def test_a_glob_lists_members_in_natural_order() -> None:
    from lbctl.config.groups import _natural

    assert sorted(["edge10", "edge2", "edge1", "core"], key=_natural) == ["core", "edge1", "edge2", "edge10"]


def test_group_settings_are_validated_with_key_and_line(tmp_path: Path, lbctl: LbctlRunner) -> None:
    from lbctl.config import load
    from lbctl.errors import ConfigError

    (tmp_path / "a.cfg").write_text("")
    base = (
        '[targets.edge1]\nkind = "haproxy"\nsource = "a.cfg"\npath = "/tmp/x.cfg"\nreload = "true"\n'
        "confirm_reload = false\n\n[groups.edge]\n"
    )
    (tmp_path / "lbctl.toml").write_text(base + 'targets = ["edge*"]\n[groups.edge.rollout]\nbatches = ["120%"]\n')
    with pytest.raises(ConfigError, match=r"lbctl.toml:\d+: `groups.edge.rollout.batches.0`"):
        load(tmp_path / "lbctl.toml")
    (tmp_path / "lbctl.toml").write_text(base + 'targets = ["edge1", "core*"]\n')
    with pytest.raises(ConfigError, match="'core\\*' matches no target"):
        load(tmp_path / "lbctl.toml")
    (tmp_path / "lbctl.toml").write_text(base + 'targets = ["edge1"]\n[groups.edge.members.edge9]\npath = "/x"\n')
    with pytest.raises(ConfigError, match="edge9"):
        load(tmp_path / "lbctl.toml")
    (tmp_path / "lbctl.toml").write_text(base + 'targets = ["edge1"]\n[groups.edge.rollout]\non_failure = "pray"\n')
    with pytest.raises(ConfigError, match="on_failure"):
        load(tmp_path / "lbctl.toml")


def test_a_fleet_with_a_team_remote_takes_each_lease_and_pushes(make_fleet: FleetFactory, lbctl: LbctlRunner) -> None:
    import subprocess

    from tests.fleet.conftest import git

    fleet = make_fleet(2, rollout='batches = ["100%"]')
    remote = fleet.store.parent / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(fleet.store, "remote", "add", "origin", str(remote))
    git(fleet.store, "push", "-q", "-u", "origin", "HEAD")
    git(fleet.store, "push", "-q", "origin", "refs/lbctl/*:refs/lbctl/*")
    head = fleet.commit("Add a spare backend", spare=True)

    result = lbctl("deploy", "@edge", "--yes")

    assert result.code == 0, result.out + result.err
    assert git(remote, "rev-parse", "HEAD").strip() == head  # the branch was pushed
    journal = git(remote, "log", "--format=%s", "refs/lbctl/journal")
    assert "rollout @edge: good" in journal and "confirm edge1: confirmed" in journal
    assert not git(remote, "for-each-ref", "refs/lbctl/locks").strip()  # every lease released


def test_rollback_dry_run_says_nothing_changed(make_fleet: FleetFactory, lbctl: LbctlRunner) -> None:
    fleet = make_fleet(2, rollout='batches = ["100%"]')
    fleet.commit("Add a spare backend", spare=True)
    assert lbctl("deploy", "@edge", "--yes").code == 0
    before = {n: fleet.live(n) for n in fleet.names}

    result = lbctl("rollback", "@edge", "--to", "prev-1", "--dry-run")

    assert result.code == 0, result.out + result.err
    assert "dry run: nothing was changed on any member" in result.out
    assert "every member is at its" not in result.out
    assert {n: fleet.live(n) for n in fleet.names} == before


def test_rollback_to_a_typo_is_one_usage_error_before_any_member_is_touched(
    make_fleet: FleetFactory, lbctl: LbctlRunner
) -> None:
    fleet = make_fleet(2, rollout='batches = ["100%"]')
    fleet.commit("Add a spare backend", spare=True)
    assert lbctl("deploy", "@edge", "--yes").code == 0
    events = lbctl("log", "@edge", "--json").out

    result = lbctl("rollback", "@edge", "--to", "nonsense", "--yes")

    assert result.code == 2, result.out + result.err
    assert "unknown revision 'nonsense'" in result.err and "hint:" in result.err
    assert lbctl("log", "@edge", "--json").out == events  # no rollout recorded for a typo
    assert all(fleet.state(n).status == "good" for n in fleet.names)


def test_a_mixed_or_failed_restore_says_what_to_do() -> None:
    from lbctl.errors import ExitCode
    from lbctl.fleet.render import hint
    from lbctl.fleet.rollout import FleetResult

    mixed = hint(FleetResult("edge", "deploy", "mixed", ExitCode.FLEET_MIXED, "members differ", None))
    assert "`lbctl status @edge`" in mixed and "`lbctl rollback @edge --to last-good`" in mixed
    failed = hint(FleetResult("edge", "deploy", "restore-failed", ExitCode.ROLLBACK_FAILED, "a restore failed", None))
    assert failed.startswith("page a human")


def test_timeline_of_a_group_shows_its_rollouts(make_fleet: FleetFactory, lbctl: LbctlRunner) -> None:
    fleet = make_fleet(2, rollout='batches = ["100%"]')
    fleet.commit("Add a spare backend", spare=True)
    assert lbctl("deploy", "@edge", "--yes").code == 0

    group = json.loads(lbctl("timeline", "@edge", "--json").out)["entries"]
    every = json.loads(lbctl("timeline", "--json").out)["entries"]
    one = json.loads(lbctl("timeline", "edge1", "--json").out)["entries"]

    rollouts = [e for e in group if e["target"] == "@edge"]
    assert [e["kind"] for e in rollouts] == ["rollout"] and "good" in rollouts[0]["text"]
    assert {e["target"] for e in group} == {"@edge", "edge1", "edge2"}
    assert any(e["target"] == "@edge" for e in every)
    assert {e["target"] for e in one} == {"edge1"}
