"""Put every member a rollout changed back on its own previous revision: at once, in parallel, no canary.

Each member: its commit-confirm watchdog is disarmed first (lbctl restores it now; the watchdog
must not act later), then the single-target rollback (`operations.rollback`) to the revision it ran
before the rollout, with its full verification, under the lock the fleet already holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lbctl.errors import ExitCode, LbctlError
from lbctl.fleet.group import Member, member_workspace

if TYPE_CHECKING:
    from lbctl.engine.execute import Outcome
    from lbctl.fleet.holding import Holding
    from lbctl.store.workspace import Workspace


@dataclass(frozen=True)
class Restored:
    name: str
    ok: bool  # back on its previous config, verified healthy
    rev: str | None  # what it runs now, as recorded
    message: str
    event: str | None = None


def restore(
    ws: Workspace,
    changed: list[tuple[Member, str | None, str | None]],
    holding: Holding,
    *,
    parallel: int,
    report: Callable[[str, str, str], None],
) -> dict[str, Restored]:
    """`changed`: (member, the revision it ran before, its watchdog's event id or None)."""

    def one(item: tuple[Member, str | None, str | None]) -> Restored:
        member, previous, watch = item
        report(member.name, "restore", f"back to {previous[:10] if previous else 'its previous config'}")
        _disarm(member, holding, watch)
        try:
            outcome = _rollback(ws, member, previous, holding)
        except LbctlError as exc:
            report(member.name, "restore", f"FAILED: {str(exc).splitlines()[0]}")
            return Restored(member.name, False, None, str(exc).splitlines()[0])
        ok = outcome.exit_code == ExitCode.OK
        report(member.name, "restore", ("restored: " if ok else "FAILED: ") + outcome.message)
        now = outcome.to_rev if ok else (outcome.restored_rev or outcome.to_rev)
        return Restored(member.name, ok, now, outcome.message, outcome.events[-1] if outcome.events else None)

    if not changed:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(changed)))) as pool:
        return {r.name: r for r in pool.map(one, changed)}


def _disarm(member: Member, holding: Holding, watch: str | None) -> None:
    if watch is None:
        return
    from lbctl.drivers import watchdog

    transport = holding.transports.get(member.name)
    if transport is not None:
        with contextlib.suppress(Exception):  # the rollback below settles whatever the watchdog did
            watchdog.disarm(transport, member.target, watch)


def _rollback(ws: Workspace, member: Member, previous: str | None, holding: Holding) -> Outcome:
    from lbctl.commands import deploy as operations

    return operations.rollback(
        member_workspace(ws, member),
        member.name,
        to=previous or "previous",
        explain=False,
        confirm_within=0,
        confirm=lambda plan: True,
        report=lambda stage, message: None,
        held_by=holding.token,
        connection=holding.transports[member.name],
    )
