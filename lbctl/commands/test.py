"""`lbctl test`: the target's routing cases through a candidate (default: HEAD), judged by
`lbctl.engine.cases` on the answers of a sandbox of the LB's own binary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lbctl.engine.cases import RoutingReport, run_cases
from lbctl.errors import UsageError
from lbctl.store.bundle import store_files

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.store.bundle import Bundle
    from lbctl.store.workspace import Workspace


def candidate(ws: Workspace, target: Target, *, file: Path | None, rev: str | None) -> tuple[Bundle, str, str]:
    """The bundle `test` judges, as `check` does: `--file`, `--rev`, the working tree when the target's
    files have uncommitted edits, else HEAD; with its label and the store revision its other files are from."""
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import bundle_at, bundle_in_worktree, expand
    from lbctl.store.selectors import select

    kind = kind_for(target)
    if file is not None and rev is not None:
        raise UsageError("--file and --rev cannot be used together")
    if file is not None:
        try:
            main = file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --file {file}: {exc.strerror}") from None
        return expand(ws.store, kind, target, "HEAD", main), str(file), "HEAD"
    state = ws.journal.state(target.name)
    sha = select(ws.store, ws.journal, state, rev).rev if rev else ws.store.resolve("HEAD")
    at_rev = bundle_at(ws.store, kind, target, sha)
    edited = None if rev else bundle_in_worktree(ws.root, kind, target)
    if edited is not None and edited != at_rev:  # as `check`: the files being edited, not HEAD
        return edited, f"working tree:{target.source}", sha
    if at_rev is None:
        raise UsageError(f"revision {sha[:10]} has no {target.source}")
    return at_rev, f"{sha[:10]}:{target.source}", sha


def test(ws: Workspace, name: str, *, file: Path | None = None, rev: str | None = None) -> RoutingReport:
    """`lbctl test`: the target's routing cases through the candidate (default: HEAD)."""
    target = ws.target(name)
    routes = ws.config.routes_for(target)
    bundle, label, at = candidate(ws, target, file=file, rev=rev)
    if not routes:
        return RoutingReport(name, label, target.kind)
    return run_cases(target, bundle, routes, find_file=store_files(ws.store, target, at, bundle), label=label)
