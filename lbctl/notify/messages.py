"""What a notification says about a deploy event, and how each kind of sink wants it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lbctl.store.journal import Event

DIFF_LINES = 12
FAILED = ("failed", "validation-failed", "refused", "interrupted")
DRILL = "[DRILL]"  # in the title and text of every message about a drill's change


def kind_of(event: Event) -> str | None:
    """The `on = [...]` name of an event, or None for events nobody is told about (pull, no-op)."""
    if event.verdict == "good" and event.op in ("rollback", "auto-rollback"):
        return "rolled-back"
    if event.verdict in ("good", "rolled-back", "restore-failed"):
        return event.verdict
    if event.verdict.startswith("pending"):
        return "pending-confirm"
    if event.verdict in FAILED:
        return "failed"
    if event.verdict == "watch-alert":
        return "watch-alert"
    return None


def message(event: Event, *, drill: str | None = None) -> dict[str, Any]:
    """The facts of one event, as every sink gets them; a drill's (`drill`: its scenario) says `[DRILL]`."""
    kind = kind_of(event) or event.verdict
    undo_to = event.from_rev if kind in ("good", "pending-confirm", "watch-alert") and event.from_rev else None
    rollback = f"lbctl rollback {event.target} --to {undo_to[:12] if undo_to else 'last-good'} --yes"
    diff = [line for line in event.diff.splitlines() if line.strip()][:DIFF_LINES]
    return {
        "event": event.id,
        "kind": kind,
        "op": event.op,
        "verdict": event.verdict,
        "who": event.who,
        "target": event.target,
        "from": event.from_rev,
        "to": event.to_rev,
        "started": event.started,
        "at": event.finished,
        "message": f"{DRILL} {drill}: {event.message}" if drill else event.message,
        "drill": drill,
        "diff": diff,
        "shares": _shares(event),
        "stages": [{"name": s.name, "ok": s.ok, "seconds": round(s.seconds, 3)} for s in event.stages],
        "rollback": rollback,
    }


def _shares(event: Event) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per backend and server, the traffic share before and after, from the balance check's figures."""
    found: dict[str, dict[str, dict[str, float | None]]] = {}
    for check in event.checks:
        figures = check.get("figures") or {}
        for backend, data in (figures.get("backends") or {}).items():
            for server, info in (data.get("servers") or {}).items():
                found.setdefault(backend, {})[server] = {"before": info.get("share_before"), "after": info.get("share")}
    return found


def text(msg: dict[str, Any]) -> str:
    """A plain-text rendering (Slack, logs)."""
    short = (msg["from"] or "none")[:10], (msg["to"] or "none")[:10]
    tag = f"{DRILL} " if msg.get("drill") else ""
    lines = [f"{tag}lbctl: {msg['op']} {msg['target']} {short[0]} -> {short[1]}: {msg['kind']} (by {msg['who']})"]
    if msg["message"]:
        lines.append(msg["message"].splitlines()[0])
    lines.extend(f"    {line}" for line in msg["diff"])
    for backend, servers in msg["shares"].items():
        parts = [f"{s} {_pct(v['before'])} -> {_pct(v['after'])}" for s, v in servers.items()]
        lines.append(f"  shares {backend}: " + ", ".join(parts))
    if msg["stages"]:
        lines.append("  stages: " + ", ".join(f"{s['name']} {s['seconds']:.2f}s" for s in msg["stages"]))
    lines.append(f"  undo: {msg['rollback']}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def body(sink_type: str, msg: dict[str, Any]) -> Any:
    """The JSON a sink of `sink_type` takes."""
    if sink_type == "slack":
        return {"text": text(msg)}
    if sink_type == "alertmanager":
        now = datetime.now(tz=UTC)
        return [
            {
                "labels": {
                    "alertname": "LbctlDeployEvent",
                    "target": msg["target"],
                    "kind": msg["kind"],
                    "event": msg["event"],
                    "source": "lbctl",
                    "severity": "info" if msg["kind"] == "good" else "warning",
                },
                "annotations": {"summary": text(msg).splitlines()[0], "rollback": msg["rollback"]},
                "startsAt": now.isoformat(timespec="milliseconds"),
                "endsAt": (now + timedelta(minutes=5)).isoformat(timespec="milliseconds"),
            }
        ]
    if sink_type == "grafana":
        # An annotation over the operation's span, organisation-wide (any dashboard can show it by tag).
        at = _epoch_ms(msg["at"])
        start = _epoch_ms(msg.get("started")) or at
        return {
            "time": start or at,
            "timeEnd": at or start,
            "tags": ["lbctl", f"target:{msg['target']}", f"verdict:{msg['kind']}", f"op:{msg['op']}"]
            + (["drill"] if msg.get("drill") else []),
            "text": text(msg),
        }
    return msg


def _epoch_ms(stamp: str | None) -> int | None:
    """A journal timestamp (ISO 8601) as Grafana's milliseconds since the epoch."""
    if not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)
