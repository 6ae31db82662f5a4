"""`lbctl pull` adopts a running nginx: its main config and every file its includes read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbctl.lab.processes import Backends
from tests.conftest import LbctlRunner, git
from tests.kinds import test_nginx_tree
from tests.kinds.test_nginx_tree import SOURCE_DIR, TreeLab

tree_lab = test_nginx_tree.tree_lab  # the real nginx running a tree of included files


@pytest.fixture
def new_store(tmp_path: Path, tree_lab: TreeLab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store with target `edge` on the lab's nginx, and none of its files yet."""
    root = tmp_path / "store"
    assert lbctl("init", str(root)).code == 0
    (root / "lbctl.toml").write_text(f"""\
[defaults]
verify_seconds = 1
check_interval = 0.25
retries = 2

[targets.edge]
kind = "nginx"
transport = "local"
source = "{SOURCE_DIR}/nginx.conf"
path = "{tree_lab.nginx.config}"
prefix = "{tree_lab.nginx.prefix}"

[[targets.edge.checks]]
type = "http"
url = "http://127.0.0.1:{tree_lab.fe_port}/"
""")
    git(root, "commit", "-qam", "Add target edge")
    monkeypatch.chdir(root)
    return root


def stored(store: Path) -> dict[str, bytes]:
    base = store / SOURCE_DIR
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def test_pull_adopts_the_whole_tree_in_one_commit(new_store: Path, tree_lab: TreeLab, lbctl: LbctlRunner) -> None:
    before = int(git(new_store, "rev-list", "--count", "HEAD"))

    result = lbctl("pull", "edge", "--json")

    assert result.code == 0, result.err
    created = json.loads(result.out)["created"]
    live = tree_lab.live_files()
    assert stored(new_store) == live  # nginx.conf, route.conf, upstreams/*.conf and the host's mime.types
    assert {"nginx.conf", "route.conf", "upstreams/web.conf", "upstreams/other.conf"} <= set(live)
    assert sorted(created) == sorted(f"{SOURCE_DIR}/{rel}" for rel in live)
    assert int(git(new_store, "rev-list", "--count", "HEAD")) == before + 1
    assert git(new_store, "status", "--porcelain") == ""
    assert lbctl("diff", "edge", "--exit-code").code == 0
    status = json.loads(lbctl("status", "edge", "--json").out)["targets"][0]
    assert status["drift"] == "none"


def test_pull_records_an_included_file_added_on_the_lb(
    new_store: Path, tree_lab: TreeLab, lbctl: LbctlRunner, backends: Backends
) -> None:
    assert lbctl("pull", "edge").code == 0
    added = tree_lab.conf / "upstreams" / "api.conf"
    added.write_text(f"upstream api {{\n    server 127.0.0.1:{backends.ports['web3']};\n}}\n")

    result = lbctl("pull", "edge", "--json")

    assert result.code == 0, result.err
    assert json.loads(result.out)["created"] == [f"{SOURCE_DIR}/upstreams/api.conf"]
    assert (new_store / SOURCE_DIR / "upstreams" / "api.conf").read_bytes() == added.read_bytes()
    assert "upstreams/api.conf" in git(new_store, "show", "--name-only", "--format=", "HEAD")
