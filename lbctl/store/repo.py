"""The store: a git repository holding `lbctl.toml` and the LB configs.

Revisions are ordinary commits whose metadata travels as `Lbctl-*` trailers.
Deploy events live beside them in `refs/lbctl/journal` (see `store/journal.py`).

What a deploy or rollback needs (refs, files at a revision, new blobs, trees and commits)
goes through `lbctl.store.gitio`, in-process; every commit lbctl makes is written there, by
one writer. What must be atomic against other writers runs `git` (`update-ref` with the
expected old value, `add`/`rm` for the index), as do the one-process pathspec queries (`log
-- PATH`, `ls-tree`, `status`). GitPython (`Store.repo`, loaded on first use) creates stores,
walks the journal's history and talks to the remote (`lbctl.store.sync`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lbctl.config import CONFIG_NAME
from lbctl.errors import StoreError, UsageError
from lbctl.store import gitio

if TYPE_CHECKING:
    import git


@dataclass(frozen=True)
class PendingCommit:
    """A commit written to the object store but on no branch yet (see `Store.prepare_commit`)."""

    sha: str
    parent: str | None
    files: Mapping[str, bytes | None]  # store path → new content, or None to delete it
    message: str
    trailers: dict[str, str]


@dataclass(frozen=True)
class Revision:
    sha: str
    author: str
    email: str
    date: datetime
    subject: str
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.sha[:10]


def find_root(explicit: str | None = None, cwd: Path | None = None) -> Path:
    """The store's directory: `--store`, then `$LBCTL_STORE`, then cwd and its parents."""
    chosen = explicit or os.environ.get("LBCTL_STORE")
    if chosen:
        root = Path(chosen).expanduser().resolve()
        if not (root / CONFIG_NAME).is_file():
            raise StoreError(f"{root} is not an lbctl store (no {CONFIG_NAME})", hint=f"run `lbctl init {chosen}`")
        return root
    here = (cwd or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    raise StoreError(
        f"no lbctl store in {here} or its parents (looked for {CONFIG_NAME})",
        hint="cd into a store, pass --store PATH, set LBCTL_STORE, or run `lbctl init`",
    )


class Store:
    """A git-backed store. Methods return values; nothing here prints."""

    def __init__(self, root: Path) -> None:
        self.root = root
        dirs = gitio.git_dirs(root)
        if dirs is None:
            raise StoreError(
                f"{root} has {CONFIG_NAME} but is not a git repository (or not the top of its work tree)",
                hint=f"run `git init {root}` and commit lbctl.toml, or `lbctl init` a new store",
            )
        fmt = gitio.object_format(dirs[1])
        if fmt != "sha1":
            raise StoreError(
                f"{root} is a {fmt.upper()} git repository; lbctl reads SHA-1 ones only",
                hint="keep the store in a repository created by a plain `git init`",
            )
        self.git_dir = dirs[0]
        self.plumbing = gitio.Repo(root, *dirs)
        self._repo: git.Repo | None = None
        self._identity: tuple[str, str] | None = None

    @property
    def repo(self) -> git.Repo:
        """GitPython's view of the store (history, commits made by git); loaded on first use."""
        if self._repo is None:
            import git

            self._repo = git.Repo(self.root)
        return self._repo

    def _git(self, *args: str) -> str:
        try:
            return self.plumbing.git(*args)
        except gitio.GitError as exc:
            raise StoreError(f"git {args[0]} failed in {self.root}: {exc}") from None

    # -- identity and cleanliness -------------------------------------------------------

    def identity(self) -> tuple[str, str]:
        """(name, email) as git would sign a commit here; a store change without one is refused."""
        if self._identity is None:
            try:
                # useConfigOnly: a name and email from the config or GIT_AUTHOR_*, never guessed
                ident = self.plumbing.git("-c", "user.useConfigOnly=true", "var", "GIT_AUTHOR_IDENT")
            except gitio.GitError:
                raise StoreError(
                    "git has no identity for this store: lbctl records who changed what",
                    hint='run `git config --global user.name "Your Name"` and `git config --global '
                    "user.email you@example.com`",
                ) from None
            name, _, rest = ident.partition(" <")
            self._identity = (name.strip(), rest.partition(">")[0])
        return self._identity

    def dirty_paths(self, *pathspecs: str) -> list[str]:
        """Tracked files with uncommitted changes (untracked files are not counted), among
        `pathspecs` when given (git pathspecs), else in the whole store.

        Without git's optional index lock (its refresh of the index): a fleet's members read this
        in parallel with another member's commit landing, whose `git add` must find the index free."""
        args = ["status", "--porcelain", "--untracked-files=no", "-z", *(["--", *pathspecs] if pathspecs else [])]
        try:
            out = self.plumbing.git(*args, env={"GIT_OPTIONAL_LOCKS": "0"})
        except gitio.GitError as exc:
            raise StoreError(f"git status failed in {self.root}: {exc}") from None
        return [entry[3:] for entry in out.split("\0") if entry]

    def require_clean(self, *, allow: tuple[str, ...] = (), only: Sequence[str] = ()) -> None:
        """Refuse uncommitted edits (exit 2): in `only` (pathspecs: the files an operation
        touches) when given, else anywhere in the store; `allow` lists paths that may be edited."""
        dirty = [p for p in self.dirty_paths(*only) if p not in allow]
        if dirty:
            listed = ", ".join(dirty[:5]) + (" ..." if len(dirty) > 5 else "")
            raise StoreError(
                f"the store has uncommitted changes: {listed}",
                hint="commit or stash them first (lbctl commits what it deploys, and only that)",
            )

    def index_entries(self, directory: str) -> dict[str, str]:
        """The files staged under `directory` (paths relative to it) → their blob shas."""
        prefix = directory.rstrip("/") + "/" if directory else ""
        out = self._git("ls-files", "-s", "-z", "--", *([prefix] if prefix else []))
        found = {}
        for entry in out.split("\0"):
            meta, _, path = entry.partition("\t")
            if path.startswith(prefix) and meta.split()[2:3] == ["0"]:  # stage 0: not a conflict
                found[path[len(prefix) :]] = meta.split()[1]
        return found

    def blob(self, sha: str) -> bytes | None:
        found = self.plumbing.read(sha)
        return found[1] if found is not None and found[0] == "blob" else None

    def has_commits(self) -> bool:
        return self.ref("HEAD") is not None

    def ref(self, name: str) -> str | None:
        """The sha `name` (HEAD, refs/...) points to; None if it does not exist (an unborn branch)."""
        return self.plumbing.ref(name)

    # -- reading ------------------------------------------------------------------------

    def resolve(self, rev: str) -> str:
        """Full sha of a git revision (sha, tag, HEAD~2); exit 2 when unknown."""
        found = None if rev.startswith("-") else self.plumbing.resolve(rev)
        if found is not None and self.plumbing.commit(found) is None:  # a tag, a tree: let git peel it
            found = self.plumbing.resolve(f"{rev}^{{commit}}")
        if found is None:
            raise UsageError(
                f"unknown revision {rev!r} in the store",
                hint="see `lbctl log` for revisions, or use last-good, previous, ~N, @<time>",
            )
        return found

    def content_at(self, sha: str, source: str) -> bytes | None:
        """The bytes of `source` at commit `sha`, or None if it did not exist there."""
        return self.plumbing.file_at(sha, source)

    def last_change(self, paths: str | Sequence[str], at: str = "HEAD") -> str | None:
        """The newest commit at or before `at` that changed any of `paths` (git pathspecs).

        For a target that is the revision it is at: one path for a single file, the main
        file and its includes' pathspecs for a tree (see `lbctl.store.bundle`).
        """
        if not self.has_commits():
            return None
        out = self._git("log", "-1", "--format=%H", at, "--", *([paths] if isinstance(paths, str) else paths))
        return out.strip() or None

    def files_at(self, rev: str, directory: str) -> list[str]:
        """Every file under `directory` at commit `rev`, as paths relative to `directory`."""
        prefix = directory.rstrip("/") + "/" if directory else ""
        out = self._git("ls-tree", "-r", "-z", "--name-only", "--full-tree", rev, *(["--", prefix] if prefix else []))
        return [name[len(prefix) :] for name in out.split("\0") if name and name.startswith(prefix)]

    def revision(self, sha: str) -> Revision:
        full = self.plumbing.resolve(sha)
        info = self.plumbing.commit(full) if full else None
        if info is None:
            raise UsageError(f"unknown revision {sha!r} in the store")
        name, _, rest = info.author.partition(" <")
        email, _, when = rest.partition("> ")
        return Revision(
            sha=info.sha,
            author=name,
            email=email,
            date=datetime.fromtimestamp(int(when.split()[0]), tz=UTC) if when else datetime.fromtimestamp(0, UTC),
            subject=info.message.splitlines()[0] if info.message else "",
            trailers=parse_trailers(info.message),
        )

    def revisions(self, source: str | None = None, limit: int = 20) -> list[Revision]:
        if not self.has_commits():
            return []
        args = [f"-{limit}", "--format=%H", "HEAD"]
        if source:
            args += ["--", source]
        return [self.revision(sha) for sha in self._git("log", *args).split()]

    # -- writing ------------------------------------------------------------------------

    def prepare_commit(
        self, files: Mapping[str, bytes | None], message: str, trailers: dict[str, str]
    ) -> PendingCommit:
        """Write a commit of `files` (path → content, None deletes) on top of HEAD, moving no branch.

        The deploy lifecycle lands it (`land`) only once the LB has taken the change, so a
        change that never went live leaves no commit behind.
        """
        parent = self.ref("HEAD")
        base = self.plumbing.commit(parent) if parent else None
        tree = self.plumbing.write_tree(base.tree if base else None, dict(files))
        body = compose_message(message, trailers)
        who = gitio.ident(*self.identity(), datetime.now(tz=UTC).timestamp())
        sha = self.plumbing.write_commit(tree, parent, who, body)
        return PendingCommit(sha, parent, dict(files), message, trailers)

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Serialise git writes (index, refs) of every lbctl process working on this store."""
        from lbctl.lock import serialized

        return serialized(self.git_dir / "lbctl" / "git-write.lock")

    def land(self, pending: PendingCommit, *, reflog: str = "lbctl: deploy") -> str:
        """Move the current branch to `pending` and bring the index and work tree along.

        If someone committed to the store meanwhile, the same change is re-made on top of
        their commit (never over it); returns the sha that landed.
        """
        with self.writing():
            for _ in range(5):
                try:
                    self.plumbing.git("update-ref", "-m", reflog, "HEAD", pending.sha, pending.parent or "0" * 40)
                    break
                except gitio.GitError:
                    pending = self.prepare_commit(pending.files, pending.message, pending.trailers)
            else:
                raise StoreError("the store's branch kept moving while lbctl tried to record its commit")
            self._write_work_tree(pending.files)
        return pending.sha

    def _write_work_tree(self, files: Mapping[str, bytes | None]) -> None:
        """Bring the work tree and the index to `files` (None: the file is deleted)."""
        for source, content in files.items():
            path = self.root / source
            if content is None:
                path.unlink(missing_ok=True)
                self._git("rm", "-q", "--cached", "--ignore-unmatch", "--", source)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
                self._git("add", "--", source)

    def commit_files(self, files: Mapping[str, bytes | None], message: str, trailers: dict[str, str]) -> str:
        """Commit `files` (None deletes) on HEAD with trailers, and bring the work tree and index along.

        The deploy's own writer (`prepare_commit`, then `land` at once): only those paths change,
        and a commit that would change nothing is refused, as `git commit` refuses it. Returns the new sha.
        """
        pending = self.prepare_commit(files, message, trailers)
        parent = self.plumbing.commit(pending.parent) if pending.parent else None
        written = self.plumbing.commit(pending.sha)
        if parent is not None and written is not None and written.tree == parent.tree:
            raise StoreError(f"nothing to commit in {self.root}: {', '.join(files)} already hold that content")
        return self.land(pending, reflog="lbctl: commit")


def compose_message(message: str, trailers: dict[str, str]) -> str:
    lines = [message.strip() or "lbctl change"]
    clean = {k: " ".join(v.split()) for k, v in trailers.items() if v}
    if clean:
        lines.append("")
        lines.extend(f"{k}: {v}" for k, v in clean.items())
    return "\n".join(lines) + "\n"


def parse_trailers(message: str) -> dict[str, str]:
    """Trailers of the message's last paragraph (`Key: value` lines), as git reads them."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        return {}
    found: dict[str, str] = {}
    for line in paragraphs[-1].splitlines():
        key, sep, value = line.partition(": ")
        if not sep or not key or " " in key:
            return {}
        found[key] = value.strip()
    return found


def init_store(directory: Path) -> Path:
    """Create a store: git repo, commented lbctl.toml, configs/. Refuses to overwrite one."""
    import git

    from lbctl.templates import EXAMPLE_HAPROXY_CFG, LBCTL_TOML

    directory = directory.resolve()
    if (directory / CONFIG_NAME).exists():
        raise UsageError(f"{directory} already holds {CONFIG_NAME}", hint="it is already a store")
    directory.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(directory)
    Store(directory).identity()  # before writing anything: no half-made store
    (directory / "configs" / "edge").mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_NAME).write_text(LBCTL_TOML, encoding="utf-8")
    (directory / "configs" / "edge" / "haproxy.cfg").write_text(EXAMPLE_HAPROXY_CFG, encoding="utf-8")
    repo.git.add("--", CONFIG_NAME, "configs")
    repo.git.commit("-q", "--no-verify", "-m", compose_message("lbctl init: new store", {"Lbctl-Source": "init"}))
    return directory
