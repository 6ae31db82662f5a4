"""How a candidate is put on the LB host: stage, swap, restore. One file, or a tree.

A single file is staged beside the live one and renamed over it (the transport's
`write_staged` / `swap` / `restore`), exactly as lbctl always did.

A tree (a bundle with includes, `lbctl.store.bundle`) is all-or-nothing:

- **stage**: a directory beside the live file, `.NAME.lbctl-stage-TOKEN/`, mirrors the live
  directory: the bundle's files are written there at their relative places, and every other
  entry of each directory on their way is a symlink to the live one (`mime.types`, a
  package's `snippets/`, a host-only file in a globbed directory). nginx resolves relative
  includes against the directory of the `-c` file, so `nginx -t -c STAGE/nginx.conf` reads
  the staged tree plus the host's own files, as the live one will after the swap. Files the
  previous bundle had and this one drops are left out of the mirror.
- **swap**: each live file of the tree is hard-linked into `.NAME.lbctl-prev.d/files/` (or
  noted in `.../absent/` if it did not exist), then each staged file is renamed over its
  live one and dropped files are removed. nginx reads its files only on a reload, so the
  LB runs the old complete tree until the single reload that follows.
- **restore**: every kept file is put back (link + rename) and files that did not exist
  before are removed. The kept files stay for a second restore.

Every step is one `sh` script run through the transport with its values as positional
arguments (no value is ever parsed as shell code), and every step can be repeated: a retried
swap finds its keep already taken (a marker per operation) and only moves what is still staged.
Lock files, kept and staged files are dot names with `.lbctl`: nginx's `*` globs skip them,
and the mirror never links them.
"""

from __future__ import annotations

import posixpath
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable

from lbctl.errors import ConfigError, TreeStepFailed
from lbctl.store.bundle import Bundle
from lbctl.transports.base import Transport

_MIRROR = r"""
live=$1 stage=$2 n=$3; shift 3
i=0
for d in "$@"; do
  i=$((i + 1)); [ "$i" -le "$n" ] || break
  [ -d "$live/$d" ] || continue
  for entry in "$live/$d"/* "$live/$d"/.[!.]* "$live/$d"/..?*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    name=${entry##*/}
    case $name in *.lbctl-*|*.lbctl.*) continue ;; esac
    [ -e "$stage/$d/$name" ] || [ -L "$stage/$d/$name" ] || ln -s -- "$entry" "$stage/$d/$name" || exit 5
  done
done
i=0
for rel in "$@"; do
  i=$((i + 1)); [ "$i" -le "$n" ] || rm -f -- "$stage/$rel" || exit 5
done
"""
_SWAP = r"""
live=$1 stage=$2 keep=$3 mark=$4 n=$5; shift 5
if ! [ -e "$keep/$mark" ]; then
  rm -rf -- "$keep" && mkdir -p -- "$keep/files" "$keep/absent" || exit 5
  for rel in "$@"; do
    if [ -e "$live/$rel" ] || [ -L "$live/$rel" ]; then
      mkdir -p -- "$(dirname -- "$keep/files/$rel")" && ln -f -- "$live/$rel" "$keep/files/$rel" || exit 5
    else
      mkdir -p -- "$(dirname -- "$keep/absent/$rel")" && : > "$keep/absent/$rel" || exit 5
    fi
  done
  : > "$keep/$mark" || exit 5
fi
i=0
for rel in "$@"; do
  i=$((i + 1))
  if [ "$i" -le "$n" ]; then
    if [ -f "$stage/$rel" ] && ! [ -L "$stage/$rel" ]; then
      mkdir -p -- "$(dirname -- "$live/$rel")" && mv -f -- "$stage/$rel" "$live/$rel" || exit 5
    fi
  else
    rm -f -- "$live/$rel" || exit 5
  fi
done
rm -rf -- "$stage"
"""
_RESTORE = r"""
live=$1 keep=$2; shift 2
[ -d "$keep/files" ] || { echo "no kept files in $keep" >&2; exit 3; }
for rel in "$@"; do
  dest=$live/$rel tmp=$(dirname -- "$live/$rel")/.${rel##*/}.lbctl-restore
  if [ "$keep/files/$rel" -ef "$dest" ]; then
    :  # restored already (a repeat): mv would refuse two names of one file
  elif [ -e "$keep/files/$rel" ] || [ -L "$keep/files/$rel" ]; then
    mkdir -p -- "$(dirname -- "$dest")" && ln -f -- "$keep/files/$rel" "$tmp" && mv -f -- "$tmp" "$dest" || exit 5
  elif [ -e "$keep/absent/$rel" ]; then
    rm -f -- "$dest" || exit 5
  fi
done
"""


class Placement(ABC):
    """Puts one candidate on the LB host; `stage` returns the main file to validate."""

    @abstractmethod
    def stage(self) -> str: ...

    @abstractmethod
    def discard(self) -> None:
        """Remove what `stage` wrote (validation failed): the live files were never touched."""

    @abstractmethod
    def swap(self) -> None: ...

    @abstractmethod
    def restore(self) -> None:
        """Put back every file as it was before `swap` (idempotent)."""


def placement(transport: Transport, path: str, bundle: Bundle, managed: Iterable[str]) -> Placement:
    """A tree when the bundle has includes or the live one had (they must go), else one file.

    `managed` are the included paths lbctl put live before (the live revision's bundle).
    """
    dropped = sorted(set(managed) - set(bundle.rels))
    if not bundle.includes and not dropped:
        return FilePlacement(transport, path, bundle.main)
    return TreePlacement(transport, path, bundle, dropped)


class FilePlacement(Placement):
    def __init__(self, transport: Transport, path: str, data: bytes) -> None:
        self.transport, self.path, self.data = transport, path, data
        self.keep = f"{path}.lbctl-prev"
        self.staged = ""

    def stage(self) -> str:
        self.staged = self.transport.write_staged(self.path, self.data)
        return self.staged

    def discard(self) -> None:
        if self.staged:
            self.transport.remove(self.staged)

    def swap(self) -> None:
        self.transport.swap(self.staged, self.path, self.keep)

    def restore(self) -> None:
        self.transport.restore(self.keep, self.path)


class TreePlacement(Placement):
    def __init__(self, transport: Transport, path: str, bundle: Bundle, dropped: list[str]) -> None:
        if not path.startswith("/"):
            raise ConfigError(
                f"a config with includes needs an absolute `path` (got {path!r})",
                hint="the staged tree links the host's own files by absolute path",
            )
        self.transport = transport
        self.live_dir, name = posixpath.split(path)
        token = secrets.token_hex(4)
        self.stage_dir = f"{self.live_dir}/.{name}.lbctl-stage-{token}"
        self.keep_dir = f"{self.live_dir}/.{name}.lbctl-prev.d"
        self.mark = f".kept-{token}"
        self.main_name = name
        self.files = {name: bundle.main, **bundle.files()}
        self.dropped = dropped

    @property
    def rels(self) -> list[str]:
        """Every path the swap touches: installed ones first (the scripts count them), then dropped."""
        return [*sorted(self.files), *self.dropped]

    def stage(self) -> str:
        dirs = sorted({"."} | self._ancestors())  # real directories in the mirror; the rest are links
        self._sh("mkdir", ["mkdir", "-p", "--", *(posixpath.join(self.stage_dir, d) for d in dirs)])
        for rel, data in self.files.items():
            self.transport.put_file(posixpath.join(self.stage_dir, rel), data, like=posixpath.join(self.live_dir, rel))
        self._script("mirror", _MIRROR, [self.live_dir, self.stage_dir, str(len(dirs)), *dirs, *self.dropped])
        return posixpath.join(self.stage_dir, self.main_name)

    def discard(self) -> None:
        self._sh("discard", ["rm", "-rf", "--", self.stage_dir])

    def swap(self) -> None:
        args = [self.live_dir, self.stage_dir, self.keep_dir, self.mark, str(len(self.files)), *self.rels]
        self._script("swap", _SWAP, args)

    def restore(self) -> None:
        self._script("restore", _RESTORE, [self.live_dir, self.keep_dir, *self.rels])

    def _ancestors(self) -> set[str]:
        found = set()
        for rel in self.rels:
            parent = posixpath.dirname(rel)
            while parent:
                found.add(parent)
                parent = posixpath.dirname(parent)
        return found

    def _script(self, what: str, script: str, args: list[str]) -> None:
        self._sh(what, ["sh", "-c", script, f"lbctl-{what}", *args])

    def _sh(self, what: str, argv: list[str]) -> None:
        result = self.transport.run(argv, timeout=60)
        if result.code != 0:
            raise TreeStepFailed(
                f"{what} of the tree on {self.transport.where} failed (exit {result.code}): {result.output}",
                hint=f"check that lbctl's user may write in {self.live_dir} there",
            )
