"""`lbctl diff`: what a change means, between files, revisions, or the store and the LB."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbctl.bundle import Bundle
from lbctl.errors import UsageError
from lbctl.selectors import select
from lbctl.workspace import Workspace

if TYPE_CHECKING:
    from lbctl.semantic import SemanticDiff


@dataclass(frozen=True)
class DiffResult:
    old_label: str
    new_label: str
    semantic: SemanticDiff | None  # None when a side could not be parsed
    text: str  # the unified diff, kept for the fallback and for `--format unified`

    @property
    def changed(self) -> bool:
        return not self.semantic.is_empty if self.semantic is not None else bool(self.text)

    def to_json(self) -> dict[str, Any]:
        if self.semantic is not None:
            return {"old": self.old_label, "new": self.new_label, "changed": self.changed, **self.semantic.to_json()}
        return {"old": self.old_label, "new": self.new_label, "changed": self.changed, "unified": self.text}


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
    from lbctl.bundle import materialized
    from lbctl.diffing import unified_files
    from lbctl.semantic import parse_config, semantic_diff

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


def diff_target(ws: Workspace, name: str, a: str | None, b: str | None, *, live: bool) -> DiffResult:
    from lbctl.bundle import bundle_at
    from lbctl.gates import effective_max_share
    from lbctl.kinds import kind_for
    from lbctl.transports import transport_for

    target = ws.target(name)
    state = ws.journal.state(name)
    max_share = effective_max_share(ws.config.policy_for(target), target)

    kind = kind_for(target)

    def content(selector: str) -> tuple[Bundle, str]:
        rev = select(ws.store, ws.journal, state, selector).rev
        data = bundle_at(ws.store, kind, target, rev)
        if data is None:
            raise UsageError(f"revision {rev[:10]} has no {target.source}")
        return data, f"{rev[:10]}:{target.source}"

    if live:
        from lbctl.lifecycle import _connect, _read

        old, old_label = content(state.live) if state.live else content("HEAD")
        with _connect(transport_for(target), target) as transport:
            running = _read(transport, target, old.rels) or Bundle(b"")
        new, new_label = running, f"running:{target.path}"
    else:
        if a is None:
            if state.live is None:
                raise UsageError(
                    f"lbctl has not deployed to {name} yet: nothing is live to compare with",
                    hint=f"compare two revisions (`lbctl diff {name} A B`) or the LB (`--live`)",
                )
            a, b = state.live, b or "HEAD"
        old, old_label = content(a)
        new, new_label = content(b or "HEAD")
    return _compare(
        target.kind,
        old,
        new,
        old_label,
        new_label,
        filename=target.source,
        root=ws.root,
        max_share=max_share,
    )
