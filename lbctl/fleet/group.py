"""The members of a group: `[groups.NAME] targets` (names or globs) and the targets with `group = NAME`,
each with its `[groups.NAME.members.TARGET]` overrides applied."""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from lbctl.errors import UsageError

if TYPE_CHECKING:
    from lbctl.config import Group, StoreConfig, Target
    from lbctl.store.workspace import Workspace


@dataclass(frozen=True)
class Member:
    """One target of a group, as the group deploys it (its overrides applied)."""

    name: str
    target: Target
    index: int  # 1-based position in the group: the order of the canary and the batches


def member_names(config: StoreConfig, name: str) -> list[str]:
    """The group's members in a stable order: its `targets` entries in order (a glob's matches in natural
    order, edge2 before edge10), then the targets that name the group, each once. Raises `UsageError`
    for an unknown group or a name that matches no target."""
    group = _group(config, name)
    names: list[str] = []
    known = list(config.targets)
    for pattern in group.targets:
        matched = sorted(fnmatch.filter(known, pattern), key=_natural) if _is_glob(pattern) else [pattern]
        if not matched or (not _is_glob(pattern) and pattern not in config.targets):
            raise UsageError(
                f"group {name!r}: {pattern!r} matches no target", hint=f"targets: {', '.join(known) or '(none)'}"
            )
        names += [m for m in matched if m not in names]
    names += [t for t, target in config.targets.items() if target.group == name and t not in names]
    if not names:
        raise UsageError(f"group {name!r} has no members", hint=f"add `targets = [...]` to [groups.{name}]")
    stray = sorted(set(group.members) - set(names))
    if stray:
        raise UsageError(f"group {name!r}: [groups.{name}.members.{stray[0]}] is not a member of the group")
    return names


def members(ws: Workspace, name: str) -> list[Member]:
    config = ws.config
    group = _group(config, name)
    found = []
    for index, member in enumerate(member_names(config, name), start=1):
        found.append(Member(member, overridden(config.targets[member], group), index))
    return found


def overridden(target: Target, group: Group) -> Target:
    """`target` with the group's per-member overrides (checks, path, sockets, verification) applied."""
    override = group.members.get(target.name)
    if override is None:
        return target
    changes = {k: v for k, v in override.__dict__.items() if v is not None}
    return replace(target, **changes)


def member_workspace(ws: Workspace, member: Member) -> Workspace:
    """The workspace a member's single-target operation runs in: the same store and journal, and a
    configuration whose target is the member as the group deploys it."""
    if ws.config.targets.get(member.name) is member.target:
        return ws
    config = replace(ws.config, targets={**ws.config.targets, member.name: member.target})
    return replace(ws, config=config)


def rollout_settings(ws: Workspace, name: str) -> Group:
    return _group(ws.config, name)


def _group(config: StoreConfig, name: str) -> Group:
    try:
        return config.groups[name]
    except KeyError:
        if any(t.group == name for t in config.targets.values()):  # named by its targets only: the defaults
            from lbctl.config import Group

            return Group()
        known = sorted(config.groups)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean @{close[0]}?" if close else f"groups: {', '.join(known) or '(none)'}"
        raise UsageError(f"unknown group {name!r} (no [groups.{name}] in lbctl.toml)", hint=hint) from None


def _natural(name: str) -> list[tuple[int, str]]:
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", name)]


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")
