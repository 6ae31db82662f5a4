"""Git's on-disk formats, read and written in-process for the store's hot path.

A rollback reads a few refs and objects and writes a few objects; starting GitPython
(~60 ms of imports and two `git version` runs) or a `git` process per step costs more
than the work. This module does exactly that much and no more:

- refs: loose ref files, then `packed-refs`, following symbolic refs (`HEAD`);
- objects: loose objects are inflated here; anything else (packed objects) is asked of
  one long-lived `git cat-file --batch`, started only if needed;
- new objects are written as loose objects (temp file + rename, as git does);
- everything that must be atomic against other writers (`update-ref` with the expected
  old value, the index) is left to `git` itself (`Repo.git`).

Every commit lbctl makes (a deploy's, a pull's or restore's, a journal event, a lease, a
replayed event) is written by `Repo.write_commit`. Repositories git cannot be read this way
from files (the reftable ref format) fall back to `git rev-parse`. GitPython serves `init`,
the journal's history walk and the remote (see `lbctl.store.repo`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import tempfile
import weakref
import zlib
from dataclasses import dataclass
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{40}$")
_PLAIN_REF = re.compile(r"^(HEAD|refs/[A-Za-z0-9._/-]+)$")  # no ~ ^ @ { : suffixes: those are git's to read
_MAX_SYMREF_DEPTH = 5


class GitError(Exception):
    """git refused or failed; the message is git's own."""


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    tree: str
    parents: tuple[str, ...]
    author: str  # "Name <email> 1700000000 +0000", as stored
    message: str


def git_dirs(root: Path) -> tuple[Path, Path] | None:
    """(git dir, common dir) of the work tree at `root`, or None if `root/.git` is not a repository."""
    dot = root / ".git"
    if dot.is_dir():
        git_dir = dot
    elif dot.is_file():
        text = dot.read_text(encoding="utf-8", errors="replace").strip()
        if not text.startswith("gitdir:"):
            return None
        git_dir = (root / text.partition(":")[2].strip()).resolve()
    else:
        return None
    common = git_dir
    pointer = git_dir / "commondir"
    if pointer.is_file():
        common = (git_dir / pointer.read_text(encoding="utf-8").strip()).resolve()
    return (git_dir, common) if (common / "objects").is_dir() else None


def _config_value(common_dir: Path, key: str) -> str | None:
    """A key's value in the repository's own config file (lower-cased), by name alone, or None.

    Enough for the two keys read here, which git only ever writes in `[core]`/`[extensions]`.
    """
    try:
        text = (common_dir / "config").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = re.search(rf"^\s*{key}\s*=\s*(\S+)", text, re.IGNORECASE | re.MULTILINE)
    return found.group(1).lower() if found else None


def object_format(common_dir: Path) -> str:
    """`sha1`, or what `extensions.objectFormat` says (`sha256`)."""
    return _config_value(common_dir, "objectformat") or "sha1"


def _end_process(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _shared_repository(common_dir: Path) -> bool:
    """Whether `core.sharedRepository` asks for other than the umask's permissions."""
    return _config_value(common_dir, "sharedrepository") not in (None, "false", "umask", "no", "off", "0")


def ident(name: str, email: str, when: float) -> str:
    """A commit's author/committer line as git stores it: `when` (seconds since the epoch) in UTC."""
    return f"{name} <{email}> {int(when)} +0000"


def _framed(kind: str, data: bytes) -> bytes:
    return f"{kind} {len(data)}".encode() + b"\0" + data


def object_id(kind: str, data: bytes) -> str:
    """git's id of an object of `kind` holding `data` (what `git hash-object -t KIND` prints), written nowhere."""
    return hashlib.sha1(_framed(kind, data), usedforsecurity=False).hexdigest()


def split_path(path: str) -> list[str]:
    """A store path's components, as git stores them: `./a//b` is `a/b`; `..`, `.git` are refused."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." or p.lower() == ".git" for p in parts):
        raise GitError(f"{path!r} is not a path inside the store")
    return parts


class Repo:
    """One repository's refs and objects, plus `git` for what must be atomic."""

    def __init__(self, root: Path, git_dir: Path, common_dir: Path) -> None:
        self.root = root
        self.git_dir = git_dir
        self.common_dir = common_dir
        self.objects = common_dir / "objects"
        self._reftable = (common_dir / "reftable").is_dir()
        self._shared = _shared_repository(common_dir)
        self._batch: subprocess.Popen[bytes] | None = None

    # -- git itself ---------------------------------------------------------------------

    def git(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
        """Run `git -C root ARGS`; its stdout, or `GitError` with its stderr."""
        proc = subprocess.run(
            ["git", "-C", str(self.root), *args],
            input=input,
            capture_output=True,
            env={**os.environ, **env} if env else None,
        )
        if proc.returncode != 0:
            raise GitError(proc.stderr.decode("utf-8", "replace").strip() or f"git {args[0]} exited {proc.returncode}")
        return proc.stdout.decode("utf-8", "replace")

    def close(self) -> None:
        if self._batch is not None:
            _end_process(self._batch)
            self._batch = None

    # -- refs ---------------------------------------------------------------------------

    def ref(self, name: str) -> str | None:
        """The sha `name` (HEAD, refs/...) points to, following symbolic refs; None if it does not exist."""
        if self._reftable:
            out = subprocess.run(
                ["git", "-C", str(self.root), "rev-parse", "--verify", "-q", name],
                capture_output=True,
                text=True,
            )
            return out.stdout.strip() or None
        for _ in range(_MAX_SYMREF_DEPTH):
            value = self._read_ref(name)
            if value is None:
                return None
            if not value.startswith("ref:"):
                return value if _SHA.match(value) else None
            name = value[4:].strip()
        return None

    def ref_text(self, name: str) -> str | None:
        """What the ref `name` holds as written (a sha, `ref: ...`, or garbage), or None if it does not exist."""
        return None if self._reftable else self._read_ref(name)

    def _read_ref(self, name: str) -> str | None:
        for base in (self.git_dir, self.common_dir):
            try:
                return (base / name).read_text(encoding="utf-8").strip()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                continue
        try:
            packed = (self.common_dir / "packed-refs").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        for line in packed.splitlines():
            sha, _, ref = line.partition(" ")
            if ref == name and _SHA.match(sha):
                return sha
        return None

    def resolve(self, rev: str) -> str | None:
        """A revision as a full sha: a full sha as it is, a plain ref by its files; anything else by git."""
        if _SHA.match(rev):
            return rev
        if _PLAIN_REF.match(rev):
            found = self.ref(rev)
            if found is not None:
                return found
        try:
            return self.git("rev-parse", "--verify", "-q", f"{rev}^{{commit}}").strip() or None
        except GitError:
            return None

    # -- objects ------------------------------------------------------------------------

    def read(self, sha: str) -> tuple[str, bytes] | None:
        """(type, content) of an object, or None if the repository does not have it."""
        loose = self.objects / sha[:2] / sha[2:]
        try:
            raw = zlib.decompress(loose.read_bytes())
        except FileNotFoundError:
            return self._read_batch(sha)
        except zlib.error:
            raise GitError(f"object {sha} is corrupt (not zlib data) in {self.objects}") from None
        header, _, body = raw.partition(b"\0")
        kind, _, size = header.decode("ascii", "replace").partition(" ")
        if kind not in ("blob", "tree", "commit", "tag") or not size.isdigit() or int(size) != len(body):
            raise GitError(f"object {sha} is corrupt (bad header) in {self.objects}")
        return kind, body

    def _read_batch(self, sha: str, *, again: bool = True) -> tuple[str, bytes] | None:
        if self._batch is None or self._batch.poll() is not None:
            self.close()
            self._batch = subprocess.Popen(
                ["git", "-C", str(self.root), "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            # Ended with this Repo (or at exit): its stdin closes and cat-file exits.
            weakref.finalize(self, _end_process, self._batch)
        assert self._batch.stdin is not None and self._batch.stdout is not None
        try:
            self._batch.stdin.write(sha.encode() + b"\n")
            self._batch.stdin.flush()
            line = self._batch.stdout.readline()
            header = line.decode().split()
            if len(header) == 3:
                body = self._batch.stdout.read(int(header[2]))
                if len(body) == int(header[2]) and self._batch.stdout.read(1) == b"\n":
                    return header[1], body
            elif line.endswith(b" missing\n"):
                return None
        except (OSError, ValueError):
            pass
        # cat-file died or answered garbage (a corrupt pack): never read that as "no such object"
        self.close()
        if again:
            return self._read_batch(sha, again=False)
        raise GitError(f"git cat-file could not read {sha} in {self.root}")

    def write(self, kind: str, data: bytes) -> str:
        """Store a loose object (blob, tree, commit); returns its sha. Idempotent."""
        raw = _framed(kind, data)
        sha = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
        if self._shared:  # group permissions as core.sharedRepository wants: git knows them
            return self.git("hash-object", "-t", kind, "-w", "--stdin", "--literally", input=data).strip()
        path = self.objects / sha[:2] / sha[2:]
        if path.exists():
            with contextlib.suppress(OSError):
                os.utime(path)  # fresh again, as git does: a concurrent `gc --prune` keeps it
            return sha
        path.parent.mkdir(exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix="tmp_obj_lbctl_", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(zlib.compress(raw, 1))
        os.chmod(temp, 0o444)
        os.replace(temp, path)
        return sha

    # -- commits and trees --------------------------------------------------------------

    def write_commit(self, tree: str, parent: str | None, ident: str, message: str) -> str:
        """Write a commit of `tree` on `parent` (None: a root commit); returns its sha. Moves no ref.

        The one writer of commit objects: `ident` ("Name <email> SECONDS +ZZZZ", see `ident`)
        is both author and committer.
        """
        header = f"tree {tree}\n" + (f"parent {parent}\n" if parent else "")
        return self.write("commit", f"{header}author {ident}\ncommitter {ident}\n\n{message}".encode())

    def commit(self, sha: str) -> CommitInfo | None:
        found = self.read(sha)
        if found is None or found[0] != "commit":
            return None
        head, _, message = found[1].decode("utf-8", "replace").partition("\n\n")
        tree, parents, author = "", [], ""
        for line in head.splitlines():
            key, _, value = line.partition(" ")
            if key == "tree":
                tree = value
            elif key == "parent":
                parents.append(value)
            elif key == "author":
                author = value
        return CommitInfo(sha, tree, tuple(parents), author, message)

    def tree(self, sha: str) -> dict[bytes, tuple[bytes, str]]:
        """A tree's entries: name → (mode, sha)."""
        found = self.read(sha)
        if found is None or found[0] != "tree":
            raise GitError(f"{sha} is not a tree in {self.root}")
        data, entries, pos = found[1], {}, 0
        while pos < len(data):
            space = data.index(b" ", pos)
            nul = data.index(b"\0", space)
            entries[data[space + 1 : nul]] = (data[pos:space], data[nul + 1 : nul + 21].hex())
            pos = nul + 21
        return entries

    def file_at(self, rev: str, path: str) -> bytes | None:
        """The bytes of the file at `path` in commit `rev`, or None (no such commit, path or file)."""
        sha = self.resolve(rev)
        info = self.commit(sha) if sha else None
        if info is None:
            return None
        current = info.tree
        try:
            parts = split_path(path)
        except GitError:
            return None
        for number, part in enumerate(parts):
            entry = self.tree(current).get(part.encode())
            if entry is None:
                return None
            mode, current = entry
            is_last = number == len(parts) - 1
            if (mode == b"40000") == is_last:  # a directory where a file is wanted, or the reverse
                return None
        found = self.read(current)
        return found[1] if found is not None and found[0] == "blob" else None

    def write_tree(self, base: str | None, files: dict[str, bytes | None]) -> str:
        """The tree `base` with each path set to its blob (or removed for None); returns the new tree's sha.

        Paths are relative to the tree, `/`-separated. Emptied directories disappear, as in git.
        """
        entries = self.tree(base) if base else {}
        here: dict[bytes, bytes | None] = {}
        below: dict[bytes, dict[str, bytes | None]] = {}
        for path, content in files.items():
            head, *rest = split_path(path)
            if rest:
                below.setdefault(head.encode(), {})["/".join(rest)] = content
            else:
                here[head.encode()] = content
        # Deletions first, then directories, then files: a file that replaces a directory of
        # the same name wins over deletions inside it, and a directory may replace a file.
        for name, content in here.items():
            if content is None:
                entries.pop(name, None)
        for name, subfiles in below.items():
            if here.get(name) is not None:
                continue  # this directory becomes a file: what was in it goes with it
            old = entries.get(name)
            sub = self.write_tree(old[1] if old and old[0] == b"40000" else None, subfiles)
            if sub == _EMPTY_TREE:
                entries.pop(name, None)
            else:
                entries[name] = (b"40000", sub)
        for name, content in here.items():
            if content is not None:
                kept = entries.get(name, (b"", ""))[0]
                mode = b"100755" if kept == b"100755" else b"100644"  # a file stays executable if it was
                entries[name] = (mode, self.write("blob", content))

        def order(name: bytes) -> bytes:  # git sorts a directory as if its name ended in "/"
            return name + b"/" if entries[name][0] == b"40000" else name

        body = b"".join(
            entries[n][0] + b" " + n + b"\0" + bytes.fromhex(entries[n][1]) for n in sorted(entries, key=order)
        )
        return self.write("tree", body)


_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
