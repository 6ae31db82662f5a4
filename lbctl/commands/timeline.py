"""`lbctl timeline`: what happened to targets in a window, in UTC order, for a postmortem.

Everything comes from the store, so a fresh clone writes the same timeline: the journal
(`refs/lbctl/journal`: deploys, their stages and checks, rollbacks, interruptions, unlocks,
lease breaks, `watch` alerts fired and resolved, notes) and the revisions' trailers.
Notifications sent are read from this clone's `.git/lbctl/notified.log`, their only record.

A *failed change* is a revision that lbctl's verification failed (and restored), or one a
person rolled back. For each, measured from the moment the LB was reloaded with it:
time to detect (-> the verification that failed, else the first alert, notification or note
about the target), time to mitigate (-> the reload that put the previous config back) and
time to restore (-> that restore verified good).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lbctl.engine.record import record
from lbctl.errors import UsageError
from lbctl.store.journal import Event, Stage, new_event_id, timestamp

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lbctl.store.workspace import Workspace

EVERYWHERE = "*"  # a note about no one target
CHANGES = ("deploy", "rollback", "auto-rollback")
FAILED = ("failed", "rolled-back", "restore-failed")


@dataclass(frozen=True)
class Entry:
    """One line of the timeline."""

    at: datetime
    target: str
    kind: str  # deploy | reload | verified | failed | rollback | auto-rollback | interrupted | unlock | note | ...
    text: str
    event: str | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "target": self.target,
            "kind": self.kind,
            "text": self.text,
            "event": self.event,
            "details": self.details,
        }


@dataclass(frozen=True)
class Incident:
    """A failed change and how long it took to notice, to undo and to be well again."""

    target: str
    revision: str
    subject: str
    live_at: datetime
    detected_at: datetime | None
    detected_by: str
    mitigated_at: datetime | None
    restored_at: datetime | None
    undone_by: str  # auto-rollback | rollback (by a person) | none yet

    @property
    def detect(self) -> float | None:
        return _seconds(self.live_at, self.detected_at)

    @property
    def mitigate(self) -> float | None:
        return _seconds(self.live_at, self.mitigated_at)

    @property
    def restore(self) -> float | None:
        return _seconds(self.live_at, self.restored_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "revision": self.revision,
            "subject": self.subject,
            "live_at": iso(self.live_at),
            "detected_at": iso(self.detected_at),
            "detected_by": self.detected_by,
            "mitigated_at": iso(self.mitigated_at),
            "restored_at": iso(self.restored_at),
            "undone_by": self.undone_by,
            "time_to_detect": self.detect,
            "time_to_mitigate": self.mitigate,
            "time_to_restore": self.restore,
        }


@dataclass(frozen=True)
class Timeline:
    targets: tuple[str, ...]
    since: datetime | None
    until: datetime
    entries: tuple[Entry, ...]
    incidents: tuple[Incident, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "targets": list(self.targets),
            "since": iso(self.since),
            "until": iso(self.until),
            "entries": [e.to_json() for e in self.entries],
            "incidents": [i.to_json() for i in self.incidents],
        }


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds") if moment else None


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if end else None


def parse_moment(text: str, *, now: datetime | None = None) -> datetime:
    """`2026-11-23T03:00[Z]` (no zone: UTC), `03:00` (today, UTC) or `90m`/`2h` (ago)."""
    from lbctl.config import duration

    now = now or datetime.now(tz=UTC)
    clock = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", text.strip())
    if clock:
        hour, minute, second = int(clock.group(1)), int(clock.group(2)), int(clock.group(3) or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise UsageError(f"{text!r} is not a time of day")
        return now.replace(hour=hour, minute=minute, second=second, microsecond=0)
    if re.fullmatch(r"\d+(\.\d+)?(ms|s|m|h)", text.strip()):
        return now - timedelta(seconds=duration(text.strip()))
    if re.fullmatch(r"\d+d", text.strip()):
        return now - timedelta(days=int(text.strip()[:-1]))
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{text!r} is not a time", hint="e.g. 2026-11-23T03:00Z, 03:00 (today, UTC), or 2h (two hours ago)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _at(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- notes ----------------------------------------------------------------------------------


def note(ws: Workspace, text: str, *, at: str | None = None, target: str | None = None) -> Event:
    """Record what a person did or saw (`paged on-call`) in the journal, at `at` (default: now)."""
    from lbctl.store.sync import publish_after

    if not text.strip():
        raise UsageError("a note needs some text", hint='lbctl timeline note "paged on-call" --at 15:02')
    if target is not None:
        ws.target(target)  # an unknown name is an error, with a suggestion
    names = list(ws.config.targets)
    if not names:
        raise UsageError("the store has no targets to note anything about")
    moment = parse_moment(at) if at else None
    stamp = timestamp()
    name, email = ws.store.identity()
    event = Event(
        id=new_event_id(),
        op="note",
        target=target or EVERYWHERE,
        who=f"{name} <{email}>",
        started=iso(moment) or stamp,
        finished=stamp,
        from_rev=None,
        to_rev=None,
        verdict="note",
        message=" ".join(text.split()),
    )
    # The journal's tree holds per-target state: a note leaves a target's state as it was.
    state = ws.journal.state(target or names[0])
    record(ws.journal, event, state)
    for warning in publish_after(ws, op="note", target=target or names[0]).warnings:
        import sys

        print(f"lbctl: warning: {warning}", file=sys.stderr)
    return event


# -- building the timeline --------------------------------------------------------------------


def build(
    ws: Workspace,
    names: list[str],
    *,
    since: datetime | None,
    until: datetime | None,
    groups: Sequence[str] = (),
) -> Timeline:
    """The events of targets `names`, and of `groups` (their `rollout` events: `@edge`)."""
    until = until or datetime.now(tz=UTC)
    wanted = set(names) | {"@" + g.removeprefix("@") for g in groups}
    events = [e for e in ws.journal.events() if e.target in wanted or e.target == EVERYWHERE]
    events.reverse()  # oldest first
    subjects: dict[str, tuple[str, dict[str, str]]] = {}

    def revision(sha: str | None) -> tuple[str, dict[str, str]]:
        if not sha:
            return "", {}
        if sha not in subjects:
            try:
                found = ws.store.revision(sha)
                subjects[sha] = (found.subject, found.trailers)
            except Exception:  # a revision this clone has not fetched: the event still shows
                subjects[sha] = ("(revision not in this clone)", {})
        return subjects[sha]

    entries: list[Entry] = []
    for event in events:
        entries.extend(_entries(event, revision))
    entries.extend(_notifications(ws, events, wanted))
    incidents = _incidents(events, entries, revision)
    # Stable order: by time, then the order the events happened in (a stage before its verdict).
    order = {id(e): n for n, e in enumerate(entries)}
    entries.sort(key=lambda e: (e.at, order[id(e)]))
    shown = tuple(e for e in entries if (since is None or e.at >= since) and e.at <= until)
    kept = tuple(i for i in incidents if (since is None or i.live_at >= since) and i.live_at <= until)
    return Timeline(tuple(names), since, until, shown, kept)


def _stage_times(event: Event) -> list[tuple[Stage, datetime]]:
    """When each stage ended. Stages run one after the other from `started`; an automatic
    rollback's stages are the end of its run (its `started` is the failed deploy's)."""
    if event.op == "auto-rollback":
        end = _at(event.finished)
        times = []
        for stage in reversed(event.stages):
            times.append((stage, end))
            end -= timedelta(seconds=stage.seconds)
        return list(reversed(times))
    at = _at(event.started)
    times = []
    for stage in event.stages:
        at += timedelta(seconds=stage.seconds)
        times.append((stage, at))
    return times


def _reloaded(event: Event) -> datetime | None:
    found = [at for stage, at in _stage_times(event) if stage.name == "reload" and stage.ok]
    return found[-1] if found else None


def _verified(event: Event) -> datetime | None:
    found = [at for stage, at in _stage_times(event) if stage.name.startswith("verify")]
    return found[-1] if found else None


def _short(sha: str | None) -> str:
    return sha[:10] if sha else "none"


def _stages_line(event: Event) -> str:
    return ", ".join(f"{s.name} {s.seconds:.2f}s" + ("" if s.ok else " FAILED") for s in event.stages)


def _checks_line(event: Event) -> str:
    parts = []
    for check in event.checks:
        verdict = "ok" if check.get("ok") else "FAILED"
        summary = str(check.get("summary") or "").splitlines()[0] if check.get("summary") else ""
        parts.append(f"{check.get('name', 'check')} {verdict}" + (f": {summary}" if summary else ""))
    return "; ".join(parts)


def _shares(event: Event) -> dict[str, dict[str, dict[str, float | None]]]:
    from lbctl.notify.messages import _shares as shares

    return shares(event)


def _entries(event: Event, revision: Any) -> list[Entry]:
    started, finished = _at(event.started), _at(event.finished)
    target, who = event.target, event.who
    if event.op == "note":
        return [Entry(started, target, "note", event.message, event.id, {"who": who, "recorded": event.finished})]
    if event.op == "unlock":
        kind = "lease-break" if event.verdict == "lease-broken" else "unlock"
        return [Entry(finished, target, kind, f"{event.message} (by {who})", event.id, {"who": who})]
    if event.op == "watch":
        firing = event.verdict == "watch-alert"
        kind, what = ("alert", "alert firing") if firing else ("alert-resolved", "alert resolved")
        return [Entry(finished, target, kind, f"{what}: {event.message}", event.id, {"live": event.to_rev})]
    if event.verdict == "interrupted":
        return [Entry(finished, target, "interrupted", event.message, event.id, {"who": who})]
    if event.op not in CHANGES:
        said = event.message if event.message.split()[:1] == [event.verdict] else f"{event.verdict} {event.message}"
        return [Entry(finished, target, event.op, f"{event.op}: {said}".strip(), event.id)]
    subject, trailers = revision(event.to_rev)
    details: dict[str, Any] = {
        "who": who,
        "from": event.from_rev,
        "to": event.to_rev,
        "verdict": event.verdict,
        "subject": subject,
        "trailers": trailers,
        "stages": [{"name": s.name, "ok": s.ok, "seconds": s.seconds} for s in event.stages],
        "checks": [{"name": c.get("name"), "ok": c.get("ok"), "summary": c.get("summary")} for c in event.checks],
        "shares": _shares(event),
    }
    out: list[Entry] = []
    why = []
    if trailers.get("Lbctl-Ticket"):
        why.append(f"ticket {trailers['Lbctl-Ticket']}")
    if trailers.get("Lbctl-Reason"):
        why.append(f"reason: {trailers['Lbctl-Reason']}")
    if trailers.get("Lbctl-Drill"):
        why.append(f"DRILL: {trailers['Lbctl-Drill']}")
    if trailers.get("Lbctl-Forced"):
        why.append(f"forced: {trailers['Lbctl-Forced']}")
    extra = f" ({'; '.join(why)})" if why else ""
    if event.op == "deploy":
        opening = f'deploy of {_short(event.to_rev)} "{subject}" started by {who}{extra}'
    elif event.op == "rollback":
        opening = f"manual rollback from {_short(event.from_rev)} to {_short(event.to_rev)} started by {who}{extra}"
    else:
        opening = f"automatic rollback of {_short(event.from_rev)} started: restoring the previous config"
    first = _stage_times(event)[0][1] - timedelta(seconds=event.stages[0].seconds) if event.stages else started
    out.append(Entry(first, target, event.op, opening, event.id, {"who": who, "trailers": trailers}))
    reloaded = _reloaded(event)
    if reloaded is not None:
        out.append(Entry(reloaded, target, "reload", f"reloaded: {_short(event.to_rev)} is live", event.id))
    details["stages_line"], details["checks_line"] = _stages_line(event), _checks_line(event)
    if event.verdict in FAILED and event.op != "auto-rollback":
        at = _verified(event) or finished
        out.append(Entry(at, target, "failed", f"verification FAILED: {event.message}", event.id, details))
    elif event.verdict == "good":
        what = "restore" if event.op != "deploy" else "deploy"
        out.append(
            Entry(finished, target, "verified", f"{what} of {_short(event.to_rev)} verified good", event.id, details)
        )
    else:
        text = f"{event.op} {event.verdict}: {event.message}"
        out.append(Entry(finished, target, event.verdict, text, event.id, details))
    return out


def _notifications(ws: Workspace, events: list[Event], wanted: set[str]) -> list[Entry]:
    """Messages this clone delivered to `[[notify]]` sinks (its notified.log)."""
    from lbctl.notify.outbox import Outbox, sink_id

    path = Outbox(ws.store.git_dir / "lbctl").log
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    by_id = {e.id: e for e in events}
    sinks = {sink_id(s): s.type for s in ws.config.notify}
    out = []
    for line in lines:
        try:
            item = json.loads(line)
            at = _at(item["at"])
        except (ValueError, KeyError, TypeError):
            continue
        event_id = str(item.get("id", "")).split("--")[0]
        sink = sinks.get(item.get("sink", ""), "a sink no longer configured")
        event = by_id.get(event_id)
        if event is not None:
            text = f"notified {sink}: {event.op} {event.verdict} ({_short(event.to_rev)})"
            out.append(Entry(at, event.target, "notify", text, event.id, {"sink": sink}))
        elif len(wanted) == len(ws.config.targets):  # an event this clone's journal does not have (yet)
            out.append(Entry(at, EVERYWHERE, "notify", f"notified {sink} (event {event_id})", event_id))
    return out


def _incidents(events: list[Event], entries: list[Entry], revision: Any) -> list[Incident]:
    found: list[Incident] = []
    for n, event in enumerate(events):
        if event.op not in ("deploy", "rollback") or not event.to_rev:
            continue
        live_at = _reloaded(event)
        if live_at is None:
            continue
        later = [e for e in events[n + 1 :] if e.target == event.target]
        subject = revision(event.to_rev)[0]
        if event.verdict in FAILED:
            undo = next((e for e in later if e.op == "auto-rollback" and e.from_rev == event.to_rev), None)
            found.append(
                Incident(
                    target=event.target,
                    revision=event.to_rev,
                    subject=subject,
                    live_at=live_at,
                    detected_at=_verified(event) or _at(event.finished),
                    detected_by="lbctl verification",
                    mitigated_at=_reloaded(undo) if undo else None,
                    restored_at=_at(undo.finished) if undo and undo.verdict == "good" else None,
                    undone_by="auto-rollback" if undo else "none yet",
                )
            )
            continue
        if event.verdict not in ("good", "pending-confirm"):  # pending: live, its watchdog armed (a drill's)
            continue
        nxt = next((e for e in later if e.op in CHANGES and _reloaded(e) is not None), None)
        if nxt is None or nxt.op != "rollback" or nxt.from_rev != event.to_rev:
            continue  # replaced by a later change, or still live: not a failed change
        start = _at(nxt.started)
        signs = [
            e
            for e in entries
            if e.kind in ("note", "notify", "alert")
            and e.target in (event.target, EVERYWHERE)
            and live_at <= e.at <= start
        ]
        first = min(signs, key=lambda e: e.at) if signs else None
        found.append(
            Incident(
                target=event.target,
                revision=event.to_rev,
                subject=subject,
                live_at=live_at,
                detected_at=first.at if first else start,
                detected_by=f"{first.kind}: {first.text}" if first else "the rollback itself",
                mitigated_at=_reloaded(nxt),
                restored_at=_at(nxt.finished) if nxt.verdict == "good" else None,
                undone_by=f"rollback by {nxt.who}",
            )
        )
    return found


# -- rendering ------------------------------------------------------------------------------


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f}s"
    hours, rest = divmod(whole, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _clock(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S") if moment else "-"


def markdown(timeline: Timeline) -> str:
    window = f"{iso(timeline.since) or 'the first event'} to {iso(timeline.until)}"
    lines = ["## Timeline", "", f"All times UTC; {', '.join(timeline.targets)}; {window}.", ""]
    day = None
    for entry in timeline.entries:
        today = entry.at.astimezone(UTC).date().isoformat()
        if today != day:
            lines += [f"**{today}**", ""] if day is None else ["", f"**{today}**", ""]
            day = today
        where = "" if len(timeline.targets) == 1 and entry.target != EVERYWHERE else f"[{entry.target}] "
        lines.append(f"- {_clock(entry.at)} {where}{entry.kind}: {entry.text}")
        if entry.details.get("stages_line"):
            lines.append(f"  - stages: {entry.details['stages_line']}")
        if entry.details.get("checks_line"):
            lines.append(f"  - checks: {entry.details['checks_line']}")
        for backend, servers in (entry.details.get("shares") or {}).items():
            if entry.kind in ("verified", "failed"):
                parts = [f"{s} {_pct(v['before'])} -> {_pct(v['after'])}" for s, v in servers.items()]
                lines.append(f"  - traffic {backend}: {', '.join(parts)}")
    if not timeline.entries:
        lines.append("(nothing recorded in this window)")
    lines += ["", "## Summary", ""]
    if not timeline.incidents:
        lines.append("No failed change in this window.")
    else:
        lines += [
            "| Target | Change | Live at | Detected by | Undone by "
            "| Time to detect | Time to mitigate | Time to restore |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for i in timeline.incidents:
            change = f"{i.revision[:10]} {i.subject}".strip().replace("|", "/")
            lines.append(
                f"| {i.target} | {change} | {_clock(i.live_at)} | {i.detected_by.replace('|', '/')} | {i.undone_by} "
                f"| {_span(i.detect)} | {_span(i.mitigate)} | {_span(i.restore)} |"
            )
        lines += [
            "",
            "Measured from the reload that made the change live: to detect = to the failed verification (or the "
            "first alert, notification or note); to mitigate = to the reload that restored the previous config; "
            "to restore = to that restore verified good.",
        ]
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def csv_text(timeline: Timeline) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["at", "target", "kind", "text", "event"])
    for e in timeline.entries:
        writer.writerow([iso(e.at), e.target, e.kind, e.text, e.event or ""])
    return out.getvalue()


def render(timeline: Timeline, fmt: str) -> str:
    if fmt == "json":
        from lbctl.masking import mask_json

        return json.dumps(mask_json(timeline.to_json()), indent=2) + "\n"
    if fmt == "csv":
        return csv_text(timeline)
    return markdown(timeline)
