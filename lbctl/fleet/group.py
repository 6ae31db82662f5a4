"""The members of a group: `[groups.NAME] targets` (names or globs) and the targets with `group = NAME`,
each with its `[groups.NAME.members.TARGET]` overrides applied."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from lbctl.config.groups import group_of, member_names

if TYPE_CHECKING:
    from lbctl.config import Group, Target
    from lbctl.store.workspace import Workspace


@dataclass(frozen=True)
class Member:
    """One target of a group, as the group deploys it (its overrides applied)."""

    name: str
    target: Target
    index: int  # 1-based position in the group: the order of the canary and the batches


def members(ws: Workspace, name: str) -> list[Member]:
    config = ws.config
    group = group_of(config, name)
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
    return group_of(ws.config, name)
