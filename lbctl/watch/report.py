"""What `lbctl watch` prints: a table per evaluation (`--once`), one line per alert change (following)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lbctl.config import Target, WatchSettings
from lbctl.errors import ExitCode, UsageError
from lbctl.watch.evaluate import Change, TargetReport
from lbctl.watch.runner import TargetInfo, WatchResult

if TYPE_CHECKING:
    from lbctl.store.workspace import Workspace


def select(ws: Workspace, name: str | None) -> list[Target]:
    """TARGET, @GROUP (every target whose `group` it is), or every target."""
    if name and name.startswith("@"):
        group = name[1:]
        # The members as `deploy @GROUP` sees them (`targets = [...]` names or globs, and the targets
        # that name their group), in the same order.
        from lbctl.config.groups import member_names

        try:
            names = member_names(ws.config, group)
        except UsageError as exc:
            raise UsageError(f"no target belongs to group {group!r}", hint=exc.hint or exc.message) from None
        return [ws.config.targets[member] for member in names]
    targets = ws.targets(name)
    if not targets:
        raise UsageError("no targets to watch", hint="add a [targets.NAME] table to lbctl.toml")
    return targets


def once(result: WatchResult, *, json_out: bool, quiet: bool) -> int:
    from lbctl.render import emit_json

    if json_out:
        emit_json(result.to_json())
    else:
        infos = {i.name: i for i in result.infos}
        for report in result.reports:
            print(_table(report, infos.get(report.target)))
        if result.alerts:
            print(f"{len(result.alerts)} alert(s): " + "; ".join(a.message for a in result.alerts))
    if result.alerting:
        return int(ExitCode.WATCH_ALERT)
    unread = [r.target for r in result.reports if r.error]
    if unread:
        print(f"lbctl: could not read the counters of {', '.join(unread)}", file=sys.stderr)
        return int(ExitCode.UNREACHABLE)
    return 0


def _table(report: TargetReport, info: TargetInfo | None) -> str:
    head = f"{report.target}: {report.verdict}"
    if report.error:
        return f"{head} ({report.error})"
    head += f" over {report.window:.1f} s"
    if report.resets:
        head += f" ({report.resets} counter reset(s) skipped)"
    lines = [head]
    for b in report.backends:
        note = f" ({b.note})" if b.note else ""
        lines.append(f"  {b.name}: {b.verdict}, {b.requests} sessions, {b.http_5xx} 5xx{note}")
        for s in b.servers:
            actual = "-" if s.actual is None else f"{s.actual:.0%}"
            intended = "-" if s.intended is None else f"{s.intended:.0%}"
            lines.append(f"    {s.name:<16} {actual:>5} (intended {intended:>4})  {s.state}, weight {s.weight}")
        lines.extend(f"    ! {c.message}" for c in b.conditions)
    if report.verdict == "alerting" and info is not None:
        lines.append(f"  to undo the last change: {info.rollback}")
    return "\n".join(lines)


def follow(
    ws: Workspace, targets: list[Target], settings: WatchSettings, *, duration: float | None, json_out: bool
) -> int:
    """Watch until interrupted (Ctrl-C, SIGTERM) or `duration`; one line per alert that fires or clears."""
    from lbctl.render import emit_json
    from lbctl.watch.runner import run

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())

    def said(change: Change, info: TargetInfo | None) -> None:
        a = change.alert
        when = datetime.fromtimestamp(change.at, tz=UTC).isoformat(timespec="seconds")
        if json_out:
            emit_json(
                {"at": when, "change": change.what, "alert": a.__dict__, "rollback": info.rollback if info else None}
            )
        else:
            tail = f"; to undo: {info.rollback}" if info and change.what == "firing" else ""
            print(f"{when} {change.what.upper()} {a.target} {a.rule}: {a.message}{tail}", flush=True)

    where = []
    if settings.listen:
        where.append(f"/metrics on {settings.listen}")
    if settings.alertmanager:
        where.append(f"alerts to {settings.alertmanager}")
    names = ", ".join(t.name for t in targets)
    print(
        f"lbctl watch: {names} every {settings.interval:g} s over {settings.window:g} s"
        + (f"; {', '.join(where)}" if where else ""),
        file=sys.stderr,
        flush=True,
    )

    def rolled(target: str, outcome: object) -> None:
        text = getattr(outcome, "message", None) or str(outcome)
        if json_out:
            emit_json({"auto_rollback": target, "message": text, "exit_code": int(getattr(outcome, "exit_code", 0))})
        else:
            print(f"AUTO-ROLLBACK {target}: {text}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):  # the usual way to stop watching
        run(ws, targets, settings, stop=stop, duration=duration, on_change=said, on_rollback=rolled)
    return 0
