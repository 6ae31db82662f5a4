"""`lbctl deploy` and `lbctl rollback`: the commands that change a load balancer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from lbctl.errors import ExitCode, StoreError, UsageError
from lbctl.store.selectors import select
from lbctl.store.workspace import Workspace

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.engine.execute import Candidate, Outcome, Reporter
    from lbctl.engine.plan import Plan
    from lbctl.store.journal import TargetState
    from lbctl.transports.base import Transport

Confirm = Callable[["Plan"], bool]


def deploy(
    ws: Workspace,
    name: str,
    *,
    file: Path | None = None,
    message: str | None = None,
    ticket: str | None = None,
    rev: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    reason: str | None = None,
    checksum: str | None = None,
    confirm_within: float | None = None,
    trailers: dict[str, str] | None = None,
    confirm: Confirm,
    report: Reporter,
    held_by: str | None = None,
    connection: Transport | None = None,
) -> Outcome:
    """`held_by`, `connection`: the caller holds the target's locks (and team lease) already, and its open
    connection to the target (`lbctl.engine.execute.apply_change`)."""
    from lbctl.engine.execute import apply_change

    target = ws.target(name)
    candidate = deploy_candidate(ws, target, file=file, rev=rev, message=message, ticket=ticket, trailers=trailers)
    if not dry_run:
        ws.store.identity()
    with contextlib.nullcontext() if dry_run or held_by else shared(ws, name, "deploy", report, force=force):
        return apply_change(
            ws,
            target,
            candidate,
            op="deploy",
            confirm=confirm,
            dry_run=dry_run,
            force=force,
            reason=reason,
            expected_checksum=checksum,
            report=report,
            confirm_within=confirm_within,
            held_by=held_by,
            connection=connection,
        )


def deploy_plan(
    ws: Workspace,
    plan: Plan,
    *,
    force: bool = False,
    reason: str | None = None,
    checksum: str | None = None,
    confirm_within: float | None = None,
    confirm: Confirm = lambda plan: True,
    report: Reporter = lambda stage, message: None,
) -> Outcome:
    """Put live a plan computed beforehand (`lbctl.engine.plan.plan_change`: a fleet shows every
    member's plan before any is touched), with the store's remote around it as `deploy` has: a stale
    view refused, the team lease held, the branch and the journal pushed after."""
    from lbctl.engine.execute import execute

    target = ws.target(plan.target)
    ws.store.identity()
    with shared(ws, target.name, plan.op, report, force=force):
        return execute(
            ws,
            target,
            plan,
            confirm=confirm,
            force=force,
            reason=reason,
            expected_checksum=checksum,
            report=report,
            confirm_within=confirm_within,
        )


def deploy_candidate(
    ws: Workspace,
    target: Target,
    *,
    file: Path | None = None,
    message: str | None = None,
    ticket: str | None = None,
    rev: str | None = None,
    trailers: dict[str, str] | None = None,
) -> Candidate:
    """What `lbctl deploy` puts live on `target`: `file` as its source (committed once the LB took it),
    else the store revision `rev` (a selector), else the target's newest one. Refuses, as deploy does,
    a store whose work tree has edits to what the deploy reads. `trailers` are added to the new
    commit that `file` makes (a drill's `Lbctl-Drill`)."""
    from lbctl.engine.plan import Candidate
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import bundle_at, expand, revision_of

    kind = kind_for(target)
    store = ws.store
    if file is not None and rev is not None:
        raise UsageError("--file and --rev cannot be used together", hint="--file deploys a file, --rev a revision")
    if file is not None:
        try:
            content = file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --file {file}: {exc.strerror}") from None
        store.require_clean(allow=(target.source,), only=_own_files(ws, target))
        store.identity()
        trailers = {
            "Lbctl-Target": target.name,
            "Lbctl-Ticket": ticket or "",
            "Lbctl-Reason": message or "",
            **(trailers or {}),
        }
        # F replaces the main file only; the files it includes come from the store as they are.
        bundle = expand(store, kind, target, "HEAD", content)
        head_rev = revision_of(store, kind, target) if store.content_at("HEAD", target.source) == content else None
        if head_rev is not None:  # F is the main file at HEAD: its bundle is HEAD's
            candidate = Candidate(bundle=bundle, rev=head_rev, label="HEAD")
        else:
            candidate = Candidate(
                bundle=bundle,
                rev=None,
                message=message or f"Update {target.name} from {file.name}",
                trailers=trailers,
                label=str(file),
            )
    else:
        if rev is None:
            store.require_clean(only=_own_files(ws, target))
        state = ws.journal.state(target.name)
        sha = select(store, ws.journal, state, rev).rev if rev else revision_of(store, kind, target)
        if sha is None:
            raise StoreError(f"{target.source} has never been committed", hint="commit it, or use --file")
        at_rev = bundle_at(store, kind, target, sha)
        if at_rev is None:
            raise UsageError(f"revision {sha[:10]} has no {target.source}")
        candidate = Candidate(bundle=at_rev, rev=sha, label=sha[:10])
    return candidate


@contextlib.contextmanager
def shared(ws: Workspace, name: str, op: str, report: Reporter, *, force: bool = False) -> Iterator[None]:
    """The store's remote around a change (`lbctl.store.sync`, `lbctl.store.lease`): before it, a deploy refuses a
    stale view; the team-wide lease is held during it; after it, the branch and journal are pushed.
    A rollback never needs the remote: unreachable, it goes ahead and pushes next time."""
    from lbctl.store import sync

    if sync.remote_of(ws) is None:
        yield
        return
    from lbctl.store import lease

    if op == "deploy":
        for warning in sync.require_fresh(ws, name, force=force).warnings:
            report("sync", warning)
    with lease.held(ws, name, op, required=op == "deploy" and not force) as holding:
        try:
            yield
        finally:
            done = sync.publish_after(ws, op=op, target=name, release=holding.handoff() if holding else None)
            if holding is not None:
                holding.released = done.released
            for warning in done.warnings:
                report("sync", warning)


def _own_files(ws: Workspace, target: Target) -> list[str]:
    """What a deploy to `target` reads from the store: lbctl.toml and the target's files."""
    from lbctl.config import CONFIG_NAME
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import store_paths

    return [CONFIG_NAME, *store_paths(ws.store, kind_for(target), target)]


def rollback(
    ws: Workspace,
    name: str,
    *,
    to: str = "last-good",
    message: str | None = None,
    ticket: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    reason: str | None = None,
    explain: bool = True,
    confirm_within: float | None = None,
    confirm: Confirm,
    report: Reporter,
    held_by: str | None = None,
    connection: Transport | None = None,
) -> Outcome:
    from lbctl.engine.execute import Outcome, apply_change, rollback_candidate
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import bundle_at

    target = ws.target(name)
    state = ws.journal.state(name)
    kind = kind_for(target)
    chosen = select(ws.store, ws.journal, state, to, content_of=lambda rev: bundle_at(ws.store, kind, target, rev))
    if not dry_run:
        # Only this target's files: an edit in progress elsewhere must not hold up the way back.
        from lbctl.store.bundle import store_paths

        ws.store.require_clean(only=store_paths(ws.store, kind, target))
        ws.store.identity()

    def with_ticket(candidate: Candidate) -> Candidate:
        if ticket and candidate.rev is None:  # a new commit carries the ticket as deploy's does
            return replace(candidate, trailers={**candidate.trailers, "Lbctl-Ticket": ticket})
        return candidate

    candidate = with_ticket(rollback_candidate(ws, target, state, chosen.rev, chosen.why, message))

    def rechoose(now: TargetState) -> Candidate:  # an interrupted operation was recorded meanwhile
        nonlocal chosen
        chosen = select(ws.store, ws.journal, now, to, content_of=lambda rev: bundle_at(ws.store, kind, target, rev))
        return with_ticket(rollback_candidate(ws, target, now, chosen.rev, chosen.why, message))

    with contextlib.nullcontext() if dry_run or held_by else shared(ws, name, "rollback", report):
        outcome = apply_change(
            ws,
            target,
            candidate,
            op="rollback",
            confirm=confirm,
            dry_run=dry_run,
            force=force,
            reason=reason,
            explain=explain,
            report=report,
            rechoose=rechoose,
            confirm_within=confirm_within,
            held_by=held_by,
            connection=connection,
        )
    if outcome.verdict == "unchanged":
        return Outcome(
            op="rollback",
            target=name,
            verdict="unchanged",
            exit_code=ExitCode.OK,
            plan=outcome.plan,
            message=f"{name} is already at {to} ({chosen.rev[:10]}) and healthy; nothing to do",
            to_rev=chosen.rev,
        )
    return outcome
