"""The members of a group (`[groups.NAME] targets`, names or globs, and the targets with `group = NAME`):
resolved here, where lbctl.toml is validated, so a group naming no target is a config error; `lbctl.fleet`
deploys them."""

from __future__ import annotations

import difflib
import fnmatch
import re
from typing import TYPE_CHECKING

from lbctl.errors import UsageError

if TYPE_CHECKING:
    from lbctl.config.schema import Group, StoreConfig


def member_names(config: StoreConfig, name: str) -> list[str]:
    """The group's members in a stable order: its `targets` entries in order (a glob's matches in natural
    order, edge2 before edge10), then the targets that name the group, each once. Raises `UsageError`
    for an unknown group or a name that matches no target."""
    group = group_of(config, name)
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


def group_of(config: StoreConfig, name: str) -> Group:
    try:
        return config.groups[name]
    except KeyError:
        if any(t.group == name for t in config.targets.values()):  # named by its targets only: the defaults
            from lbctl.config.schema import Group

            return Group()
        known = sorted(config.groups)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean @{close[0]}?" if close else f"groups: {', '.join(known) or '(none)'}"
        raise UsageError(f"unknown group {name!r} (no [groups.{name}] in lbctl.toml)", hint=hint) from None


def _natural(name: str) -> list[tuple[int, str]]:
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", name)]


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")
