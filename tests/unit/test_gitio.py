"""lbctl.store.gitio against git itself: the same refs, objects and trees as git reads and writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lbctl.store.gitio import Repo, git_dirs


def git(root: Path, *args: str, input: bytes | None = None) -> str:
    return subprocess.run(["git", "-C", str(root), *args], input=input, capture_output=True, check=True).stdout.decode()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "configs" / "edge").mkdir(parents=True)
    (root / "configs" / "edge" / "haproxy.cfg").write_text("global\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "lbctl.toml").write_text("[targets]\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "one")
    return root


def repo(root: Path) -> Repo:
    dirs = git_dirs(root)
    assert dirs is not None
    return Repo(root, *dirs)


def test_refs_loose_packed_symbolic_and_missing(root: Path) -> None:
    r = repo(root)
    head = git(root, "rev-parse", "HEAD").strip()
    assert r.ref("HEAD") == head and r.ref("refs/heads/main") == head
    git(root, "update-ref", "refs/lbctl/journal", head)
    git(root, "pack-refs", "--all")
    assert not (root / ".git" / "refs" / "lbctl" / "journal").exists()
    assert r.ref("refs/lbctl/journal") == head and r.ref("HEAD") == head
    assert r.ref("refs/lbctl/nothing") is None
    assert r.resolve("HEAD~0") == head and r.resolve("no-such-rev") is None


def test_unborn_head_is_none(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    assert repo(tmp_path).ref("HEAD") is None


def test_objects_read_loose_and_packed_as_git_does(root: Path) -> None:
    r = repo(root)
    assert r.file_at("HEAD", "configs/edge/haproxy.cfg") == b"global\n"
    git(root, "gc", "-q")
    assert not any(p.name != "pack" and p.name != "info" for p in (root / ".git" / "objects").iterdir())
    assert r.file_at("HEAD", "configs/edge/haproxy.cfg") == b"global\n"  # from the pack, via cat-file
    assert r.file_at("HEAD", "configs/edge") is None  # a directory is not a file
    assert r.file_at("HEAD", "configs/edge/haproxy.cfg/x") is None
    assert r.file_at("HEAD", "missing.cfg") is None
    assert r.file_at("0" * 40, "lbctl.toml") is None
    info = r.commit(git(root, "rev-parse", "HEAD").strip())
    assert info is not None and info.message == "one\n" and info.parents == ()
    r.close()


def test_written_objects_are_gits_objects(root: Path) -> None:
    r = repo(root)
    sha = r.write("blob", b"hello\n")
    assert sha == git(root, "hash-object", "--stdin", input=b"hello\n").strip()
    assert git(root, "cat-file", "-p", sha) == "hello\n"
    assert r.write("blob", b"hello\n") == sha  # again: the same object, nothing rewritten


def test_write_tree_matches_an_index_built_by_git(root: Path) -> None:
    r = repo(root)
    base = git(root, "rev-parse", "HEAD^{tree}").strip()
    files: dict[str, bytes | None] = {
        "configs/edge/haproxy.cfg": b"global\n  maxconn 10\n",
        "configs/new/upstreams/a.conf": b"server a;\n",
        "run.sh": b"#!/bin/sh\nexit 0\n",
        "lbctl.toml": None,
    }
    ours = r.write_tree(base, files)
    # The same change made by git on a scratch index.
    env = {"GIT_INDEX_FILE": str(root / ".git" / "scratch-index")}
    r.git("read-tree", base, env=env)
    for path, content in files.items():
        if content is None:
            r.git("update-index", "--force-remove", "--", path, env=env)
        else:
            blob = r.git("hash-object", "-w", "--stdin", input=content).strip()
            mode = "100755" if path == "run.sh" else "100644"
            r.git("update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", env=env)
    assert ours == r.git("write-tree", env=env).strip()
    git(root, "fsck", "--strict", "--no-dangling")


def test_removing_a_directorys_last_file_removes_the_directory(root: Path) -> None:
    r = repo(root)
    base = git(root, "rev-parse", "HEAD^{tree}").strip()
    tree = r.write_tree(base, {"configs/edge/haproxy.cfg": None})
    assert git(root, "ls-tree", "--name-only", tree).split() == ["lbctl.toml", "run.sh"]


def test_a_worktree_reads_its_own_head_and_the_shared_objects(root: Path, tmp_path: Path) -> None:
    git(root, "branch", "other")
    git(root, "worktree", "add", "-q", str(tmp_path / "wt"), "other")
    r = repo(tmp_path / "wt")
    assert r.ref("HEAD") == git(root, "rev-parse", "other").strip()
    assert r.file_at("HEAD", "lbctl.toml") == b"[targets]\n"
    sha = r.write("blob", b"from the worktree\n")
    assert git(root, "cat-file", "-p", sha) == "from the worktree\n"


def test_a_sha256_repository_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    from lbctl.errors import StoreError
    from lbctl.store.gitio import object_format
    from lbctl.store.repo import Store

    git(tmp_path, "init", "-q", "--object-format=sha256")
    assert object_format(tmp_path / ".git") == "sha256"
    with pytest.raises(StoreError, match="SHA256 git repository"):
        Store(tmp_path)


def test_a_file_replacing_a_directory_and_the_reverse_match_git(root: Path) -> None:
    r = repo(root)
    base = git(root, "rev-parse", "HEAD^{tree}").strip()
    # configs/ becomes a file (what was in it goes), run.sh becomes a directory
    files: dict[str, bytes | None] = {"configs": b"now a file\n", "configs/edge/haproxy.cfg": None}
    files |= {"run.sh": None, "run.sh/inner": b"x\n"}
    ours = r.write_tree(base, files)
    listing = git(root, "ls-tree", "-r", "--name-only", ours).split()
    assert listing == ["configs", "lbctl.toml", "run.sh/inner"]
    git(root, "fsck", "--strict", "--no-dangling")


def test_paths_are_read_and_written_as_git_names_them(root: Path) -> None:
    from lbctl.store.gitio import GitError, split_path

    r = repo(root)
    assert r.file_at("HEAD", "./configs//edge/haproxy.cfg") == b"global\n"
    assert r.file_at("HEAD", "../etc/passwd") is None
    with pytest.raises(GitError):
        split_path("configs/.git/config")
    tree = r.write_tree(git(root, "rev-parse", "HEAD^{tree}").strip(), {"./configs/new.cfg": b"n\n"})
    assert "configs/new.cfg" in git(root, "ls-tree", "-r", "--name-only", tree).split()


def test_revisions_with_suffixes_and_annotated_tags_resolve_as_git_does(root: Path) -> None:
    from lbctl.store.repo import Store

    (root / "lbctl.toml").write_text("[targets]\n# two\n")
    git(root, "commit", "-qam", "two")
    git(root, "tag", "-a", "-m", "release", "v1", "HEAD~1")
    git(root, "pack-refs", "--all")
    store = Store(root)
    first = git(root, "rev-parse", "HEAD~1").strip()
    for rev in ("v1", "refs/tags/v1", "refs/heads/main~1", "HEAD~1", first[:10]):
        assert store.resolve(rev) == first, rev


def test_a_dead_cat_file_is_restarted_not_read_as_a_missing_object(root: Path) -> None:
    r = repo(root)
    git(root, "gc", "-q")  # everything packed: reads go through cat-file --batch
    assert r.file_at("HEAD", "lbctl.toml") == b"[targets]\n"
    assert r._batch is not None
    r._batch.kill()
    r._batch.wait()
    assert r.file_at("HEAD", "lbctl.toml") == b"[targets]\n"
    r.close()


def test_a_shared_repository_gets_gits_own_permissions(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "--shared=group")
    sha = repo(tmp_path).write("blob", b"shared\n")
    fan_out = tmp_path / ".git" / "objects" / sha[:2]
    assert fan_out.stat().st_mode & 0o2070 == 0o2070  # group-writable and setgid, as git makes it


def test_the_commit_writer_writes_the_commit_git_commit_tree_writes(root: Path) -> None:
    import os

    from lbctl.store.gitio import ident

    r = repo(root)
    head = git(root, "rev-parse", "HEAD").strip()
    tree = git(root, "rev-parse", "HEAD^{tree}").strip()
    who = ident("Ann Operator", "ann@example.invalid", 1_700_000_000.7)
    assert who == "Ann Operator <ann@example.invalid> 1700000000 +0000"
    ours = r.write_commit(tree, head, who, "deploy edge\n\nLbctl-Target: edge\n")
    dates = {"GIT_AUTHOR_DATE": "1700000000 +0000", "GIT_COMMITTER_DATE": "1700000000 +0000"}
    names = {"GIT_AUTHOR_NAME": "Ann Operator", "GIT_AUTHOR_EMAIL": "ann@example.invalid"}
    names |= {"GIT_COMMITTER_NAME": "Ann Operator", "GIT_COMMITTER_EMAIL": "ann@example.invalid"}
    theirs = subprocess.run(
        ["git", "-C", str(root), "commit-tree", tree, "-p", head, "-F", "-"],
        input=b"deploy edge\n\nLbctl-Target: edge\n",
        capture_output=True,
        check=True,
        env={**os.environ, **dates, **names},
    ).stdout.decode()
    assert ours == theirs.strip()
    root_commit = r.write_commit(tree, None, who, "first\n")
    assert "parent" not in git(root, "cat-file", "-p", root_commit)
    git(root, "fsck", "--no-dangling")


def test_a_store_commit_lands_through_the_one_writer_with_work_tree_and_index(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lbctl.errors import StoreError
    from lbctl.store.repo import Store, parse_trailers

    monkeypatch.setenv("GIT_AUTHOR_NAME", "Ann Operator")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "ann@example.invalid")
    (root / "notes.txt").write_text("someone's edit, not lbctl's\n")  # untracked: left alone
    store = Store(root)
    before = git(root, "rev-parse", "HEAD").strip()
    sha = store.commit_files(
        {"configs/edge/haproxy.cfg": b"global\n    maxconn 10\n", "run.sh": None, "configs/new/x.cfg": b"x\n"},
        "Pull edge",
        {"Lbctl-Target": "edge", "Lbctl-Source": "pull"},
    )
    assert git(root, "rev-parse", "HEAD").strip() == sha and git(root, "rev-parse", "HEAD~1").strip() == before
    assert git(root, "show", "-s", "--format=%an <%ae>|%cn <%ce>", sha).strip() == (
        "Ann Operator <ann@example.invalid>|Ann Operator <ann@example.invalid>"
    )
    assert parse_trailers(git(root, "show", "-s", "--format=%B", sha)) == {
        "Lbctl-Target": "edge",
        "Lbctl-Source": "pull",
    }
    assert git(root, "diff", "--name-status", before, sha).split() == [
        "M", "configs/edge/haproxy.cfg", "A", "configs/new/x.cfg", "D", "run.sh"
    ]  # fmt: skip
    assert git(root, "status", "--porcelain", "--untracked-files=no").strip() == ""  # work tree and index agree
    assert not (root / "run.sh").exists() and (root / "configs/new/x.cfg").read_bytes() == b"x\n"
    assert "lbctl: commit" in git(root, "reflog", "-1", "--format=%gs")
    git(root, "fsck", "--no-dangling")
    with pytest.raises(StoreError, match="nothing to commit"):
        store.commit_files({"configs/new/x.cfg": b"x\n"}, "again", {})
    assert git(root, "rev-parse", "HEAD").strip() == sha
