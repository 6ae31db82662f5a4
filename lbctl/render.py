"""Turning results into text for people and JSON for scripts.

Progress goes to stderr, results to stdout, so `--json` output stays parseable.
Every message and every JSON string goes through `lbctl.masking` on its way out,
so no secret from a config reaches the terminal, a CI log or a script.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lbctl.masking import hide, mask_json, mask_message

if TYPE_CHECKING:
    from lbctl.commands.check import CheckReport
    from lbctl.commands.diff import DiffResult
    from lbctl.commands.log import LogEntry
    from lbctl.commands.status import TargetStatus
    from lbctl.engine.execute import Outcome, Reporter
    from lbctl.engine.plan import Plan


def say(text: str, *, quiet: bool = False) -> None:
    if not quiet:
        print(mask_message(text))


def emit_json(data: Any) -> None:
    print(json.dumps(mask_json(data), indent=2, sort_keys=False, default=str))


def colored(stream: Any) -> bool:
    """Whether to style what goes to `stream`: a terminal, and no NO_COLOR (https://no-color.org),
    which turns off every style, bold and dim included."""
    return bool(stream.isatty()) and not os.environ.get("NO_COLOR")


def _color(text: str, style: str) -> str:
    if not colored(sys.stdout):
        return text
    codes = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2"}
    return f"\033[{codes[style]}m{text}\033[0m"


def colorize_diff(text: str) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            out.append(_color(line, "bold"))
        elif line.startswith("+"):
            out.append(_color(line, "green"))
        elif line.startswith("-"):
            out.append(_color(line, "red"))
        else:
            out.append(line)
    return "\n".join(out)


def reporter(quiet: bool) -> Reporter:
    def report(stage: str, message: str) -> None:
        if not quiet and message != "...":
            print(f"  {stage:<14} {mask_message(message)}", file=sys.stderr, flush=True)

    return report


def confirmer(yes: bool, json_out: bool) -> Any:
    def confirm(plan: Plan) -> bool:
        if yes:
            return True
        show_plan(plan)
        import typer

        return bool(typer.confirm(f"Apply this change to {plan.target}?", default=False, err=True))

    return confirm


def show_plan(plan: Plan) -> None:
    print(
        f"plan for {plan.target}: live {plan.from_rev[:10] if plan.from_rev else '(not deployed by lbctl)'} → "
        f"{plan.candidate_rev[:10] if plan.candidate_rev else 'new commit'}",
        file=sys.stderr,
    )
    semantic = plan.analysis.semantic if plan.analysis else None
    if semantic is not None and plan.diff:
        from lbctl.semantic import render_text

        print(render_text(semantic, color=colored(sys.stderr)), file=sys.stderr)
    else:
        print(colorize_diff(hide(plan.diff)) if plan.diff else "  (no change to the config)", file=sys.stderr)
    for problem in plan.problems:
        print(_color(f"  refused: {mask_message(problem.text)}", "red"), file=sys.stderr)
    for note in plan.notes:
        print(f"  note: {mask_message(note)}", file=sys.stderr)
    print(f"  plan checksum: {plan.checksum}", file=sys.stderr)


def outcome(result: Outcome, *, json_out: bool, quiet: bool) -> int:
    if json_out:
        data = result.to_json()
        if result.exit_code:
            data["error"] = outcome_error(result)
        emit_json(data)
        return int(result.exit_code)
    if result.verdict in ("dry-run", "refused"):
        show_plan(result.plan)
    mark = {
        "good": "✓",
        "unchanged": "✓",
        "unconfirmed": "?",
        "dry-run": "·",
        "rolled-back": "↩",
        "restore-failed": "✗",
    }.get(result.verdict, "·")
    style = "green" if result.exit_code == 0 else ("yellow" if result.exit_code == 1 else "red")
    if result.verdict == "unconfirmed":
        style = "yellow"
    print(_color(f"{mark} {mask_message(result.message)}", style))
    if not quiet and result.verification is not None:
        for check in result.verification.results:
            if result.verdict in ("rolled-back", "restore-failed"):
                print(f"    {check.name}: {'ok' if check.ok else 'FAILED'}: {mask_message(check.summary)}")
            if "backends" in check.figures:
                print("\n".join(balance_bars(check.figures)))
    if result.verdict in ("rolled-back", "restore-failed") and not quiet:
        print(f"  see `lbctl log {result.target}` and `lbctl status {result.target}`")
    return int(result.exit_code)


def outcome_error(result: Outcome) -> dict[str, Any]:
    """The `error` member of a failed outcome's JSON, shaped as the error boundary's."""
    if result.verdict == "refused":
        message = f"{result.target}: refused: " + "; ".join(result.plan.refusals)
        hint = "fix the config, or pass --force to deploy it anyway (verification still judges it)"
    else:
        message = result.message
        hint = f"see `lbctl log {result.target}` and `lbctl status {result.target}`"
    return {"code": int(result.exit_code), "type": result.verdict, "message": message, "hint": hint}


def balance_bars(figures: dict[str, Any], width: int = 24) -> list[str]:
    """Each server's share of its backend's new sessions, before → after, as bars."""
    lines = []
    for backend, data in figures.get("backends", {}).items():
        lines.append(f"    backend {backend}: {data['sessions']} new sessions (before: {data['sessions_before']})")
        for name, info in data["servers"].items():
            before, after = info.get("share_before"), info.get("share")
            bar = "█" * round((after or 0) * width)
            shown_before = f"{before:4.0%}" if before is not None else "  - "
            shown_after = f"{after:4.0%}" if after is not None else "  - "
            style = "red" if after == 0 and info.get("weight") else "green"
            lines.append(
                f"      {name:<10} {shown_before} → {shown_after} "
                + _color(f"{bar:<{width}}", style)
                + f" weight {info.get('weight')}, {info.get('status')}"
            )
    if figures.get("probes_sent"):
        lines.append(f"    lbctl sent {figures['probes_sent']} probe(s) of its own: too little real traffic")
    return lines


def check_report(report: CheckReport, *, json_out: bool) -> int:
    code = 2 if report.config_problems else (0 if report.ok else 3)
    if json_out:
        data = report.to_json()
        if not report.ok:
            data["error"] = {
                "code": code,
                "type": "validation-failed",
                "message": f"{report.candidate} fails for {report.target}: " + "; ".join(report.findings),
                "hint": "fix the config; `lbctl check` lists every finding",
            }
        emit_json(data)
        return code
    if report.semantic is not None:
        from lbctl.semantic import render_text

        print(render_text(report.semantic, color=colored(sys.stdout)))
    for note in report.notes:
        print(f"note: {mask_message(note)}")
    for finding in report.findings:
        print(_color(f"✗ {mask_message(str(finding))}", "red"))
    for problem in report.config_problems:
        print(_color(f"✗ lbctl.toml: {mask_message(problem)}", "red"))
    count = len(report.findings) + len(report.config_problems)
    verdict = "passes" if report.ok else f"fails ({count} finding(s))"
    print(
        _color(
            f"{report.candidate} {verdict} for {report.target} (validated with {report.validated_on})",
            "green" if report.ok else "red",
        )
    )
    return code


def status(results: Sequence[TargetStatus], *, json_out: bool) -> int:
    from lbctl.commands.status import exit_code

    code = exit_code(list(results))
    if json_out:
        emit_json({"targets": [r.to_json() for r in results], "exit_code": code})
        return code
    if not results:
        print("no targets in lbctl.toml")
    for r in results:
        s = r.state
        live = f"{s.live[:10]} {r.live_subject or ''}".strip() if s.live else "(nothing deployed by lbctl)"
        pending = ("unverified", "unconfirmed", "unknown")
        style = "green" if s.status == "good" else ("yellow" if s.status in pending else "red")
        print(_color(f"{r.name}", "bold") + f"  ({r.kind} via {r.transport}: {r.where})")
        print(f"  live        {live}")
        print("  state       " + _color(s.status, style) + (f" (since {s.updated})" if s.updated else ""))
        print(f"  last-good   {s.last_good[:10] if s.last_good else '(none yet)'}")
        if s.bad:
            print(f"  failed      {', '.join(b[:10] for b in s.bad[:5])}")
        drift_text = {
            "none": "none: the LB runs what the store says",
            "drifted": _color("DRIFTED: the running config differs from the live revision", "red"),
            "missing": _color("the config file is missing on the LB", "red"),
            "unknown": "unknown (lbctl has not deployed here yet)",
            "not-checked": "not checked (--offline)",
        }
        print(f"  drift       {drift_text.get(r.drift, r.drift)}")
        if r.origin is not None:
            if r.origin.matches is False:
                text = _color(f"WRONG: {r.origin.summary}, not {r.where_path}", "red")
            else:
                text = r.origin.summary
            print(f"  path        {text}")
        if r.running is not None:
            if r.running.differences:
                print("  running     " + _color("RUNNING DRIFT: the LB does not run the live revision", "red"))
                for difference in r.running.differences:
                    print(_color(f"                {difference}", "red"))
            else:
                print(f"  running     {r.running.summary}")
        for h in r.health:
            print(
                f"  health      {h['check']}: "
                + (_color("ok", "green") if h["ok"] else _color("FAILING", "red"))
                + f" ({h['detail']})"
            )
        for lock in r.locks:
            where = "on the LB" if lock.where == "lb" else "in this store"
            line = f"  lock        held {where}: {lock.describe()}"
            print(_color(line + f"; `lbctl unlock {r.name}` breaks it", "red") if lock.dead else line)
        if r.crashed:
            told = r.crashed.get("message") or (
                f"{r.crashed.get('op')} to {str(r.crashed.get('to_rev'))[:10]} started {r.crashed.get('started')} "
                f"by {r.crashed.get('holder')} did not finish: the LB runs a complete config, old or new "
                f"(`lbctl status {r.name}` without --offline reads which)"
            )
            print(_color(f"  interrupted {told}", "red"))
        for line in r.watchdog:
            style = "yellow" if line.startswith(("pending", "superseded")) else "red"
            print(_color(f"  watchdog    {line}", style))
        for problem in r.problems:
            print(_color(f"  problem     {mask_message(str(problem))}", "red"))
        for problem in r.config_problems:
            print(_color(f"  config      {problem}", "red"))
        verdict = {"healthy": _color("healthy", "green")}.get(r.verdict, _color(r.verdict.upper(), "red"))
        print(f"  verdict     {verdict}" + (f": {len(r.reasons)} reason(s)" if r.reasons else ""))
        if r.verdict == "degraded" or (r.verdict == "misconfigured" and not r.config_problems):
            for reason in r.reasons:
                print(f"                {mask_message(reason)}")
    return code


def log(entries: Sequence[LogEntry], *, json_out: bool) -> int:
    if json_out:
        emit_json({"events": [e.to_json() for e in entries]})
        return 0
    if not entries:
        print("no deploy events yet")
    for entry in entries:
        e = entry.event
        style = "green" if e.verdict == "good" else ("yellow" if e.verdict == "unconfirmed" else "red")
        rev = e.to_rev[:10] if e.to_rev else "-"
        total = sum(s.seconds for s in e.stages)
        print(
            f"{e.finished[:19]}  {e.target:<12} {e.op:<13} "
            + _color(f"{e.verdict:<17}", style)
            + f" {rev}  {entry.subject or ''}"
        )
        details = [f"by {e.who}", f"{total:.2f} s"]
        if e.from_rev:
            details.append(f"from {e.from_rev[:10]}")
        for key in ("Lbctl-Ticket", "Lbctl-Rollback-Of", "Lbctl-Restores"):
            if key in entry.trailers:
                details.append(f"{key.removeprefix('Lbctl-').lower()} {entry.trailers[key][:10]}")
        print(f"    {', '.join(details)}")
        if e.verdict != "good" and e.message:
            print(f"    {mask_message(e.message.splitlines()[0])[:200]}")
        for check in e.checks:
            figures = check.get("figures") or {}
            if figures.get("backends"):
                print("\n".join(balance_bars(figures)))
    return 0


def diff(result: DiffResult, *, fmt: str) -> None:
    if result.note:
        print(f"note: {result.note}", file=sys.stderr)
    if fmt == "json":
        emit_json(result.to_json())
        return
    if fmt == "unified" or result.semantic is None:
        print(colorize_diff(hide(result.text)) if result.text else "", end="")
    elif fmt == "markdown":
        from lbctl.semantic import render_markdown

        print(render_markdown(result.semantic))
    else:
        from lbctl.semantic import render_text

        print(render_text(result.semantic, color=colored(sys.stdout)))
    if not result.changed:
        print(f"no differences between {result.old_label} and {result.new_label}", file=sys.stderr)
