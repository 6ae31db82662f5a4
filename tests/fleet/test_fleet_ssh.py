"""A fleet over one real sshd: preflight, rollout and the consistent undo through the ssh transport."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbctl.lab.sshd import Sshd, start_sshd
from tests.conftest import LbctlRunner
from tests.fleet.conftest import FleetFactory


@pytest.fixture(scope="module")
def one_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()


def test_failure_on_member_2_over_ssh_puts_member_1_back_and_leaves_3(
    make_fleet: FleetFactory, lbctl: LbctlRunner, one_sshd: Sshd, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    fleet = make_fleet(3, rollout='batches = ["2", "100%"]', ssh=one_sshd)
    aux = fleet.aux_ports["edge2"]
    fleet.set_members(f'[groups.edge.members.edge2]\nchecks = [{{ type = "tcp", port = {aux}, timeout = 0.3 }}]\n')
    before = {n: (fleet.live(n), fleet.workers(n)) for n in fleet.names}
    fleet.commit("Drop the aux listener", aux=False)

    result = lbctl("deploy", "@edge", "--yes", "--json")

    assert result.code == 1, result.out + result.err
    runs = {m["name"]: m["verdict"] for m in json.loads(result.out)["members"]}
    assert runs == {"edge1": "restored", "edge2": "rolled-back", "edge3": "skipped"}
    assert fleet.live("edge1") == before["edge1"][0] and fleet.live("edge2") == before["edge2"][0]
    assert (fleet.live("edge3"), fleet.workers("edge3")) == before["edge3"]
    for name in ("edge1", "edge2"):
        assert fleet.state(name).status == "good"
