"""`lbctl diff`: what a change means, between files, revisions, or the store and the LB."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbctl.errors import UsageError
from lbctl.store.bundle import Bundle
from lbctl.store.selectors import select
from lbctl.store.workspace import Workspace

if TYPE_CHECKING:
    from lbctl.semantic import SemanticDiff


@dataclass(frozen=True)
class DiffResult:
    old_label: str
    new_label: str
    semantic: SemanticDiff | None  # None when a side could not be parsed
    text: str  # the unified diff, kept for the fallback and for `--format unified`
    note: str = ""  # what a reader must know about the sides (e.g. the work tree was compared)

    @property
    def changed(self) -> bool:
        return not self.semantic.is_empty if self.semantic is not None else bool(self.text)

    def to_json(self) -> dict[str, Any]:
        head = {"old": self.old_label, "new": self.new_label, "changed": self.changed}
        if self.note:
            head["note"] = self.note
        if self.semantic is not None:
            return {**head, **self.semantic.to_json()}
        return {**head, "unified": self.text}


def _compare(
    kind: str,
    old: Bundle,
    new: Bundle,
    old_label: str,
    new_label: str,
    *,
    filename: str,
    root: Path | None,
    max_share: float | None,
    old_filename: str | None = None,
) -> DiffResult:
    """Each side's includes are followed in its own files (a bundle), else from `root`.

    `old_filename` names the old side when it is another file (`lbctl diff --kind K a b`).
    """
    from lbctl.diffing import unified_files
    from lbctl.semantic import parse_config, semantic_diff
    from lbctl.store.bundle import materialized

    with materialized(old, filename) as old_root, materialized(new, filename) as new_root:
        old_model = parse_config(
            kind, old.main.decode("utf-8", "replace"), filename=old_filename or filename, root=old_root or root
        )
        new_model = parse_config(kind, new.main.decode("utf-8", "replace"), filename=filename, root=new_root or root)
    semantic = semantic_diff(old_model, new_model, max_share=max_share)
    text = unified_files({"": old.main, **old.files()}, {"": new.main, **new.files()}, old_label, new_label)
    return DiffResult(old_label, new_label, semantic, text)


def diff_files(kind: str, a: Path, b: Path) -> DiffResult:
    contents = []
    for path in (a, b):
        try:
            contents.append(path.read_bytes())
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    old, new = Bundle(contents[0]), Bundle(contents[1])
    return _compare(kind, old, new, str(a), str(b), filename=str(b), root=b.parent, max_share=None, old_filename=str(a))


def diff_target(
    ws: Workspace, name: str, a: str | None, b: str | None, *, live: bool, cached: bool = False
) -> DiffResult:
    """A vs B; B left out is what `git diff` compares: the work tree when the target's files
    have uncommitted edits (else HEAD), or the index with `cached`."""
    from lbctl.engine.gates import effective_max_share
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import bundle_at, bundle_in_index, bundle_in_worktree

    target = ws.target(name)
    state = ws.journal.state(name)
    max_share = effective_max_share(ws.config.policy_for(target), target)

    kind = kind_for(target)
    note = ""

    def content(selector: str) -> tuple[Bundle, str]:
        rev = select(ws.store, ws.journal, state, selector).rev
        data = bundle_at(ws.store, kind, target, rev)
        if data is None:
            raise UsageError(f"revision {rev[:10]} has no {target.source}")
        return data, f"{rev[:10]}:{target.source}"

    if live:
        from lbctl.drivers import driver_for
        from lbctl.engine.recovery import record_pending

        with driver_for(target) as driver:
            recorded = record_pending(ws, target, driver.transport)  # an operation that died: recorded first
            if recorded is not None:
                state = ws.journal.state(name)
                note = f"recorded an interrupted operation: {recorded}"
            old, old_label = content(state.live) if state.live else content("HEAD")
            running = driver.running(old.rels) or Bundle(b"")
        new, new_label = running, f"running:{target.path}"
    else:
        shown = a or "live"  # how the user names the old side, for the notes
        if a is None:
            if state.live is None:
                raise UsageError(
                    f"lbctl has not deployed to {name} yet: nothing is live to compare with",
                    hint=f"compare two revisions (`lbctl diff {name} A B`) or the LB (`--live`)",
                )
            a = state.live
        old, old_label = content(a)
        if b is not None:
            new, new_label = content(b)
        elif cached:
            staged = bundle_in_index(ws.store, kind, target)
            if staged is None:
                raise UsageError(f"{target.source} is not in the index", hint="`git add` it, or leave out --cached")
            new, new_label = staged, f"index:{target.source}"
            note = f"compared with the index (staged edits); `lbctl diff {name} {shown} HEAD` compares the commit"
        else:
            new, new_label = content("HEAD")
            edited = bundle_in_worktree(ws.root, kind, target)
            if edited is not None and edited != new:
                new, new_label = edited, f"working tree:{target.source}"
                note = (
                    f"compared with the working tree: {target.source} (or a file it includes) has uncommitted "
                    f"edits; `lbctl diff {name} {shown} HEAD` compares the commit, --cached the index"
                )
    result = _compare(
        target.kind,
        old,
        new,
        old_label,
        new_label,
        filename=target.source,
        root=ws.root,
        max_share=max_share,
    )
    return replace(result, note=note) if note else result
