"""`lbctl drill SCENARIO --target T`: a rehearsal on a target of the store, not a sandbox.

Before anything changes, the target must be able to host the drill: a HAProxy target (the
scenarios are derived from its config through the semantic model, `lbctl.commands.drill_scenarios`)
whose config is a single file on a host where the commit-confirm watchdog can be armed (the
kill switch), live and healthy on a revision the store holds, with a last-good to go back to,
and no edits in progress in its files. A production target (`environment = "production"`)
needs `--force --reason`: refused otherwise (exit 4); the reason goes into the drill commit's
`Lbctl-Forced` trailer. Then `lbctl.commands.drill.rehearse` does the rest, as for the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lbctl.commands.drill_scenarios import SCENARIOS, derive
from lbctl.errors import Refused, UsageError

if TYPE_CHECKING:
    from lbctl.commands.drill import DrillReport
    from lbctl.store.workspace import Workspace


def run_target_drill(
    ws: Workspace,
    name: str,
    scenario: str,
    *,
    max_duration: float,
    force: bool = False,
    reason: str | None = None,
    detect_goal: float = 300.0,
    restore_goal: float = 900.0,
    poll: float = 0.5,
    on_ready: Callable[[Path, str], None] | None = None,
    say: Callable[[str], None] = print,
) -> DrillReport:
    """Break `name` the scenario's way, with the LB's watchdog as the kill switch; report."""
    from lbctl.commands.drill import rehearse
    from lbctl.drivers.watchdog import refusal
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import bundle_at, store_paths
    from lbctl.store.selectors import select

    if scenario not in SCENARIOS:
        raise UsageError(f"unknown drill scenario {scenario!r}", hint=", ".join(SCENARIOS))
    target = ws.target(name)
    if target.kind != "haproxy":
        derive(scenario, target.kind, "", filename=target.source)  # refused (exit 2): HAProxy only, for now
    trailers = guard(target.name, target.environment, force=force, reason=reason)
    kind = kind_for(target)
    state = ws.journal.state(name)
    if state.live is None:
        raise UsageError(
            f"{name}: lbctl has never deployed to it, so a drill would have nothing to go back to",
            hint=f"`lbctl deploy {name}` (or `lbctl pull {name}`) first, then drill",
        )
    if state.status != "good":
        raise Refused(
            f"{name} is {state.status}, not good: a drill starts from a healthy target",
            hint=f"`lbctl status {name}`; fix or confirm what is pending, then drill",
        )
    live = bundle_at(ws.store, kind, target, state.live)
    if live is None:
        raise UsageError(f"{name}: the store has no {target.source} at its live revision {state.live[:10]}")
    why = refusal(target, len(live.rels) > 0)
    if why:
        raise UsageError(why.replace("--confirm-within", "a drill's kill switch (the watchdog)"), hint="use --sandbox")
    change = derive(scenario, target.kind, live.main.decode(), filename=target.source)
    ws.store.require_clean(only=store_paths(ws.store, kind, target))
    if bundle_at(ws.store, kind, target, "HEAD") != live:
        raise Refused(
            f"{name}: the store's HEAD has changes to {target.source} that are not live yet",
            hint=f"deploy or revert them first (`lbctl diff {name}`): a drill changes only what is live",
        )
    select(ws.store, ws.journal, state, "last-good")  # the trainee's way back must exist (exit 2 if not)
    return rehearse(
        ws,
        name,
        scenario,
        change.text,
        what=change.summary,
        max_duration=max_duration,
        detect_goal=detect_goal,
        restore_goal=restore_goal,
        poll=poll,
        on_ready=on_ready,
        say=say,
        trailers=trailers,
    )


def guard(name: str, environment: str | None, *, force: bool, reason: str | None) -> dict[str, str]:
    """Staging and unmarked targets drill; production only with `--force --reason` (else exit 4)."""
    if environment != "production":
        return {}
    if not force or not (reason or "").strip():
        raise Refused(
            f"{name} is a production target: a drill breaks it on purpose",
            hint='drill a staging target, or pass --force --reason "why, and who agreed" (recorded in the commit)',
        )
    return {"Lbctl-Forced": f"drill on production: {' '.join((reason or '').split())}"}
