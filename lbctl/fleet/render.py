"""A fleet's plan and result as text (a per-member table) or JSON, and its progress lines on stderr."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from lbctl.errors import ExitCode
from lbctl.masking import mask_message
from lbctl.render import _color, emit_json

if TYPE_CHECKING:
    from lbctl.fleet.plan import FleetPlan, Report
    from lbctl.fleet.rollout import FleetResult

_print_lock = threading.Lock()


def progress(quiet: bool) -> Report:
    """One line per member event on stderr (members work in parallel: lines never interleave)."""

    def report(member: str, event: str, message: str) -> None:
        if quiet or message == "...":
            return
        with _print_lock:
            print(f"  {member:<14} {event:<14} {mask_message(message)}", file=sys.stderr, flush=True)

    return report


@contextlib.contextmanager
def live_or_lines(quiet: bool, *, live: bool) -> Iterator[Report]:
    """On a terminal (`live`): a table of the members, each with its latest event, redrawn in place;
    otherwise `progress`'s lines."""
    if quiet or not live or not sys.stderr.isatty():
        yield progress(quiet)
        return
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    rows: dict[str, tuple[str, str]] = {}
    started = time.monotonic()

    def draw() -> Table:
        table = Table(box=None, pad_edge=False, title=f"{time.monotonic() - started:5.1f} s", title_justify="left")
        for column in ("member", "event", "detail"):
            table.add_column(column, no_wrap=column != "detail", overflow="ellipsis")
        for name, (event, message) in rows.items():
            style = "red" if event in ("failed", "rolled-back", "restore-failed") else ""
            style = "green" if event in ("confirmed", "changed", "restored", "good") else style
            table.add_row(name, f"[{style}]{event}[/]" if style else event, message.splitlines()[0][:100])
        return table

    with Live(draw(), console=Console(stderr=True), refresh_per_second=8, transient=False) as screen:

        def report(member: str, event: str, message: str) -> None:
            if message == "...":
                return
            with _print_lock:
                rows[member] = (event, mask_message(message))
                screen.update(draw())

        yield report


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    widths[-1] = 0  # the last column is free text
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def plan_table(plan: FleetPlan) -> str:
    rows = [
        (
            m.name,
            m.verdict,
            _short(m.from_rev),
            _short(m.to_rev),
            m.traffic,
            m.gates + ("" if m.watchdog or m.verdict != "change" else " (no watchdog)"),
            mask_message(m.summary),
        )
        for m in plan.members
    ]
    waves = " | ".join(", ".join(w) for w in plan.waves) or "(none)"
    text = table(rows, ("MEMBER", "PLAN", "LIVE", "TO", "TRAFFIC", "GATES", "CHANGE / WHY"))
    return (
        f"fleet plan for @{plan.group}: canary, then batches: {waves}\n{text}\n  fleet plan checksum: {plan.checksum}"
    )


def result(res: FleetResult, *, json_out: bool) -> int:
    if json_out:
        data = res.to_json()
        if res.exit_code:
            data["error"] = {
                "code": int(res.exit_code),
                "type": res.verdict,
                "message": mask_message(res.message),
                "hint": hint(res),
            }
        emit_json(data)
        return int(res.exit_code)
    if res.plan is not None and res.verdict in ("dry-run", "refused", "unchanged"):
        print(plan_table(res.plan))
    if res.members:
        rows = [
            (
                m.name,
                "-" if m.batch is None else str(m.batch),
                m.verdict,
                _short(m.from_rev),
                _short(m.now),
                mask_message(m.message.splitlines()[0] if m.message else ""),
            )
            for m in res.members
        ]
        print(table(rows, ("MEMBER", "BATCH", "RESULT", "BEFORE", "RUNS NOW", "DETAIL")))
    style = "green" if res.exit_code == 0 else ("yellow" if res.exit_code in (1, 8) else "red")
    mark = {"good": "✓", "unchanged": "✓", "dry-run": "·", "rolled-back": "↩"}.get(res.verdict, "✗")
    print(_color(f"{mark} {mask_message(res.message)}", style))
    if res.rollout_id:
        print(f"  rollout {res.rollout_id}: `lbctl log @{res.group}`")
    if res.exit_code in (ExitCode.ROLLBACK_FAILED, ExitCode.FLEET_MIXED):
        print(f"  hint: {hint(res)}", file=sys.stderr)
    return int(res.exit_code)


def hint(res: FleetResult) -> str:
    """What to do after a rollout (or a group rollback) that did not end with every member good."""
    group = f"@{res.group}"
    if res.exit_code == ExitCode.ROLLBACK_FAILED:
        return f"page a human: `lbctl status {group}` shows which member is unhealthy"
    if res.exit_code == ExitCode.FLEET_MIXED:
        return (
            f"`lbctl status {group}` shows who runs what; `lbctl rollback {group} --to last-good` puts every"
            f" member back, or fix the failed members and `lbctl deploy {group}` again"
        )
    return f"see `lbctl log {group}` and `lbctl status {group}`"


def confirmer(yes: bool) -> Any:
    def confirm(plan: FleetPlan) -> bool:
        if yes:
            return True
        print(plan_table(plan), file=sys.stderr)
        import typer

        members = sum(len(w) for w in plan.waves)
        return bool(typer.confirm(f"Roll this change out to {members} member(s) of @{plan.group}?", err=True))

    return confirm


def _short(rev: str | None) -> str:
    return rev[:10] if rev else "-"
