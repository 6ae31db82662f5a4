"""`lbctl diff`: what a change means, between files, revisions, or the store and the LB."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    old: bytes,
    new: bytes,
    old_label: str,
    new_label: str,
    *,
    filename: str,
    root: Path | None,
    max_share: float | None,
) -> DiffResult:
    from lbctl.diffing import unified
    from lbctl.semantic import diff_texts

    semantic = diff_texts(
        kind,
        old.decode("utf-8", "replace"),
        new.decode("utf-8", "replace"),
        filename=filename,
        root=root,
        max_share=max_share,
    )
    return DiffResult(old_label, new_label, semantic, unified(old, new, old_label, new_label))


def diff_files(kind: str, a: Path, b: Path) -> DiffResult:
    contents = []
    for path in (a, b):
        try:
            contents.append(path.read_bytes())
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return _compare(kind, contents[0], contents[1], str(a), str(b), filename=str(b), root=b.parent, max_share=None)


def diff_target(ws: Workspace, name: str, a: str | None, b: str | None, *, live: bool) -> DiffResult:
    from lbctl.gates import effective_max_share
    from lbctl.transports import transport_for

    target = ws.target(name)
    state = ws.journal.state(name)
    max_share = effective_max_share(ws.config.policy_for(target), target)

    def content(selector: str) -> tuple[bytes, str]:
        rev = select(ws.store, ws.journal, state, selector).rev
        data = ws.store.content_at(rev, target.source)
        if data is None:
            raise UsageError(f"revision {rev[:10]} has no {target.source}")
        return data, f"{rev[:10]}:{target.source}"

    if live:
        from lbctl.lifecycle import _connect, _read

        with _connect(transport_for(target), target) as transport:
            running = _read(transport, target) or b""
        old, old_label = content(state.live) if state.live else content("HEAD")
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
