"""An nginx config that includes other store files deploys as one tree, locally and over ssh.

The lab's nginx runs `conf/nginx.conf`, which includes `upstreams/*.conf` (a glob) and, inside
its location, `route.conf` (which upstream gets the traffic); `mime.types` is the host's own
file, not in the store. Each backend answers with its name, so what nginx serves says which
tree it runs. Every assertion reads real files and real answers.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lbctl.lab.processes import Backends, free_port
from lbctl.lab.webservers import Nginx, nginx_preamble, sole_listener
from tests.conftest import LbctlRunner, git
from tests.integration.test_lifecycle import status_json
from tests.ssh.conftest import Sshd

SOURCE_DIR = "configs/web"  # not lbctl init's configs/edge


@dataclass
class TreeLab:
    nginx: Nginx
    backends: Backends
    fe_port: int
    dead_port: int

    @property
    def conf(self) -> Path:
        return self.nginx.config.parent

    def main(self, comment: str = "") -> str:
        return f"""\
{nginx_preamble()}
    include mime.types;
    include upstreams/*.conf;
    {comment}
    server {{
        listen 127.0.0.1:{self.fe_port};
        location / {{
            include route.conf;
        }}
    }}
}}
"""

    def tree(self) -> dict[str, str]:
        """The first tree: traffic to `web` (web1); `other` (web2) and `maintenance` (dead) stand by."""
        ports = self.backends.ports
        return {
            "nginx.conf": self.main(),
            "route.conf": "proxy_pass http://web;\n",
            "upstreams/web.conf": f"upstream web {{\n    server 127.0.0.1:{ports['web1']};\n}}\n",
            "upstreams/other.conf": f"upstream other {{\n    server 127.0.0.1:{ports['web2']};\n}}\n",
            "upstreams/maintenance.conf": f"upstream maintenance {{\n    server 127.0.0.1:{self.dead_port};\n}}\n",
        }

    def live_files(self) -> dict[str, bytes]:
        """Every file under the conf directory, lbctl's kept copies and lock aside."""
        found = {}
        for path in sorted(self.conf.rglob("*")):
            rel = path.relative_to(self.conf).as_posix()
            if path.is_file() and ".lbctl-prev" not in rel and ".lbctl.lock" not in rel:
                found[rel] = path.read_bytes()
        return found

    def leftovers(self) -> list[Path]:
        return [p for p in self.conf.rglob("*") if "lbctl-stage" in p.name or "lbctl-restore" in p.name]

    def serves(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.fe_port, timeout=2)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read().decode().strip()
            return body if response.status == 200 else f"HTTP {response.status}"
        finally:
            conn.close()


@pytest.fixture
def tree_lab(tmp_path: Path, backends: Backends) -> Iterator[TreeLab]:
    prefix = tmp_path / "nginx"
    lab = TreeLab(None, backends, free_port(), free_port())  # type: ignore[arg-type]
    conf = prefix / "conf"
    for rel, text in lab.tree().items():
        if rel != "nginx.conf":
            (conf / rel).parent.mkdir(parents=True, exist_ok=True)
            (conf / rel).write_text(text)
    (conf / "mime.types").write_text("types {\n    text/html html;\n}\n")  # the host's, not the store's
    lab.nginx = Nginx.start(prefix, lab.tree()["nginx.conf"], port=lab.fe_port)
    try:
        yield lab
        assert lab.nginx.proc is not None
        sole_listener(lab.fe_port, lab.nginx.proc.pid)
    finally:
        lab.nginx.stop()


@pytest.fixture(params=["local", "ssh"])
def transport(request: pytest.FixtureRequest) -> str:
    if request.param == "ssh":
        server: Sshd = request.getfixturevalue("sshd")
        return (
            f'transport = "ssh"\nhost = "127.0.0.1"\nport = {server.port}\n'
            f'identity_file = "{server.client_key}"\nknown_hosts = "{server.known_hosts}"'
        )
    return 'transport = "local"'


@pytest.fixture
def store(
    tmp_path: Path, tree_lab: TreeLab, transport: str, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A store whose target `edge` has the lab's first tree; lbctl has deployed it once."""
    root = tmp_path / "store"
    assert lbctl("init", str(root)).code == 0
    (root / "lbctl.toml").write_text(f"""\
[defaults]
verify_seconds = 1
check_interval = 0.25
retries = 2

[targets.edge]
kind = "nginx"
{transport}
source = "{SOURCE_DIR}/nginx.conf"
path = "{tree_lab.nginx.config}"
prefix = "{tree_lab.nginx.prefix}"

# These tests move traffic between upstreams on purpose (a new file, a cutover, a dead pool):
# the routing gate would refuse each as a whole upstream's traffic moved; they test trees.
[targets.edge.safety]
max_traffic_moved = 1.0

[[targets.edge.checks]]
type = "http"
url = "http://127.0.0.1:{tree_lab.fe_port}/"
probes = 2
""")
    write_tree(root, tree_lab.tree())
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "Add target edge")
    monkeypatch.chdir(root)
    result = lbctl("deploy", "edge", "--yes")
    assert result.code == 0, result.out + result.err
    return root


def write_tree(root: Path, files: dict[str, str | None]) -> None:
    for rel, text in files.items():
        path = root / SOURCE_DIR / rel
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


def commit(store: Path, files: dict[str, str | None], message: str) -> str:
    write_tree(store, files)
    git(store, "add", "-A")
    git(store, "commit", "-q", "-m", message)
    return git(store, "rev-parse", "HEAD").strip()


def store_tree(store: Path) -> dict[str, bytes]:
    base = store / SOURCE_DIR
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def host_view(lab: TreeLab, store: Path) -> dict[str, bytes]:
    """What the live directory holds of the store's tree, plus the host's own mime.types."""
    return {rel: data for rel, data in lab.live_files().items() if rel in store_tree(store) or rel == "mime.types"}


def last_event(lbctl: LbctlRunner) -> dict:  # type: ignore[type-arg]
    return json.loads(lbctl("log", "edge", "--json").out)["events"][0]  # type: ignore[no-any-return]


def test_a_change_only_in_an_included_file_deploys_and_nginx_serves_it(
    store: Path, tree_lab: TreeLab, lbctl: LbctlRunner
) -> None:
    assert tree_lab.serves() == "web1"
    before = last_event(lbctl)["to_rev"]
    ports = tree_lab.backends.ports
    sha = commit(
        store,
        {
            "route.conf": "proxy_pass http://extra;\n",  # main untouched: not a no-op
            "upstreams/extra.conf": f"upstream extra {{\n    server 127.0.0.1:{ports['web3']};\n}}\n",
        },
        "Send traffic to a new upstream, in a new included file",
    )
    preview = lbctl("diff", "edge", "--format", "json", "--exit-code")  # live revision vs HEAD, includes followed
    assert preview.code == 1 and "extra" in preview.out, preview.out + preview.err

    result = lbctl("deploy", "edge", "--yes")

    assert result.code == 0, result.out + result.err
    assert "nothing to do" not in result.out
    assert tree_lab.serves() == "web3"
    live = tree_lab.live_files()
    for rel, data in store_tree(store).items():
        assert live[rel] == data, rel  # every file of the tree, the new one included
    assert not tree_lab.leftovers()
    event = last_event(lbctl)
    assert event["verdict"] == "good" and event["to_rev"] == sha != before
    assert [s["name"] for s in event["stages"]].count("reload") == 1  # one reload for the whole tree
    status = status_json(lbctl)
    assert status["drift"] == "none" and status["live"] == sha
    assert lbctl("deploy", "edge", "--yes").out.count("nothing to do") == 1  # now it is


def test_a_bad_included_file_is_refused_with_nothing_changed(
    store: Path, tree_lab: TreeLab, lbctl: LbctlRunner
) -> None:
    files_before = tree_lab.live_files()
    workers_before = tree_lab.nginx.workers()
    good = git(store, "rev-parse", "HEAD").strip()
    commit(
        store,
        {
            "route.conf": "proxy_passs_typo on;\nproxy_pass http://other;\n",  # lbctl parses it, nginx -t does not
            "upstreams/new.conf": "upstream fresh {\n    server 127.0.0.1:9;\n}\n",
        },
        "A typo in an included file",
    )

    result = lbctl("deploy", "edge", "--yes")

    assert result.code == 3, result.out + result.err
    assert "rejected the candidate config" in result.err and "nothing was changed" in result.err
    assert "configs/web/route.conf:1" in result.err  # nginx's message, naming the store's file and line
    assert "lbctl-stage" not in result.err
    assert tree_lab.live_files() == files_before  # byte for byte, and no new file
    assert not tree_lab.leftovers()
    assert tree_lab.nginx.workers() == workers_before  # no reload
    assert tree_lab.serves() == "web1"
    assert status_json(lbctl)["live"] == good


def test_a_failed_check_restores_every_file_and_removes_new_ones(
    store: Path, tree_lab: TreeLab, lbctl: LbctlRunner
) -> None:
    live_before, store_before = host_view(tree_lab, store), store_tree(store)
    bad = commit(
        store,
        {
            "route.conf": "proxy_pass http://maintenance;\n",  # a pool whose server is down
            "upstreams/spare.conf": f"upstream spare {{\n    server 127.0.0.1:{tree_lab.dead_port};\n}}\n",
        },
        "Route to maintenance",
    )

    result = lbctl("deploy", "edge", "--yes")

    assert result.code == 1, result.out + result.err
    assert tree_lab.serves() == "web1"  # nginx runs the old tree again
    assert host_view(tree_lab, store) == live_before
    assert not (tree_lab.conf / "upstreams" / "spare.conf").exists()  # the new include is gone
    assert not tree_lab.leftovers()
    assert store_tree(store) == store_before  # the store says what is live: spare.conf deleted
    status = status_json(lbctl)
    assert status["status"] == "good" and status["drift"] == "none" and bad in status["bad"]


def test_rollback_puts_every_file_of_an_older_revision_back(store: Path, tree_lab: TreeLab, lbctl: LbctlRunner) -> None:
    first = git(store, "rev-parse", "HEAD").strip()
    first_tree = store_tree(store)
    ports = tree_lab.backends.ports
    commit(
        store,
        {
            "route.conf": "proxy_pass http://extra;\n",
            "upstreams/extra.conf": f"upstream extra {{\n    server 127.0.0.1:{ports['web3']};\n}}\n",
        },
        "Traffic to web3 through a new file",
    )
    assert lbctl("deploy", "edge", "--yes").code == 0
    second_tree = store_tree(store)
    commit(store, {"nginx.conf": tree_lab.main("# main changed too"), "upstreams/other.conf": None}, "Tidy")
    assert lbctl("deploy", "edge", "--yes").code == 0
    assert tree_lab.serves() == "web3"

    result = lbctl("rollback", "edge", "--to", first[:12], "--yes")

    assert result.code == 0, result.out + result.err
    assert tree_lab.serves() == "web1"
    assert store_tree(store) == first_tree  # a forward commit with every file of `first`
    assert host_view(tree_lab, store) == {**first_tree, "mime.types": (tree_lab.conf / "mime.types").read_bytes()}
    assert not (tree_lab.conf / "upstreams" / "extra.conf").exists()
    assert (tree_lab.conf / "upstreams" / "other.conf").exists()  # removed by "Tidy", back now
    assert "Lbctl-Restores: " + first in git(store, "log", "-1", "--format=%B")
    assert status_json(lbctl)["drift"] == "none"

    # "previous" skips "Tidy", which the rollback marked bad: back to the second tree.
    assert lbctl("rollback", "edge", "--to", "previous", "--yes").code == 0
    assert tree_lab.serves() == "web3"
    assert store_tree(store) == second_tree
    assert {rel: data for rel, data in tree_lab.live_files().items() if rel in second_tree} == second_tree


def test_a_hand_edit_of_an_included_file_is_drift(store: Path, tree_lab: TreeLab, lbctl: LbctlRunner) -> None:
    web = tree_lab.conf / "upstreams" / "web.conf"
    web.write_text(web.read_text().replace("server", "server 127.0.0.1:1 backup;\n    server"))

    assert status_json(lbctl)["drift"] == "drifted"
    assert lbctl("diff", "edge", "--live", "--exit-code").code == 1
    commit(store, {"route.conf": "proxy_pass http://other;\n"}, "Traffic to web2")
    files_before = tree_lab.live_files()
    refused = lbctl("deploy", "edge", "--yes")
    assert refused.code == 4, refused.out + refused.err
    assert "upstreams/web.conf was changed on the LB" in refused.err
    assert tree_lab.live_files() == files_before

    assert lbctl("pull", "edge").code == 0  # record the hand edit: every file of the tree
    assert (store / SOURCE_DIR / "upstreams" / "web.conf").read_bytes() == web.read_bytes()
    assert (store / SOURCE_DIR / "route.conf").read_text() == "proxy_pass http://web;\n"  # what runs
    assert status_json(lbctl)["drift"] == "none"


def test_deploy_file_replaces_the_main_file_and_takes_the_includes_from_the_store(
    store: Path, tree_lab: TreeLab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    commit(store, {"route.conf": "proxy_pass http://other;\n"}, "Traffic to web2")  # not deployed yet
    main = tmp_path / "main.conf"
    main.write_text(tree_lab.main("# from --file"))

    result = lbctl("deploy", "edge", "--file", str(main), "--yes")

    assert result.code == 0, result.out + result.err
    assert tree_lab.serves() == "web2"  # the store's route.conf went with it
    assert (tree_lab.conf / "nginx.conf").read_text() == main.read_text()
    changed = git(store, "show", "--name-only", "--format=", "HEAD").split()
    assert changed == [f"{SOURCE_DIR}/nginx.conf"]  # the commit holds F only
    assert status_json(lbctl)["drift"] == "none"
