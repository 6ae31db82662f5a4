"""`status`, `diff`, `check` and `log` of a group: the single-target views, member by member, and the
group's rollouts from the journal."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbctl.config.groups import member_names
from lbctl.fleet import group as groups
from lbctl.fleet import read_width
from lbctl.fleet.group import member_workspace

if TYPE_CHECKING:
    from lbctl.store.workspace import Workspace


def status(ws: Workspace, name: str, *, probe: bool, json_out: bool) -> int:
    from lbctl import render
    from lbctl.commands.status import status as statuses

    members = groups.members(ws, name)
    width = groups.rollout_settings(ws, name).rollout.parallel
    with ThreadPoolExecutor(max_workers=read_width(width, len(members))) as pool:
        found = pool.map(lambda m: statuses(member_workspace(ws, m), m.name, probe=probe), members)
        results = [r for rows in found for r in rows]
    return render.status(results, json_out=json_out)


def diff(ws: Workspace, name: str, a: str | None, b: str | None, *, live: bool, cached: bool, fmt: str) -> bool:
    """Each member's diff, under its name; True when any member has differences."""
    from lbctl import render
    from lbctl.commands import diff as compare

    changed = False
    everything: dict[str, Any] = {}
    for member in groups.members(ws, name):
        result = compare.diff_target(member_workspace(ws, member), member.name, a, b, live=live, cached=cached)
        changed = changed or result.changed
        if fmt == "json":
            everything[member.name] = result.to_json()
            continue
        print(f"== {member.name} ==", flush=True)
        render.diff(result, fmt=fmt)
    if fmt == "json":
        render.emit_json({"group": name, "members": everything})
    return changed


def check(ws: Workspace, name: str, *, file: Path | None, rev: str | None, json_out: bool) -> int:
    from lbctl import render
    from lbctl.commands import check as checking

    worst = 0
    reports = []
    for member in groups.members(ws, name):
        report = checking.check(member_workspace(ws, member), member.name, file=file, rev=rev)
        reports.append(report)
        if not json_out:
            print(f"== {member.name} ==", flush=True)
            worst = max(worst, render.check_report(report, json_out=False))
        else:
            worst = max(worst, 2 if report.config_problems else (0 if report.ok else 3))
    if json_out:
        render.emit_json({"group": name, "ok": worst == 0, "members": [r.to_json() for r in reports]})
    return worst


def log(ws: Workspace, name: str, *, limit: int, json_out: bool) -> int:
    """The group's rollouts, newest first, each with its members: batch, result, revisions."""
    from lbctl.fleet.render import table
    from lbctl.masking import mask_message
    from lbctl.render import _color, emit_json

    member_names(ws.config, name)  # an unknown group is a usage error, not an empty log
    events = []
    for event in ws.journal.events("@" + name):
        events.append(event)
        if len(events) >= limit:
            break
    if json_out:
        emit_json({"group": name, "rollouts": [e.to_json() for e in events]})
        return 0
    if not events:
        print(f"no rollouts to @{name} yet", file=sys.stderr)
    for event in events:
        style = "green" if event.verdict in ("good", "rollback-good") else "red"
        waves = " | ".join(", ".join(w) for w in event.data.get("waves", [])) or "all at once"
        print(
            f"{event.finished[:19]}  @{name}  {event.data.get('op', 'deploy'):<8} "
            + _color(event.verdict, style)
            + f"  rollout {event.id} by {event.who}"
        )
        print(f"    batches: {waves}")
        print(f"    {mask_message(event.message.splitlines()[0])[:300]}")
        rows = [
            (
                m["name"],
                "-" if m.get("batch") is None else str(m["batch"]),
                m["verdict"],
                (m.get("from_rev") or "-")[:10],
                (m.get("now") or "-")[:10],
            )
            for m in event.data.get("members", [])
        ]
        if rows:
            text = table(rows, ("MEMBER", "BATCH", "RESULT", "BEFORE", "RUNS NOW"))
            print("\n".join("    " + line for line in text.splitlines()))
    return 0
