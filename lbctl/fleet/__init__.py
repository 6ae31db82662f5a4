"""Fleets: one change to a group of targets (`deploy @edge`), with a canary, batches and a consistent undo.

group.py    who the members of `[groups.NAME]` are, each with its per-member overrides
holding.py  every member's locks taken before anything is touched, and held until the rollout ends
plan.py     the fleet plan as a value: each member's plan (a dry run of the single-target lifecycle) and
            one checksum; preflight refuses the whole rollout if any member refuses
rollout.py  the canary, its bake, then batches in parallel (bounded by `parallel`), each member through
            the single-target lifecycle with a commit-confirm watchdog kept armed until the rollout ends
undo.py     every member this rollout changed put back on its own previous revision, in parallel
views.py    status, diff, check and log of a group
render.py   the per-member table, progress lines and JSON
"""

from __future__ import annotations

GROUP_PREFIX = "@"
READ_WIDTH = 32  # members reached at once by what changes nothing on them: locks, plans, confirmations


def read_width(parallel: int, members: int) -> int:
    """Threads for a phase that changes no member's config: every member at once, up to READ_WIDTH
    (never fewer than `parallel`, which bounds the members whose config changes at once)."""
    return max(1, min(members, max(parallel, READ_WIDTH)))


def group_name(argument: str) -> str | None:
    """`@edge` names the group `edge`; anything else names a target (None)."""
    return argument[1:] if argument.startswith(GROUP_PREFIX) and len(argument) > 1 else None
