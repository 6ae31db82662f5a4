"""Optional automatic rollback from `lbctl watch` (`[watch] auto_rollback = true`; off by default).

When an alert fires on a target whose live revision was deployed less than
`auto_rollback_max_age` ago, watch runs the normal `rollback --to previous`, with its
verification and records. Once per revision: the revision it rolled back and the one the
rollback made live are remembered (`.git/lbctl/watch-rollbacks.json`), so watch never rolls
either back again, and never walks further back in history on its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lbctl.config import WatchSettings
from lbctl.store.journal import TargetState

if TYPE_CHECKING:
    from lbctl.engine.execute import Outcome
    from lbctl.store.workspace import Workspace


def due(state: TargetState, settings: WatchSettings, done: set[str], now: datetime) -> bool:
    """Should an alert on this target roll its live revision back?"""
    if not settings.auto_rollback or not state.live or state.live in done or not state.history:
        return False
    newest = state.history[0]
    if newest.rev != state.live:
        return False
    try:
        deployed = datetime.fromisoformat(newest.at)
    except ValueError:
        return False
    if deployed.tzinfo is None:
        deployed = deployed.replace(tzinfo=UTC)
    return (now - deployed).total_seconds() <= settings.auto_rollback_max_age


class AutoRollback:
    def __init__(self, ws: Workspace, settings: WatchSettings) -> None:
        self.ws = ws
        self.settings = settings
        self.file: Path = ws.store.git_dir / "lbctl" / "watch-rollbacks.json"

    def done(self) -> set[str]:
        try:
            return set(json.loads(self.file.read_text()))
        except (OSError, ValueError):
            return set()

    def _remember(self, *revs: str | None) -> None:
        done = self.done() | {r for r in revs if r}
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.file.write_text(json.dumps(sorted(done)))

    def maybe(self, target: str, why: str) -> Outcome | None:
        """Roll `target` back if it is due; the outcome, or None when it was not due."""
        from lbctl.commands import deploy as operations

        state = self.ws.journal.state(target)
        if not due(state, self.settings, self.done(), datetime.now(tz=UTC)):
            return None
        self._remember(state.live)  # before acting: a crash mid-rollback must not make it try again
        outcome = operations.rollback(
            self.ws,
            target,
            to="previous",
            message=f"lbctl watch: automatic rollback: {why}",
            explain=False,
            confirm=lambda plan: True,
            report=lambda stage, message: None,
        )
        self._remember(self.ws.journal.state(target).live)
        return outcome
