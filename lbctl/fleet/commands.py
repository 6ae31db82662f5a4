"""The `@GROUP` forms of `deploy` and `rollback`, called by the CLI with its parsed options."""

from __future__ import annotations

from pathlib import Path

from lbctl.errors import UsageError


def deploy(
    store: str | None,
    name: str,
    *,
    file: Path | None,
    rev: str | None,
    message: str | None,
    dry_run: bool,
    force: bool,
    reason: str | None,
    checksum: str | None,
    canary: int | None,
    batches: str | None,
    max_failures: int | None,
    parallel: int | None,
    confirm_within: float | None,
    yes: bool,
    json_out: bool,
    quiet: bool,
) -> int:
    from lbctl.config.schema import rollout_batch
    from lbctl.fleet import render, rollout
    from lbctl.store.workspace import open_workspace

    ws = open_workspace(store)
    if dry_run:
        from lbctl.store.sync import refresh

        refresh(ws)
    wanted = None
    if batches is not None:
        try:
            wanted = [rollout_batch(b) for b in batches.split(",") if b.strip()]
        except ValueError as exc:
            raise UsageError(f"--batches: {exc}") from None
    for flag, value in (("--canary", canary), ("--max-failures", max_failures)):
        if value is not None and value < 0:
            raise UsageError(f"{flag} must be 0 or more")
    if parallel is not None and parallel < 1:
        raise UsageError("--parallel must be 1 or more")
    settings = rollout.settings_for(
        ws,
        name,
        canary=canary,
        batches=wanted,
        max_failures=max_failures,
        parallel=parallel,
        confirm_within=confirm_within,
    )
    # A live table only when nothing asks a question meanwhile (--yes, or a dry run).
    with render.live_or_lines(quiet or json_out, live=yes or dry_run) as report:
        result = rollout.deploy(
            ws,
            name,
            settings,
            rev=rev,
            file=file,
            message=message,
            dry_run=dry_run,
            force=force,
            reason=reason,
            checksum=checksum,
            confirm=render.confirmer(yes),
            report=report,
        )
    return render.result(result, json_out=json_out)


def rollback(
    store: str | None,
    name: str,
    *,
    to: str,
    dry_run: bool,
    force: bool,
    reason: str | None,
    json_out: bool,
    quiet: bool,
) -> int:
    from lbctl.fleet import render, rollout
    from lbctl.store.workspace import open_workspace

    ws = open_workspace(store)
    with render.live_or_lines(quiet or json_out, live=True) as report:
        result = rollout.rollback(ws, name, to=to, dry_run=dry_run, force=force, reason=reason, report=report)
    return render.result(result, json_out=json_out)
