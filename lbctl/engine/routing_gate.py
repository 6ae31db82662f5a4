"""The routing gate of `check` and `deploy`: routing cases, and a replay of real requests.

Run before anything is pushed, against the candidate (and, for a replay, the live config),
each in a sandbox of the LB's real binary. A failed case refuses (exit 3). A replay's
figures replace the routing estimate (`preflight.Replayed`), so the blast-radius gate
(`gates.routing_radius`) judges the change once, on what the replay measured. What
cannot run (no binary, a file or module missing on this machine, an unreadable log) is a
note that says so: the static checks still judge the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbctl.engine.cases import RoutingReport

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.engine.gates import Problem
    from lbctl.engine.replay import ReplayResult
    from lbctl.sandbox import Request
    from lbctl.store.bundle import Bundle
    from lbctl.store.workspace import Workspace
    from lbctl.transports.base import Transport


@dataclass(frozen=True)
class RoutingJudgement:
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    report: RoutingReport | None = None
    replay: ReplayResult | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "routing": self.report.to_json() if self.report else None,
            "replay": self.replay.to_json() if self.replay else None,
        }


def judge(
    ws: Workspace,
    target: Target,
    *,
    live: Bundle | None,
    live_rev: str | None,
    candidate: Bundle,
    candidate_rev: str,
    label: str,
    replay_file: Path | None = None,
    transport: Transport | None = None,
) -> RoutingJudgement:
    """Routing cases through `candidate`; requests from `replay_file` (or the target's `replay_log`,
    read through `transport`) through `live` and `candidate`."""
    from lbctl.engine import cases as routing
    from lbctl.store.bundle import store_files

    problems: list[Problem] = []
    notes: list[str] = []
    report = None
    routes = ws.config.routes_for(target)
    if routes:
        find = store_files(ws.store, target, candidate_rev, candidate)
        report = routing.run_cases(target, candidate, routes, find_file=find, label=label)
        found, said = routing.problems(report)
        problems += found
        notes += said
    result = None
    requests, source, skipped = _requests(target, replay_file, transport, notes)
    if requests:
        if live is None:
            notes.append(f"replay skipped: {target.name} has no live config to compare with")
        else:
            result = _replay(ws, target, live, live_rev, candidate, candidate_rev, requests, source, skipped, notes)
    if result is not None:
        notes += result.lines()
    return RoutingJudgement(tuple(problems), tuple(notes), report, result)


def _requests(
    target: Target, replay_file: Path | None, transport: Transport | None, notes: list[str]
) -> tuple[list[Request], str, int]:
    from lbctl.engine.replay import parse_log

    if replay_file is not None:
        from lbctl.errors import UsageError

        try:
            text = replay_file.read_text(errors="replace")
        except OSError as exc:
            raise UsageError(f"cannot read --replay {replay_file}: {exc.strerror}") from None
        source = str(replay_file)
    elif target.replay_log and transport is not None:
        source = f"{target.replay_log} on {target.name} (last {target.replay_lines} lines)"
        try:
            result = transport.run(["tail", "-n", str(target.replay_lines), target.replay_log], timeout=30)
        except Exception as exc:  # the log is a bonus: a transport that cannot read it is a note
            notes.append(f"replay skipped: cannot read {source}: {exc}")
            return [], source, 0
        if result.code != 0:
            notes.append(f"replay skipped: cannot read {source}: {result.output or f'exit {result.code}'}")
            return [], source, 0
        text = result.stdout
    else:
        return [], "", 0
    requests, skipped = parse_log(text.splitlines())
    if not requests:
        notes.append(f"replay skipped: no request could be read from {source} ({skipped} line(s) not understood)")
    return requests, source, skipped


def _replay(
    ws: Workspace,
    target: Target,
    live: Bundle,
    live_rev: str | None,
    candidate: Bundle,
    candidate_rev: str,
    requests: list[Request],
    source: str,
    skipped: int,
    notes: list[str],
) -> ReplayResult | None:
    from lbctl.engine.replay import replay
    from lbctl.errors import SandboxUnavailable
    from lbctl.store.bundle import store_files

    try:
        return replay(
            target,
            live,
            candidate,
            requests,
            source=source,
            skipped=skipped,
            find_live=store_files(ws.store, target, live_rev or candidate_rev, live),
            find_candidate=store_files(ws.store, target, candidate_rev, candidate),
        )
    except SandboxUnavailable as exc:
        notes.append(f"replay could not run: {exc}")
        return None
