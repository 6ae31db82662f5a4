"""What a target deploys, as one value: its main config and the store files it includes.

Most targets deploy one file (`source` → `path`). An nginx config that `include`s other
files of the store deploys them with it: the bundle is the main file plus every store file
reached by following `include`s from it, relative to the source file's directory, globs
expanded as nginx expands them (`*` stops at `/` and skips dot files). Each included file
goes to the same relative place under the live file's directory. Includes that leave that
directory (absolute paths, `..`, variables) or name files the store does not have are left
to the LB host, as for a single file. A target with `follow_includes = false` deploys its
main file alone, as lbctl did before it followed includes.

A bundle has one fingerprint: for a single file it is the kind's canonical bytes, exactly
as before bundles existed (journals and plan checksums of single-file targets do not
change); with includes it is a deterministic serialisation of every (path, bytes). Plan
checksums, the journal's blob ids, no-op and drift checks all compare fingerprints.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import posixpath
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lbctl.errors import UsageError
from lbctl.store.journal import blob_id

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.kinds.base import Kind
    from lbctl.sandbox import FindFile
    from lbctl.store.repo import Store
    from lbctl.transports.base import Transport

MAX_FILES = 500  # an include glob that matches more than this is a mistake, not a config


@dataclass(frozen=True)
class Bundle:
    """The main file's bytes and each included store file's, by path relative to the main's directory."""

    main: bytes
    includes: tuple[tuple[str, bytes], ...] = ()  # sorted by path

    @classmethod
    def of(cls, main: bytes, includes: Mapping[str, bytes] | None = None) -> Bundle:
        return cls(main, tuple(sorted((includes or {}).items())))

    @property
    def rels(self) -> tuple[str, ...]:
        return tuple(rel for rel, _ in self.includes)

    def files(self) -> dict[str, bytes]:
        return dict(self.includes)

    def with_main(self, main: bytes) -> Bundle:
        return Bundle(main, self.includes)

    def fingerprint(self, kind: Kind) -> bytes:
        main = kind.canonical(self.main)
        if not self.includes:
            return main
        parts = [b"lbctl-bundle 1\n"]
        for rel, data in (("", main), *self.includes):
            name = rel.encode()
            parts.append(b"%d %d %s\n" % (len(name), len(data), name) + data)
        return b"".join(parts)

    def blob(self, kind: Kind) -> str:
        return blob_id(self.fingerprint(kind))

    def same(self, other: Bundle | None, kind: Kind) -> bool:
        return other is not None and self.fingerprint(kind) == other.fingerprint(kind)


def differences(expected: Bundle, running: Bundle) -> list[str]:
    """Which included files differ between what lbctl left and what runs (for drift messages)."""
    want, have = expected.files(), running.files()
    found = []
    for rel in sorted(set(want) | set(have)):
        if rel not in have:
            found.append(f"{rel} was removed from the LB")
        elif rel not in want:
            found.append(f"{rel} appeared on the LB")
        elif want[rel] != have[rel]:
            found.append(f"{rel} was changed on the LB")
    return found


# -- from the store ------------------------------------------------------------------------


def bundle_at(store: Store, kind: Kind, target: Target, rev: str) -> Bundle | None:
    """`target`'s bundle at store revision `rev`, or None when its source is not there."""
    main = store.content_at(rev, target.source)
    return None if main is None else expand(store, kind, target, rev, main)


def expand(store: Store, kind: Kind, target: Target, rev: str, main: bytes) -> Bundle:
    """`main` (the source's content, perhaps not yet committed) with the store files at `rev` it includes."""
    if not _follows(kind, target) or not kind.include_patterns(main):
        return Bundle(main)
    base = posixpath.dirname(target.source)
    names = set(store.files_at(rev, base))
    found = _follow(kind, main, names, lambda rel: store.content_at(rev, _join(base, rel)), _own_name(target))
    return Bundle.of(main, found)


def live_rels(store: Store, kind: Kind, target: Target, rev: str | None) -> tuple[str, ...]:
    """The included files of the bundle lbctl left live at `rev` (what a deploy may have to remove)."""
    if not _follows(kind, target) or rev is None:
        return ()
    bundle = bundle_at(store, kind, target, rev)
    return bundle.rels if bundle else ()


def recorded_blob(recorded: str | None, live: Bundle | None, kind: Kind) -> str | None:
    """The fingerprint lbctl recorded for what it left live, as comparable with `live`'s.

    A journal written before lbctl deployed includes holds the main file's blob alone: when
    that is what runs, the includes were the host's, not a hand edit.
    """
    if recorded is not None and live is not None and live.includes and recorded == Bundle(live.main).blob(kind):
        return live.blob(kind)
    return recorded


def revision_of(store: Store, kind: Kind, target: Target, at: str = "HEAD") -> str | None:
    """The newest commit that changed `target`'s bundle: its main file or any file its includes match."""
    if not _follows(kind, target):
        return store.last_change(target.source, at)
    current = bundle_at(store, kind, target, at) if store.has_commits() else None
    return store.last_change(pathspecs(kind, target, current) if current else target.source, at)


def pathspecs(kind: Kind, target: Target, bundle: Bundle) -> list[str]:
    """git pathspecs for everything in the store that is (or may become) part of the bundle."""
    base = posixpath.dirname(target.source)
    specs = [target.source]
    for content in (bundle.main, *(data for _, data in bundle.includes)):
        for pattern in kind.include_patterns(content):
            rel = _inside(pattern)
            if rel is not None:
                magic = ":(glob)" if glob.has_magic(rel) else ":(literal)"
                specs.append(magic + _join(base, rel))
    return list(dict.fromkeys(specs))


def store_changes(store: Store, kind: Kind, target: Target, bundle: Bundle) -> dict[str, bytes | None]:
    """What a commit of `bundle` writes: every file of it, and deletes the store files its
    includes would match at HEAD that are not part of it (else the store's tree would differ)."""
    base = posixpath.dirname(target.source)
    changes: dict[str, bytes | None] = {target.source: bundle.main}
    changes.update({_join(base, rel): data for rel, data in bundle.includes})
    if _follows(kind, target) and kind.include_patterns(bundle.main) and store.has_commits():
        names = set(store.files_at("HEAD", base))
        wanted = bundle.files()
        matched = _follow(kind, bundle.main, names, lambda rel: wanted.get(rel, b""), _own_name(target))
        for rel in matched:
            if rel not in wanted:
                changes[_join(base, rel)] = None
    return changes


def reachable(kind: Kind, target: Target, main: bytes, files: Mapping[str, bytes]) -> Bundle:
    """`main` with those of `files` (relative paths → bytes) that its includes reach."""
    if not _follows(kind, target):
        return Bundle(main)
    return Bundle.of(main, _follow(kind, main, set(files), files.get, _own_name(target)))


def store_paths(store: Store, kind: Kind, target: Target) -> list[str]:
    """git pathspecs of the store files that are `target`'s, at HEAD or in the work tree: the
    files whose uncommitted edits concern an operation on it (and no other target's)."""
    specs = [target.source]
    head = bundle_at(store, kind, target, "HEAD") if store.has_commits() else None
    for bundle in (head, bundle_in_worktree(store.root, kind, target)):
        if bundle is not None:
            specs.extend(pathspecs(kind, target, bundle))
    return list(dict.fromkeys(specs))


# -- from the work tree and the index (not committed yet) -----------------------------------


def bundle_in_worktree(root: Path, kind: Kind, target: Target) -> Bundle | None:
    """`target`'s bundle as the files in the store's work tree are now (None: no source file)."""
    main_path = root / target.source
    if not main_path.is_file():
        return None
    main = main_path.read_bytes()
    if not _follows(kind, target) or not kind.include_patterns(main):
        return Bundle(main)
    base = root / posixpath.dirname(target.source)
    names = set()
    for path in base.rglob("*"):
        rel = path.relative_to(base)
        if ".git" not in rel.parts and path.is_file():
            names.add(rel.as_posix())

    def read(rel: str) -> bytes | None:
        path = base / rel
        return path.read_bytes() if path.is_file() else None

    return Bundle.of(main, _follow(kind, main, names, read, _own_name(target)))


def bundle_in_index(store: Store, kind: Kind, target: Target) -> Bundle | None:
    """`target`'s bundle as staged in the index (`git diff --cached`'s side); None: not staged."""
    base = posixpath.dirname(target.source)
    staged = store.index_entries(base)
    own = _own_name(target)
    main = store.blob(staged[own]) if own in staged else None
    if main is None:
        return None
    if not _follows(kind, target) or not kind.include_patterns(main):
        return Bundle(main)
    found = _follow(kind, main, set(staged), lambda rel: store.blob(staged[rel]) if rel in staged else None, own)
    return Bundle.of(main, found)


# -- from the LB ---------------------------------------------------------------------------


def included_on_lb(transport: Transport, kind: Kind, target: Target, main: bytes) -> dict[str, bytes]:
    """The files beside the live config that its includes reach on the LB host, store or not
    (what adopting an nginx host must record). Lists the live directory with `find`."""
    if not _follows(kind, target) or not kind.include_patterns(main) or not target.path:
        return {}
    live_dir = posixpath.dirname(target.path) or "/"
    listed = transport.run(["find", live_dir, "-type", "f"], timeout=30.0)
    prefix = live_dir.rstrip("/") + "/"
    names = {line[len(prefix) :] for line in listed.stdout.splitlines() if line.startswith(prefix)}
    own = posixpath.basename(target.path)
    return _follow(kind, main, names, lambda rel: transport.read_file(_join(live_dir, rel)), own)


def read_live(transport: Transport, target: Target, rels: Iterable[str]) -> Bundle | None:
    """The live main file and those of `rels` that exist beside it (None: no main file)."""
    path = target.path or ""
    main = transport.read_file(path)
    if main is None:
        return None
    live_dir = posixpath.dirname(path)
    found = {}
    for rel in sorted(set(rels)):
        data = transport.read_file(_join(live_dir, rel))
        if data is not None:
            found[rel] = data
    return Bundle.of(main, found)


# -- for the semantic diff -----------------------------------------------------------------


@contextlib.contextmanager
def materialized(bundle: Bundle | None, name: str) -> Iterator[Path | None]:
    """A temp directory holding the bundle's files (main as `name`), for the parser to follow
    its includes; None for a single file (nothing to follow)."""
    if bundle is None or not bundle.includes:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="lbctl-bundle-") as tmp:
        root = Path(tmp)
        (root / posixpath.basename(name)).write_bytes(bundle.main)
        for rel, data in bundle.includes:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        yield root


# -- include resolution --------------------------------------------------------------------


def _follow(
    kind: Kind, main: bytes, names: set[str], read: Callable[[str], bytes | None], own: str
) -> dict[str, bytes]:
    """Every name in `names` reached from `main` by following includes, with its content.

    nginx resolves a relative include against the main file's directory, wherever the
    `include` is written, so every pattern is matched against the same `names`.
    """
    found: dict[str, bytes] = {}
    pending = [main]
    while pending:
        for pattern in kind.include_patterns(pending.pop()):
            for rel in _matches(pattern, names):
                if rel in found or rel == own:
                    continue
                data = read(rel)
                if data is None:
                    continue
                found[rel] = data
                pending.append(data)
                if len(found) > MAX_FILES:
                    raise UsageError(f"the includes reach more than {MAX_FILES} files of the store: check the globs")
    return found


def _matches(pattern: str, names: set[str]) -> list[str]:
    """The names `pattern` matches as glob(3) would: segment by segment, no dot files for `*`."""
    rel = _inside(pattern)
    if rel is None:
        return []
    if not glob.has_magic(rel):
        return [rel] if rel in names else []
    want = rel.split("/")
    hits = []
    for name in names:
        parts = name.split("/")
        if len(parts) == len(want) and all(_segment(p, w) for p, w in zip(parts, want, strict=True)):
            hits.append(name)
    return sorted(hits)


def _segment(name: str, pattern: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def _inside(pattern: str) -> str | None:
    """`pattern` normalised, if it stays under the main file's directory (else the host's business)."""
    if pattern.startswith("/") or "$" in pattern:
        return None
    rel = posixpath.normpath(pattern)
    if rel in (".", "..") or rel.startswith("../"):
        return None
    return rel


def _follows(kind: Kind, target: Target) -> bool:
    """Whether `target` deploys a tree: its kind has includes and the target did not opt out."""
    return kind.follows_includes and target.follow_includes


def _join(base: str, rel: str) -> str:
    return posixpath.join(base, rel) if base else rel


def _own_name(target: Target) -> str:
    return posixpath.basename(target.source)


def store_files(store: Store, target: Target, rev: str, bundle: Bundle | None = None) -> FindFile:
    """Where a sandbox finds a file the config names on the LB (a map, an ACL list, an error page):
    the bundle's file of that name, else the store's beside the target's source at `rev`."""
    base = posixpath.dirname(target.source)
    by_name = {posixpath.basename(rel): data for rel, data in (bundle.includes if bundle else ())}

    def find(path: str) -> bytes | None:
        name = posixpath.basename(path)
        if name in by_name:
            return by_name[name]
        return store.content_at(rev, posixpath.join(base, name) if base else name)

    return find
