"""Concurrency, unreachable targets, damaged state and bad settings: clear exits, nothing lost."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from lbctl.lab.processes import free_port
from lbctl.store.journal import Event, Journal, TargetState, new_event_id, timestamp
from lbctl.store.repo import Store
from tests.conftest import Lab, LbctlRunner, git, target_toml, write


def _append_many(root: str, target: str, count: int, failures: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    journal = Journal(Store(Path(root)))
    lost = 0
    for _ in range(count):
        event = Event(new_event_id(), "deploy", target, "t", timestamp(), timestamp(), None, None, "good")
        try:
            journal.append(event, journal.state(target))
        except Exception:
            lost += 1
    failures.put(lost)


def test_parallel_appends_for_two_targets_lose_nothing(store: Path) -> None:
    failures: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    workers = [
        multiprocessing.Process(target=_append_many, args=(str(store), name, 25, failures)) for name in ("a", "b")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [failures.get(), failures.get()] == [0, 0]
    count = git(store, "rev-list", "--count", "refs/lbctl/journal").strip()
    assert count == "50"


def test_unreachable_target_is_exit_6_everywhere(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    closed = free_port()
    toml = (
        target_toml(lab)
        .replace('transport = "local"', f'transport = "ssh"\nhost = "127.0.0.1"\nport = {closed}\nretries = 0')
        .replace("retries = 2\n", "")
    )
    (store / "lbctl.toml").write_text(toml)
    git(store, "commit", "-qam", "an ssh target nobody answers for")
    new = write(tmp_path / "new.cfg", lab.config())
    for args in (["diff", "edge", "--live"], ["deploy", "edge", "--file", str(new), "--yes"]):
        result = lbctl(*args)
        assert result.code == 6, (args, result.err)
        assert "Traceback" not in result.err


def test_status_survives_a_live_revision_missing_from_the_store(store: Path, lbctl: LbctlRunner) -> None:
    journal = Journal(Store(store))
    state = TargetState("edge").moved_to("ab" * 20, None, "good", "e", timestamp())
    journal.append(
        Event(new_event_id(), "deploy", "edge", "t", timestamp(), timestamp(), None, "ab" * 20, "good"), state
    )
    result = lbctl("status", "edge", "--offline")
    assert result.code == 0 and "not in this store" in result.out


def test_badly_quoted_commands_are_config_errors(store: Path, lab: Lab, lbctl: LbctlRunner) -> None:
    toml = target_toml(lab).replace('stats_socket = "', 'reload = "sh -c \'echo reloaded"\nstats_socket = "')
    (store / "lbctl.toml").write_text(toml)
    result = lbctl("status", "--offline")
    assert result.code == 2 and "targets.edge.reload" in result.err and "quotes" in result.err


def test_previous_never_selects_a_revision_that_failed(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    first = write(tmp_path / "1.cfg", lab.config(weights={"web1": 10, "web2": 100, "web3": 100}))
    second = write(tmp_path / "2.cfg", lab.config(weights={"web1": 20, "web2": 100, "web3": 100}))
    assert lbctl("deploy", "edge", "--file", str(first), "--yes").code == 0
    assert lbctl("deploy", "edge", "--file", str(second), "--yes").code == 0
    bad = write(tmp_path / "bad.cfg", lab.config(route_to="maintenance"))
    assert lbctl("deploy", "edge", "--file", str(bad), "--yes", "--force").code == 1  # past the routing gate
    state = json.loads(lbctl("status", "edge", "--json", "--offline").out)["targets"][0]
    assert len(state["bad"]) == 1
    assert lbctl("rollback", "edge", "--to", "previous", "--yes").code == 0
    # not the failed one, nor the one the automatic rollback already restored: the one before
    web1 = next(line for line in lab.live_text().splitlines() if "server web1" in line)
    assert web1.endswith("weight 10"), web1
