"""The bundle a target deploys: which store files an nginx config includes, and its fingerprint."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from lbctl.config import Target
from lbctl.kinds import kind_for
from lbctl.store.bundle import Bundle, bundle_at, expand, pathspecs, revision_of, store_changes
from lbctl.store.journal import blob_id
from lbctl.store.repo import Store

MAIN = b"""\
events {}
http {
    include mime.types;
    include /etc/nginx/snippets/*.conf;
    include upstreams/*.conf;
    server {
        location / { include route.conf; }
    }
}
"""


def _target(kind: str = "nginx") -> Target:
    extra = {"master_socket": "/run/m.sock"} if kind == "haproxy" else {}
    return Target(
        name="web", kind=kind, transport="local", source="configs/web/nginx.conf", path="/etc/nginx/nginx.conf", **extra
    )


def _store(tmp_path: Path, files: dict[str, bytes]) -> Store:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    subprocess.run(["git", "-C", str(tmp_path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "tree"], check=True)
    return Store(tmp_path)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return _store(
        tmp_path,
        {
            "configs/web/nginx.conf": MAIN,
            "configs/web/route.conf": b"proxy_pass http://web;\n",
            "configs/web/upstreams/a.conf": b"upstream web { server 10.0.0.1; }\ninclude extra/*.conf;\n",
            "configs/web/upstreams/b.conf": b"upstream api { server 10.0.0.2; }\n",
            "configs/web/upstreams/.hidden.conf": b"not for nginx's *\n",
            "configs/web/upstreams/notes.txt": b"not *.conf\n",
            "configs/web/upstreams/deep/c.conf": b"* stops at /\n",
            "configs/web/extra/x.conf": b"# reached from a.conf, relative to the main file's directory\n",
            "configs/other/nginx.conf": b"# another target\n",
        },
    )


def test_includes_are_followed_in_the_store_as_nginx_would(store: Store) -> None:
    bundle = bundle_at(store, kind_for(_target()), _target(), "HEAD")
    assert bundle is not None
    # mime.types and the absolute include are the host's; dot files and deeper paths are not globbed.
    assert bundle.rels == ("extra/x.conf", "route.conf", "upstreams/a.conf", "upstreams/b.conf")
    assert bundle.main == MAIN


def test_a_single_file_fingerprint_is_the_file_itself() -> None:
    """Journals written before bundles keep matching: a file without includes is its own bytes."""
    kind = kind_for(_target())
    assert Bundle(b"events {}\n").blob(kind) == blob_id(b"events {}\n")
    tree = Bundle.of(b"events {}\n", {"a.conf": b"x"})
    assert tree.blob(kind) != blob_id(b"events {}\n")
    assert Bundle.of(b"events {}\n", {"a.conf": b"y"}).blob(kind) != tree.blob(kind)


def test_haproxy_targets_never_look_for_includes(store: Store) -> None:
    target = _target("haproxy")
    assert expand(store, kind_for(target), target, "HEAD", MAIN) == Bundle(MAIN)


def test_the_revision_of_a_tree_is_the_last_commit_touching_any_of_its_files(store: Store, tmp_path: Path) -> None:
    target, kind = _target(), kind_for(_target())
    first = store.resolve("HEAD")
    (tmp_path / "configs/other/nginx.conf").write_bytes(b"# unrelated\n")
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qam", "other"], check=True)
    assert revision_of(store, kind, target) == first
    (tmp_path / "configs/web/upstreams/z.conf").write_bytes(b"upstream z { server 10.0.0.9; }\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "new include"], check=True)
    assert revision_of(store, kind, target) == store.resolve("HEAD") != first
    bundle = bundle_at(store, kind, target, "HEAD")
    assert bundle is not None
    assert ":(glob)configs/web/upstreams/*.conf" in pathspecs(kind, target, bundle)


def test_committing_an_older_tree_deletes_files_it_did_not_have(store: Store) -> None:
    target, kind = _target(), kind_for(_target())
    older = Bundle.of(MAIN, {"route.conf": b"proxy_pass http://web;\n", "upstreams/a.conf": b"upstream web {}\n"})
    changes = store_changes(store, kind, target, older)
    assert changes["configs/web/upstreams/a.conf"] == b"upstream web {}\n"
    assert changes["configs/web/upstreams/b.conf"] is None  # the glob would pick it up otherwise
    assert "configs/web/upstreams/notes.txt" not in changes and "configs/web/extra/x.conf" not in changes
    sha = store.commit_files(changes, "older tree", {})
    assert bundle_at(store, kind, target, sha) == older


def test_a_target_can_opt_out_and_deploy_its_main_file_alone(store: Store) -> None:
    target = dataclasses.replace(_target(), follow_includes=False)
    assert bundle_at(store, kind_for(target), target, "HEAD") == Bundle(MAIN)
