"""The command line: parse options, call the core, render, return an exit code.

`main` is the one error boundary: `LbctlError`s become their documented exit codes
with a message and a hint; anything else is a bug (exit 70, traceback with --debug).
Heavy libraries are imported inside the commands that need them. The annotations here
are evaluated when the module loads (no `from __future__ import annotations`): typer reads
them on every run, and strings would be compiled again each time (~15 ms).
"""

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from lbctl.errors import ExitCode, LbctlError, UsageError

# pydantic scans every installed package's entry points for plugins on first use (~30 ms of
# start-up); lbctl's own models use none.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

app = typer.Typer(
    name="lbctl",
    help="Load-balancer configs as safe to change as code: versioned in git, diffed by meaning, "
    "deployed with verification, rolled back in one command.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: the rich formatter alone costs ~130 ms of start-up
    context_settings={"help_option_names": ["-h", "--help"]},
)

StoreOpt = Annotated[str | None, typer.Option("--store", help="The store (default: $LBCTL_STORE, or the cwd upwards).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ConfirmWithinOpt = Annotated[
    str | None,
    typer.Option(
        "--confirm-within",
        help="Commit-confirm: unless `lbctl confirm` within this (e.g. 5m), a watchdog on the LB reverts it.",
    ),
]
SELECTORS = "last-good | previous | prev-N (or ~N: N deploys back) | <git rev> | @<ISO time>"


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"lbctl {version('lbctl')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", help="Print lbctl's version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Load-balancer configs as safe to change as code."""


def _workspace(store: str | None, connect: str | None = None, require_sources: bool = True, sync: bool = False):  # type: ignore[no-untyped-def]
    from lbctl.store.workspace import open_workspace

    ws = open_workspace(store, connect=connect, require_sources=require_sources)
    if sync:
        _sync(ws)
    return ws


def _sync(ws) -> None:  # type: ignore[no-untyped-def]
    """Fetch the store's remote before reading state (lbctl.store.sync); its warnings go to stderr."""
    from lbctl.store.sync import refresh

    for warning in refresh(ws).warnings:
        print(f"lbctl: warning: {warning}", file=sys.stderr)


def _require_consent(yes: bool, dry_run: bool, what: str) -> None:
    if not yes and not dry_run and not sys.stdin.isatty():
        raise UsageError(
            f"refusing to {what} without confirmation: there is no terminal to ask on",
            hint="pass --yes to proceed unattended (as CI does), or --dry-run to see the plan",
        )


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to create the store.")] = Path("."),
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Create a store: a git repo with a commented lbctl.toml and configs/."""
    from lbctl.render import emit_json, say
    from lbctl.store.repo import init_store

    root = init_store(directory)
    if json_out:
        emit_json({"store": str(root)})
    else:
        say(
            f"created an lbctl store in {root}\n  next: edit lbctl.toml (add a target), then `lbctl pull NAME` "
            "to adopt the config it runs, or `lbctl deploy NAME`",
            quiet=False,
        )
    return 0


@app.command()
def deploy(
    target: Annotated[str, typer.Argument(help="The target to deploy to.")],
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Make this file the target's source.")] = None,
    message: Annotated[str | None, typer.Option("-m", "--message", help="Why (the commit message).")] = None,
    ticket: Annotated[str | None, typer.Option("--ticket", help="Ticket or change id.")] = None,
    rev: Annotated[str | None, typer.Option("--rev", help="Deploy this revision (or selector).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; change nothing.")] = False,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode",
            help="With --dry-run: exit 0 if nothing would change, 2 if it would (or the refusal's code).",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Deploy despite policy, blast radius, staging gate or drift.")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why --force (recorded in the event).")] = None,
    checksum: Annotated[
        str | None, typer.Option("--checksum", help="Proceed only if the plan is the one reviewed (--dry-run).")
    ] = None,
    confirm_within: ConfirmWithinOpt = None,
    canary: Annotated[int | None, typer.Option("--canary", help="@GROUP: members changed first, alone.")] = None,
    batches: Annotated[
        str | None, typer.Option("--batches", help='@GROUP: e.g. "25%,100%" (members done after each batch).')
    ] = None,
    max_failures: Annotated[
        int | None, typer.Option("--max-failures", help="@GROUP: failed members tolerated before it stops.")
    ] = None,
    parallel: Annotated[int | None, typer.Option("--parallel", help="@GROUP: members changed at once.")] = None,
    yes: YesOpt = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Validate, push, reload and verify a config (on a target, or @GROUP); undo it automatically if it hurts."""
    if detailed_exitcode and not dry_run:
        raise UsageError(
            "--detailed-exitcode goes with --dry-run", hint="lbctl deploy TARGET --dry-run --detailed-exitcode"
        )
    _require_consent(yes, dry_run, "deploy")
    if target.startswith("@"):
        from lbctl.fleet import commands

        return commands.deploy(
            store, target[1:], file=file, rev=rev, message=message, dry_run=dry_run, force=force, reason=reason,
            checksum=checksum, canary=canary, batches=batches, max_failures=max_failures, parallel=parallel,
            confirm_within=_seconds(confirm_within), yes=yes, json_out=json_out, quiet=quiet,
        )  # fmt: skip
    ws = _workspace(store, connect=target, sync=dry_run)  # the LB handshake runs while the rest loads
    from lbctl import render
    from lbctl.commands import deploy as operations

    outcome = operations.deploy(
        ws,
        target,
        file=file,
        message=message,
        ticket=ticket,
        rev=rev,
        dry_run=dry_run,
        force=force,
        reason=reason,
        checksum=checksum,
        confirm_within=_seconds(confirm_within),
        confirm=render.confirmer(yes, json_out),
        report=render.reporter(quiet or json_out),
    )
    code = render.outcome(outcome, json_out=json_out, quiet=quiet)
    if detailed_exitcode and code == 0 and not outcome.plan.unchanged:
        return 2  # as `terraform plan -detailed-exitcode`: the plan has changes
    return code


@app.command()
def rollback(
    target: Annotated[str, typer.Argument(help="The target to roll back.")],
    to: Annotated[str, typer.Option("--to", help=SELECTORS)] = "last-good",
    message: Annotated[str | None, typer.Option("-m", "--message", help="Why.")] = None,
    ticket: Annotated[str | None, typer.Option("--ticket", help="Ticket or incident id (a commit trailer).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; change nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Roll back over a hand edit (drift).")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why --force (recorded).")] = None,
    confirm_within: ConfirmWithinOpt = None,
    yes: YesOpt = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Restore a prior revision as a new commit, with the same verification (@GROUP: every member, at once)."""
    _require_consent(yes, dry_run, "roll back")
    if target.startswith("@"):
        from lbctl.fleet import commands

        return commands.rollback(
            store, target[1:], to=to, dry_run=dry_run, force=force, reason=reason, json_out=json_out, quiet=quiet
        )
    ws = _workspace(store, connect=target, sync=True)  # the LB handshake runs while the rest loads
    from lbctl import render
    from lbctl.commands import deploy as operations

    outcome = operations.rollback(
        ws,
        target,
        to=to,
        message=message,
        ticket=ticket,
        dry_run=dry_run,
        force=force,
        reason=reason,
        explain=dry_run or not yes,
        confirm_within=_seconds(confirm_within),
        confirm=render.confirmer(yes, json_out),
        report=render.reporter(quiet or json_out),
    )
    return render.outcome(outcome, json_out=json_out, quiet=quiet)


@app.command()
def check(
    target: Annotated[str, typer.Argument(help="The target whose policy and LB judge the candidate.")],
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Check this file.")] = None,
    rev: Annotated[str | None, typer.Option("--rev", help="Check this revision (default: HEAD).")] = None,
    replay: Annotated[
        Path | None,
        typer.Option("--replay", help="Replay this access log through the live config and the candidate."),
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Parse, validate natively, lint against policy and preview traffic; deploy nothing."""
    from lbctl import render
    from lbctl.commands import check as checking

    if target.startswith("@"):
        from lbctl.fleet import views

        return views.check(_workspace(store), target[1:], file=file, rev=rev, json_out=json_out)

    report = checking.check(_workspace(store), target, file=file, rev=rev, replay=replay)
    return render.check_report(report, json_out=json_out)


@app.command(name="test")
def test_routes(
    target: Annotated[str, typer.Argument(help="The target whose routing cases to run.")],
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Test this file.")] = None,
    rev: Annotated[str | None, typer.Option("--rev", help="Test this revision (default: HEAD).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text | json | junit")] = "text",
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Run the target's routing cases through the candidate, in a local sandbox of the real LB binary."""
    from lbctl.commands import test as routing
    from lbctl.engine.cases import render

    if fmt not in ("text", "json", "junit"):
        raise UsageError(f"unknown --format {fmt!r}", hint="text, json or junit")
    report = routing.test(_workspace(store), target, file=file, rev=rev)
    print(render(report, "json" if json_out else fmt), end="")
    if report.unavailable is not None and (json_out or fmt != "text"):
        print(f"lbctl: {report.summary}", file=sys.stderr)
    return int(report.exit_code)


@app.command()
def status(
    target: Annotated[str | None, typer.Argument(help="One target (default: all).")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Do not contact the targets.")] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """What is live on each target, last-good, drift, health and lock holder."""
    from lbctl import render
    from lbctl.commands.status import status as statuses
    from lbctl.store.workspace import EVERY_TARGET

    if target is not None and target.startswith("@"):
        from lbctl.fleet import views

        return views.status(_workspace(store, sync=True), target[1:], probe=not offline, json_out=json_out)
    # --offline leaves the targets alone; the store's remote is still fetched (`[store] sync`).
    ws = _workspace(store, connect=None if offline else (target or EVERY_TARGET), sync=True)
    return render.status(statuses(ws, target, probe=not offline), json_out=json_out)


@app.command()
def log(
    target: Annotated[str | None, typer.Argument(help="One target (default: all).")] = None,
    n: Annotated[int, typer.Option("-n", help="How many events.", min=1)] = 20,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Deploy events and their revisions, newest first."""
    from lbctl import render
    from lbctl.commands import log as history

    if target is not None and target.startswith("@"):
        from lbctl.fleet import views

        return views.log(_workspace(store, sync=True), target[1:], limit=n, json_out=json_out)
    return render.log(history.log(_workspace(store, sync=True), target, limit=n), json_out=json_out)


@app.command()
def diff(
    args: Annotated[list[str] | None, typer.Argument(help="TARGET [A] [B], or two files with --kind.")] = None,
    live: Annotated[bool, typer.Option("--live", help="Compare the store with what the LB runs.")] = False,
    cached: Annotated[
        bool, typer.Option("--cached", "--staged", help="Compare with the index (staged edits), as git diff --cached.")
    ] = False,
    kind: Annotated[str | None, typer.Option("--kind", help="Diff two files of this kind.")] = None,
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit 1 when there are differences.")] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="text | json | markdown | unified (a plain line diff).")
    ] = "text",
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """What changed: live vs your edits (work tree, --cached: index, or HEAD), two revisions, the LB, two files."""
    from lbctl import render
    from lbctl.commands import diff as compare

    words = list(args or [])
    if kind is not None:
        if len(words) != 2:
            raise UsageError("with --kind, give exactly two files: lbctl diff --kind haproxy a.cfg b.cfg")
        from lbctl.kinds import REGISTRY as KINDS

        if kind not in KINDS:
            *first, last = KINDS
            raise UsageError(f"unknown --kind {kind!r}", hint=f"{', '.join(first)} or {last}")
        result = compare.diff_files(kind, Path(words[0]), Path(words[1]))
    else:
        if not words or len(words) > 3:
            raise UsageError("usage: lbctl diff TARGET [A] [B] [--live], or lbctl diff --kind KIND A B")
        a = words[1] if len(words) > 1 else None
        b = words[2] if len(words) > 2 else None
        if words[0].startswith("@"):
            from lbctl.fleet import views

            if fmt not in ("text", "json", "markdown", "unified"):
                raise UsageError(f"unknown --format {fmt!r}", hint="text, json, markdown or unified")
            ws = _workspace(store, sync=True)
            a_, b_ = words[1] if len(words) > 1 else None, words[2] if len(words) > 2 else None
            changed = views.diff(ws, words[0][1:], a_, b_, live=live, cached=cached, fmt="json" if json_out else fmt)
            return 1 if exit_code and changed else 0
        ws = _workspace(store, connect=words[0] if live else None, sync=True)
        result = compare.diff_target(ws, words[0], a, b, live=live, cached=cached)
    if fmt not in ("text", "json", "markdown", "unified"):
        raise UsageError(f"unknown --format {fmt!r}", hint="text, json, markdown or unified")
    render.diff(result, fmt="json" if json_out else fmt)
    return 1 if exit_code and result.changed else 0


@app.command()
def pull(
    target: Annotated[str, typer.Argument(help="The target whose running config to record.")],
    message: Annotated[str | None, typer.Option("-m", "--message", help="Why (the commit message).")] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Commit the config running on the LB (adopt a brownfield LB, or record a hand edit)."""
    from lbctl import render
    from lbctl.commands import pull as adopt
    from lbctl.store.sync import publish_after

    ws = _workspace(store, connect=target, require_sources=False, sync=True)
    result = adopt.pull(ws, target, message=message)
    for warning in publish_after(ws, op="pull", target=target).warnings:
        print(f"lbctl: warning: {warning}", file=sys.stderr)
    if json_out:
        render.emit_json(result.to_json())
    elif result.created:
        files = ", ".join(result.created)
        print(f"adopted {target}: recorded its running config as {result.rev[:10]} (live, unverified); new: {files}")
    elif result.committed:
        print(f"recorded the running config of {target} as {result.rev[:10]} (live, unverified)")
    else:
        print(f"{target} runs what the store has ({result.rev[:10]}); recorded it as live (unverified)")
    return 0


@app.command()
def unlock(
    target: Annotated[str, typer.Argument(help="The target whose stale lock to break.")],
    force: Annotated[
        bool, typer.Option("--force", help="Break the lock even if its holder may still be running.")
    ] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Break a stale lock on a target (local and on the LB host); recorded in the journal."""
    from lbctl import render
    from lbctl.commands.unlock import unlock as break_lock

    result = break_lock(_workspace(store, connect=target), target, force=force)
    if json_out:
        render.emit_json(result.to_json())
    else:
        print(result.message)
    return 0


@app.command()
def confirm(
    target: Annotated[str, typer.Argument(help="The target whose pending change to confirm.")],
    event_id: Annotated[str | None, typer.Argument(help="The pending change's event id (default: the newest).")] = None,
    extend: Annotated[
        str | None, typer.Option("--extend", help="Move the deadline to now + this (e.g. 10m) instead.")
    ] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Confirm a change deployed with --confirm-within (0), or extend it; 1: already reverted, 2: none pending."""
    from lbctl import render
    from lbctl.commands.confirm import confirm as confirm_change

    result = confirm_change(_workspace(store, connect=target), target, event_id, extend=_seconds(extend))
    if json_out:
        render.emit_json(result.to_json())
    else:
        print(result.message, file=sys.stdout if result.exit_code == 0 else sys.stderr)
        if result.hint:
            print(f"  hint: {result.hint}", file=sys.stderr)
    return int(result.exit_code)


def _seconds(text: str | None) -> float | None:
    from lbctl.config import duration

    if text is None:
        return None
    try:
        return duration(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


@app.command()
def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo's temp dir (processes still stop).")] = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Replay the outage on a real local HAProxy and watch lbctl catch and undo it."""
    from lbctl.commands.demo import run_demo

    return run_demo(keep=keep)


# -- watch, rules (lbctl.watch) -------------------------------------------------------------------
@app.command()
def watch(
    target: Annotated[str | None, typer.Argument(help="A target or @GROUP (default: every target).")] = None,
    once: Annotated[bool, typer.Option("--once", help="One evaluation: exit 0 quiet, 9 when alerting.")] = False,
    window: Annotated[
        str | None, typer.Option("--window", help="With --once: how long to count traffic (default: [watch] interval).")
    ] = None,
    duration: Annotated[str | None, typer.Option("--duration", help="Stop after this long (e.g. 10m).")] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Watch traffic spread, 5xx and saturation from the LB's counters; serve /metrics, alert."""
    from lbctl.config import duration as seconds
    from lbctl.watch import report, runner

    ws = _workspace(store)
    targets = report.select(ws, target)
    settings = ws.config.watch
    try:
        span = seconds(window) if window else settings.interval
        until = seconds(duration) if duration else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if once:
        return report.once(runner.once(ws, targets, settings, window=span), json_out=json_out, quiet=quiet)
    return report.follow(ws, targets, settings, duration=until, json_out=json_out)


@app.command()
def rules(
    target: Annotated[str | None, typer.Argument(help="A target or @GROUP (default: every target).")] = None,
    selector: Annotated[
        str, typer.Option("--selector", help='Label matchers added to every series, e.g. job="haproxy".')
    ] = "",
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Prometheus alerting rules equivalent to watch's checks, for HAProxy's own exporter."""
    from lbctl.render import emit_json
    from lbctl.watch import report
    from lbctl.watch.rules import rule_file, to_yaml

    ws = _workspace(store)
    data = rule_file(ws, report.select(ws, target), ws.config.watch, selector)
    if json_out:
        emit_json(data)
    else:
        print("# Prometheus alerting rules written by `lbctl rules`: load with rule_files, check with promtool")
        print(to_yaml(data))
    return 0


@app.command()
def notify(
    flush: Annotated[bool, typer.Option("--flush", help="Send the messages waiting in the outbox.")] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Show (or, with --flush, send) the notifications waiting in the outbox."""
    from lbctl.notify.outbox import Outbox
    from lbctl.render import emit_json

    ws = _workspace(store, require_sources=False)
    outbox = Outbox(ws.store.git_dir / "lbctl")
    results = outbox.flush(ws.config.notify) if flush else []
    waiting = [p.stem for p in outbox.pending()]
    if json_out:
        emit_json({"sent": [r.__dict__ for r in results], "waiting": waiting})
    else:
        for r in results:
            print(f"{r.id} -> {r.sink}: {'sent' if r.ok else 'not sent: ' + r.detail}")
        print(f"{len(waiting)} message(s) waiting" if waiting else "the outbox is empty")
    return 0


# -- timeline (lbctl.commands.timeline) --------------------------------------------------------------------
@app.command()
def timeline(
    args: Annotated[
        list[str] | None, typer.Argument(help='TARGET or @GROUP (default: every target); or: note "TEXT".')
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="From (ISO time, HH:MM today UTC, or 2h ago).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="To (default: now).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="markdown | json | csv")] = "markdown",
    at: Annotated[str | None, typer.Option("--at", help="With note: when it happened (default: now).")] = None,
    target: Annotated[str | None, typer.Option("--target", help="With note: the target it is about.")] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Every change, stage, verdict, rollback and note in a window, in UTC order, for a postmortem."""
    from lbctl.commands import timeline as tl

    words = list(args or [])
    if words and words[0] == "note":
        if len(words) != 2:
            raise UsageError('usage: lbctl timeline note "TEXT" [--at HH:MM] [--target T]')
        event = tl.note(_workspace(store, require_sources=False, sync=True), words[1], at=at, target=target)
        if json_out:
            from lbctl.render import emit_json

            emit_json(event.to_json())
        elif not quiet:
            print(f"noted at {event.started}: {event.message}")
        return 0
    if len(words) > 1:
        raise UsageError("usage: lbctl timeline [TARGET | @GROUP] [--since T] [--until T] [--format F]")
    fmt = "json" if json_out else fmt
    if fmt not in ("markdown", "json", "csv"):
        raise UsageError(f"unknown --format {fmt!r}", hint="markdown, json or csv")
    from lbctl.watch.report import select

    ws = _workspace(store, require_sources=False, sync=True)
    names = [t.name for t in select(ws, words[0] if words else None)]
    # A group's own events (its rollouts): the group asked for, or every group with every target.
    groups = [words[0]] if words and words[0].startswith("@") else [] if words else list(ws.config.groups)
    window = (tl.parse_moment(since) if since else None, tl.parse_moment(until) if until else None)
    print(tl.render(tl.build(ws, names, since=window[0], until=window[1], groups=groups), fmt), end="")
    return 0


@app.command()
def drill(
    scenario: Annotated[str, typer.Argument(help="misroute | drain-half | bad-acl | reload-fail")],
    target: Annotated[
        str | None, typer.Option("--target", help="Rehearse on this target of the store (HAProxy).")
    ] = None,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="On a throw-away local HAProxy instead.")] = False,
    max_duration: Annotated[
        str, typer.Option("--max-duration", help="The kill switch: the LB's watchdog reverts after this long.")
    ] = "15m",
    detect_goal: Annotated[str, typer.Option("--detect-goal", help="Time to detect to beat.")] = "5m",
    restore_goal: Annotated[str, typer.Option("--restore-goal", help="Time to restore to beat.")] = "15m",
    force: Annotated[bool, typer.Option("--force", help="Drill a production target (with --reason).")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why a production target (recorded).")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the sandbox's files.")] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Rehearse a load-balancer failure: break a target on purpose, let the trainee undo it, report."""
    from lbctl.commands.drill import run_drill, summary
    from lbctl.config import duration

    if sandbox == (target is not None):
        raise UsageError(
            "a drill runs on a target of the store or on a throw-away sandbox: give one",
            hint="--target NAME (a staging HAProxy), or --sandbox",
        )
    try:
        limits = duration(max_duration), duration(detect_goal), duration(restore_goal)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if limits[0] <= 0:
        raise UsageError("--max-duration must be more than 0: it is the kill switch")

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if target is not None:
        from lbctl.commands.drill_target import run_target_drill

        ws = _workspace(store)
        report = run_target_drill(
            ws,
            target,
            scenario,
            max_duration=limits[0],
            force=force,
            reason=reason,
            detect_goal=limits[1],
            restore_goal=limits[2],
            say=say,
        )
    else:
        report = run_drill(
            scenario,
            max_duration=limits[0],
            detect_goal=limits[1],
            restore_goal=limits[2],
            keep=keep,
            say=say,
        )
    if json_out:
        from lbctl.render import emit_json

        emit_json(report.to_json())
    else:
        print(summary(report), end="")
    return 0


ci_app = typer.Typer(
    help="GitOps from CI: plan every changed target as Markdown; deploy exactly those at HEAD.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(ci_app, name="ci")
BaseOpt = Annotated[
    str | None,
    typer.Option(
        "--base", help="Compare with this revision (default: the fork point from the remote's branch, or HEAD^)."
    ),
]


@ci_app.command("plan")
def ci_plan(
    base: BaseOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Markdown for a pull request: each changed target's diff, traffic, gates and plan checksum."""
    from lbctl import render
    from lbctl.commands import ci

    result = ci.plan(_workspace(store, sync=True), base)
    if json_out:
        render.emit_json(result.to_json())
    else:
        print(ci.markdown(result), end="")
    return result.exit_code


@ci_app.command("apply")
def ci_apply(
    base: BaseOpt = None,
    confirm_within: ConfirmWithinOpt = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> int:
    """Deploy exactly the targets whose files changed, at HEAD; a re-run does nothing.

    Commit-confirm is on (the target's confirm_within, else 5m) and each verified change is
    confirmed at once; `--confirm-within 0` turns it off."""
    from lbctl import render
    from lbctl.commands import ci

    result = ci.apply(
        _workspace(store),
        base,
        report=render.reporter(quiet or json_out),
        confirm_within=_seconds(confirm_within),
    )
    if json_out:
        render.emit_json(result.to_json())
    else:
        print(ci.markdown(result), end="")
    return result.exit_code


def _masked(message: str) -> str:
    """An error may quote a config (a validator's output, a parse error): secrets never show."""
    from lbctl.masking import mask_message

    return mask_message(message)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM from the user is an interruption like ^C (exit 130)


def main(argv: list[str] | None = None) -> int:
    """The error boundary: every path out of lbctl goes through here.

    With `--json`, a failure is one JSON document on stdout too (`error.code` is the exit code,
    with `error.message` and `error.hint`), so a script reads stdout whatever happened.
    """
    import signal

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    json_out = "--json" in args
    if debug:  # paramiko's own log (with its tracebacks) reaches the terminal only then
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    try:
        previous_term = signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread (embedded): leave signals alone
        previous_term = None
    try:
        result = app(args=args, prog_name="lbctl", standalone_mode=False)
        return int(result or 0)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except SystemExit as exc:  # shell completion ends the process its own way
        return exc.code if isinstance(exc.code, int) else 0
    except typer.Abort as exc:
        # click turns an EOFError escaping a command into Abort too: that is a lost
        # connection (paramiko's way of saying so), not the user stopping lbctl.
        if isinstance(exc.__cause__ or exc.__context__, EOFError):
            if debug:
                import traceback

                traceback.print_exception(exc.__cause__ or exc.__context__)
            return _failed(
                ExitCode.UNREACHABLE,
                "unreachable",
                "the connection to the load balancer was lost (EOF)",
                "`lbctl status` says what runs there; run the same command again",
                json_out=json_out,
            )
        return _failed(ExitCode.INTERRUPTED, "aborted", "aborted: nothing was changed", None, json_out=json_out)
    except typer.TyperException as exc:  # bad flags and arguments
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]
            return 0
        if json_out:
            return _failed(ExitCode.USAGE, "usage", exc.format_message(), "see `lbctl --help`", json_out=True)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(f"lbctl: {exc.format_message()}", file=sys.stderr)
        return int(ExitCode.USAGE)
    except LbctlError as exc:
        details = getattr(exc, "details", "")
        code = _failed(
            exc.exit_code, _error_type(exc), exc.message, exc.hint, json_out=json_out, details=details, text=str(exc)
        )
        if debug:
            import traceback

            print(_masked(traceback.format_exc()), file=sys.stderr, end="")
        return code
    except KeyboardInterrupt:
        return _failed(ExitCode.INTERRUPTED, "interrupted", "interrupted", None, json_out=json_out)
    except Exception as exc:
        if debug:
            import traceback

            print(_masked(traceback.format_exc()), file=sys.stderr, end="")
        return _failed(
            ExitCode.INTERNAL,
            "internal",
            f"internal error (a bug): {type(exc).__name__}: {exc}",
            None if debug else "run again with --debug for the traceback, and please report it",
            json_out=json_out,
            text=f"internal error (a bug): {type(exc).__name__}: {exc}"
            + ("" if debug else "\n  run again with --debug for the traceback, and please report it"),
        )
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        transports = sys.modules.get("lbctl.transports")
        if transports is not None:  # loaded: a command may have connected ahead and ended first
            transports.release_ahead()


def _error_type(exc: LbctlError) -> str:
    """A stable name for the kind of error: `Refused` → "refused", `StoreError` → "store"."""
    import re

    name = type(exc).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _failed(
    code: int,
    kind: str,
    message: str,
    hint: str | None,
    *,
    json_out: bool,
    details: str = "",
    text: str | None = None,
) -> int:
    """Say what went wrong on stderr and, with --json, as the one document on stdout."""
    if text is None:
        text = message if hint is None else f"{message}\n  hint: {hint}"
    message, text, details = _masked(message), _masked(text), _masked(details)
    print(f"lbctl: {text}", file=sys.stderr)
    if json_out:
        from lbctl.render import emit_json

        error = {"code": int(code), "type": kind, "message": message, "hint": hint}
        if details:
            error["details"] = details
        emit_json({"ok": False, "exit_code": int(code), "error": error})
    return int(code)
