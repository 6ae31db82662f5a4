"""`lbctl watch`: sample every target on an interval, judge the window, raise and clear alerts.

The loop owns no policy: `evaluate` judges, `advance` decides what fires, `metrics` and
`alertmanager` publish. `once` is one evaluation over a short window, with no `for`.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lbctl.config import BalanceCheck, Target, WatchSettings
from lbctl.errors import ConfigError
from lbctl.watch.evaluate import (
    Alert,
    AlertBook,
    Change,
    Limits,
    Sample,
    TargetReport,
    Traffic,
    advance,
    evaluate,
    traffic,
)

if TYPE_CHECKING:
    from lbctl.store.journal import Event
    from lbctl.store.workspace import Workspace
    from lbctl.watch.alertmanager import AlertmanagerClient
    from lbctl.watch.metrics import MetricsServer
    from lbctl.watch.sources import Source


@dataclass(frozen=True)
class TargetInfo:
    """What the store says of a target: the live revision, and the command that undoes it."""

    name: str
    live: str | None
    status: str
    rollback: str
    previous: str | None = None  # what the rollback command puts back
    confirm_deadline: float | None = None  # epoch seconds, while a commit-confirm change is pending


@dataclass(frozen=True)
class WatchResult:
    reports: tuple[TargetReport, ...]
    alerts: tuple[Alert, ...]  # firing
    infos: tuple[TargetInfo, ...] = ()

    @property
    def alerting(self) -> bool:
        return bool(self.alerts)

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "alerting": self.alerting,
            "targets": [
                {**asdict(r), "verdict": r.verdict, **({"rollback": i.rollback, "live": i.live} if i else {})}
                for r, i in zip(self.reports, _infos_for(self.reports, self.infos), strict=True)
            ],
            "alerts": [asdict(a) for a in self.alerts],
        }


def _infos_for(reports: Sequence[TargetReport], infos: Sequence[TargetInfo]) -> list[TargetInfo | None]:
    by_name = {i.name: i for i in infos}
    return [by_name.get(r.target) for r in reports]


def limits_for(target: Target, settings: WatchSettings) -> Limits:
    """`[watch]` bounds, falling back to the target's balance check for `max_share` and 5xx."""
    balance = next((c for c in target.checks if isinstance(c, BalanceCheck)), None)
    max_share = settings.max_share if settings.max_share is not None else (balance.max_share if balance else None)
    max_5xx = settings.max_5xx_ratio
    if max_5xx is None:
        max_5xx = balance.max_5xx_ratio if balance else 0.05
    return Limits(settings.min_requests, settings.share_deviation, max_share, max_5xx)


def target_info(ws: Workspace, name: str) -> TargetInfo:
    state = ws.journal.state(name)
    before = next((h.rev for h in state.history if h.rev and h.rev != state.live), None)
    to = before or next((g for g in state.good if g != state.live), None)
    rollback = f"lbctl rollback {name} --to {to[:12]} --yes" if to else f"lbctl rollback {name} --to last-good --yes"
    deadline = pending_deadline(ws, name, state.last_event) if state.status == "pending-confirm" else None
    return TargetInfo(name, state.live, state.status, rollback, to, deadline)


_REVERTS_AT = re.compile(r"reverts it at (\d\d):(\d\d):(\d\d) UTC")


def pending_deadline(ws: Workspace, name: str, event_id: str | None) -> float:
    """When the pending change of `name` reverts, from its `pending-confirm` event (0.0: not known).

    The event says the clock time (`reverts it at HH:MM:SS UTC`); its date is the first one at or
    after the event's end (a deadline is never before the change was recorded)."""
    for n, event in enumerate(ws.journal.events(name)):
        if n > 50:
            break
        if event.id != event_id:
            continue
        found = _REVERTS_AT.search(event.message)
        if not found:
            return 0.0
        finished = datetime.fromisoformat(event.finished.replace("Z", "+00:00"))
        if finished.tzinfo is None:
            finished = finished.replace(tzinfo=UTC)
        hour, minute, second = (int(g) for g in found.groups())
        at = finished.replace(hour=hour, minute=minute, second=second, microsecond=0)
        if at < finished - timedelta(seconds=1):
            at += timedelta(days=1)
        return at.timestamp()
    return 0.0


@dataclass
class Watcher:
    """Samples, judgements and alerts of a set of targets over time."""

    sources: list[Source]
    settings: WatchSettings
    infos: dict[str, TargetInfo]
    clock: Callable[[], float] = time.time
    samples: dict[str, deque[Sample]] = field(default_factory=dict)
    book: AlertBook = field(default_factory=AlertBook)
    reports: dict[str, TargetReport] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # Running totals of (new sessions, 5xx) per (target, backend, server), across counter resets.
    totals: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)

    def sample(self) -> None:
        for source in self.sources:
            name = source.target.name
            kept = self.samples.setdefault(name, deque())
            try:
                new = Sample(self.clock(), source.snapshot())
                if kept:
                    self._count(name, traffic([kept[-1], new]))
                kept.append(new)
                self.errors.pop(name, None)
            except ConfigError:
                raise  # a target watch cannot read at all (no stats_socket, ...): exit 2 and say why
            except Exception as exc:  # a target briefly unreachable is reported, not fatal
                self.errors[name] = str(exc) or type(exc).__name__
            # Keep the newest sample at or before the window's start as the window's baseline.
            horizon = self.clock() - self.settings.window
            while len(kept) > 1 and kept[1].at <= horizon:
                kept.popleft()

    def _count(self, name: str, seen: Traffic) -> None:
        for (backend, server), sent in seen.sessions.items():
            old_sent, old_failed = self.totals.get((name, backend, server), (0, 0))
            self.totals[(name, backend, server)] = (
                old_sent + sent,
                old_failed + seen.http_5xx.get((backend, server), 0),
            )

    def evaluate(self, for_seconds: float) -> list[Change]:
        changes: list[Change] = []
        for source in self.sources:
            name = source.target.name
            kept = list(self.samples.get(name, ()))
            if name in self.errors or not kept:
                report = TargetReport(name, self.clock(), 0.0, (), error=self.errors.get(name, "no samples yet"))
            else:
                pools = source.pools(kept[-1].snapshot)
                report = evaluate(name, kept, pools, limits_for(source.target, self.settings))
            self.reports[name] = report
            self.book, changed = advance(self.book, report, for_seconds)
            changes.extend(changed)
        return changes

    def result(self) -> WatchResult:
        reports = tuple(self.reports[s.target.name] for s in self.sources if s.target.name in self.reports)
        return WatchResult(reports, self.book.firing, tuple(self.infos.values()))


def alert_events(changes: Sequence[Change], infos: dict[str, TargetInfo]) -> list[Event]:
    """One event per alert that started firing (`watch-alert`) or resolved (`watch-resolved`)."""
    from lbctl.store.journal import Event, new_event_id, timestamp

    events = []
    for change in changes:
        info = infos.get(change.alert.target)
        at = timestamp()
        events.append(
            Event(
                id=new_event_id(),
                op="watch",
                target=change.alert.target,
                who="lbctl watch",
                started=at,
                finished=at,
                from_rev=info.previous if info else None,
                to_rev=info.live if info else None,
                verdict="watch-alert" if change.what == "firing" else "watch-resolved",
                message=change.alert.message,
            )
        )
    return events


def announce_alerts(ws: Workspace, events: Sequence[Event]) -> None:
    """Alerts that started firing, to the `[[notify]]` sinks that want `watch-alert` (never raises)."""
    from lbctl.notify import drill_of
    from lbctl.notify.outbox import Outbox

    try:
        outbox = Outbox(ws.store.git_dir / "lbctl")
        for event in events:
            if event.verdict == "watch-alert":  # an alert while a drill's change is live says [DRILL]
                outbox.queue(event, ws.config.notify, drill=drill_of(ws.store, event))
        outbox.flush(ws.config.notify)
    except Exception as exc:
        import sys

        print(f"lbctl watch: notification not sent ({exc})", file=sys.stderr)


def record_alerts(ws: Workspace, events: Sequence[Event]) -> None:
    """Alerts fired and resolved go into the journal, for `lbctl timeline` (never raises).

    A target's state is left as it was. Announced first with the same event ids, so the
    journal's own announcement of them never sends a message twice."""
    for event in events:
        try:
            ws.journal.append(event, ws.journal.state(event.target))
        except Exception as exc:
            import sys

            print(f"lbctl watch: alert not recorded in the journal ({exc})", file=sys.stderr)
            return


def _roll_back(
    ws: Workspace,
    settings: WatchSettings,
    watcher: Watcher,
    changes: Sequence[Change],
    on_rollback: Callable[[str, Any], None],
) -> None:
    """One automatic rollback per target whose alert just fired, if its live revision is recent."""
    from lbctl.errors import LbctlError
    from lbctl.watch.autorollback import AutoRollback

    auto = AutoRollback(ws, settings)
    for target in dict.fromkeys(c.alert.target for c in changes if c.what == "firing"):
        why = next(c.alert.message for c in changes if c.alert.target == target and c.what == "firing")
        outcome: object
        try:
            outcome = auto.maybe(target, why)
        except LbctlError as exc:  # locked, unreachable, refused: say so, keep watching
            outcome = exc
        if outcome is not None:
            watcher.infos[target] = target_info(ws, target)
            on_rollback(target, outcome)


def _refresh_infos(ws: Workspace, watcher: Watcher) -> None:
    """Re-read each target's journal state: a deploy, a pending commit-confirm or a confirm since the last round."""
    for name in list(watcher.infos):
        try:
            watcher.infos[name] = target_info(ws, name)
        except Exception as exc:  # a store briefly unreadable keeps the last round's view
            import sys

            print(f"lbctl watch: journal not read for {name} ({exc})", file=sys.stderr)


def open_watcher(ws: Workspace, targets: list[Target], settings: WatchSettings) -> Watcher:
    from lbctl.watch.sources import Source

    infos = {t.name: target_info(ws, t.name) for t in targets}
    return Watcher([Source.open(t) for t in targets], settings, infos)


def once(ws: Workspace, targets: list[Target], settings: WatchSettings, window: float) -> WatchResult:
    """One evaluation over `window` seconds: any condition out of bounds is an alert at once."""
    watcher = open_watcher(ws, targets, settings)
    try:
        watcher.sample()
        time.sleep(window)
        watcher.sample()
        watcher.evaluate(for_seconds=0.0)
        return watcher.result()
    finally:
        for source in watcher.sources:
            source.close()


def run(
    ws: Workspace,
    targets: list[Target],
    settings: WatchSettings,
    *,
    stop: threading.Event,
    duration: float | None = None,
    on_change: Callable[[Change, TargetInfo | None], None] = lambda change, info: None,
    on_round: Callable[[WatchResult], None] = lambda result: None,
    on_rollback: Callable[[str, Any], None] = lambda target, outcome: None,
) -> WatchResult:
    """Watch until `stop` is set (or `duration` passed): sample, judge, publish, every interval."""
    watcher = open_watcher(ws, targets, settings)
    metrics: MetricsServer | None = None
    manager: AlertmanagerClient | None = None
    if settings.listen:
        from lbctl.watch.metrics import MetricsServer

        metrics = MetricsServer.start(settings.listen)
    if settings.alertmanager:
        from lbctl.watch.alertmanager import AlertmanagerClient

        manager = AlertmanagerClient(settings.alertmanager, resend=settings.interval)
    started = time.monotonic()
    try:
        while not stop.is_set():
            round_started = time.monotonic()
            _refresh_infos(ws, watcher)
            watcher.sample()
            changes = watcher.evaluate(settings.for_)
            result = watcher.result()
            for change in changes:
                on_change(change, watcher.infos.get(change.alert.target))
            if changes:
                events = alert_events(changes, watcher.infos)
                if ws.config.notify and any(c.what == "firing" for c in changes):
                    announce_alerts(ws, events)
                record_alerts(ws, events)
            if settings.auto_rollback:
                _roll_back(ws, settings, watcher, changes, on_rollback)
            if metrics is not None:
                metrics.publish(result, watcher.book, watcher.totals)
            if manager is not None:
                manager.publish(result, changes, watcher.infos)
            on_round(result)
            if duration is not None and time.monotonic() - started >= duration:
                break
            stop.wait(max(0.0, settings.interval - (time.monotonic() - round_started)))
        return watcher.result()
    finally:
        if metrics is not None:
            metrics.close()
        for source in watcher.sources:
            source.close()
