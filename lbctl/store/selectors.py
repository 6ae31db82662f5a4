"""Revision selectors: `last-good`, `previous`, `prev-N` (or `~N`), `live`, a git revision, `@<ISO time>`.

`prev-N` is `~N` in a form no shell rewrites (bash expands `~0` to the current directory).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from lbctl.errors import LbctlError, UsageError
from lbctl.store.journal import Journal, TargetState
from lbctl.store.repo import Store

_TILDE = re.compile(r"^(?:~|prev-)(\d+)$")


@dataclass(frozen=True)
class Selected:
    rev: str
    why: str


def select(
    store: Store,
    journal: Journal,
    state: TargetState,
    selector: str,
    *,
    content_of: Callable[[str], object] | None = None,
) -> Selected:
    """Resolve `selector` for one target to a store revision (exit 2 when impossible).

    With `content_of` (a revision's content for the target: its files), `previous` skips
    revisions whose content is what runs now (an automatic rollback restores an earlier
    revision's content as a new commit).
    """
    target = state.target
    if selector == "live":
        if state.live is None:
            raise UsageError(f"lbctl has not deployed to {target} yet: nothing is live")
        return Selected(state.live, "live now")
    if selector == "last-good":
        failing = state.live if state.status != "good" else None
        for rev in state.good:
            if rev not in state.bad and rev != failing and not is_drill(store, rev):
                return Selected(rev, "last revision verified good here")
        raise UsageError(
            f"{target} has no revision verified good yet",
            hint="pick one explicitly: `lbctl log` lists revisions; use --to <sha>",
        )
    # Revisions that failed here were live only until lbctl undid them: not places to go back to.
    history = [h for h in state.history if h.rev and h.rev not in state.bad]
    if selector == "previous":
        current = content_of(state.live) if content_of and state.live else None
        for entry in history:
            if not entry.rev or entry.rev == state.live:
                continue
            if current is not None and content_of is not None and content_of(entry.rev) == current:
                continue
            return Selected(entry.rev, f"live before {_short(state.live)}")
        raise UsageError(f"{target} has no previous revision: lbctl deployed to it at most once")
    tilde = _TILDE.match(selector)
    if tilde:
        steps = int(tilde.group(1))
        every = list(state.history)  # literally N deploys back, failed ones counted: predictable
        if steps < len(every) and every[steps].rev:
            return Selected(str(every[steps].rev), f"live {steps} deploy(s) ago")
        raise UsageError(f"{target} has only {len(every)} recorded deploy(s); {selector} goes too far back")
    if selector.startswith("@"):
        when = parse_time(selector[1:])
        return _live_at(journal, state, when)
    return Selected(store.resolve(selector), f"revision {selector}")


def is_drill(store: Store, rev: str) -> bool:
    """A drill's change (`Lbctl-Drill` trailer) is never a place to go back to, however it verified."""
    try:
        return "Lbctl-Drill" in store.revision(rev).trailers
    except (LbctlError, ValueError):
        return False


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{text!r} is not an ISO-8601 time", hint="e.g. @2026-11-23T03:00 or @2026-11-23T03:00:00Z"
        ) from None
    # A time without a zone is the operator's local time, as they read it off a clock.
    return moment.astimezone(UTC) if moment.tzinfo is None else moment


def _live_at(journal: Journal, state: TargetState, when: datetime) -> Selected:
    for entry in state.history:
        if datetime.fromisoformat(entry.at) <= when and entry.rev and entry.rev not in state.bad:
            return Selected(entry.rev, f"live at {when.isoformat()}")
    # Older than what the state keeps: walk the journal itself.
    for event in journal.events(state.target):
        live_after = event.verdict in ("good", "unverified", "interrupted") and event.to_rev not in state.bad
        if live_after and event.to_rev and datetime.fromisoformat(event.finished) <= when:
            return Selected(event.to_rev, f"live at {when.isoformat()}")
    raise UsageError(f"lbctl had deployed nothing to {state.target} by {when.isoformat()}")


def _short(rev: str | None) -> str:
    return rev[:10] if rev else "(unknown)"


def check_form(store: Store, selector: str) -> None:
    """Refuse (exit 2) a selector no target could resolve: not a keyword, `prev-N`/`~N`, `@TIME`, nor a
    revision of the store. What it selects for each target is `select`'s to say."""
    if selector in ("live", "last-good", "previous") or _TILDE.match(selector):
        return
    if selector.startswith("@"):
        parse_time(selector[1:])
        return
    store.resolve(selector)
