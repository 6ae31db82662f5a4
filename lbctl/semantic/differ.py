"""Compare two `ConfigModel`s and say what changed, in terms a reviewer reads.

Each section is normalised to order-free parts (settings as sorted multisets,
servers keyed by name) and ordered parts (rule chains). A cheap equality test
skips unchanged sections and servers, so deepdiff only ever sees the parts that
differ: a one-weight change in a 20,000-server backend hands deepdiff one server.
Rule chains are compared with difflib's opcodes rather than deepdiff's ordered
list diff, which may pair items by index and turn one insertion into a cascade
of "changed" rules.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from lbctl.masking import SECRET_CHANGED, only_secrets_differ, sealed_parts
from lbctl.semantic.model import ConfigModel, Section, Server, keyed_servers
from lbctl.semantic.result import Change

_ROUTING_CHAINS = frozenset({"use_backend", "use-server", "location~"})
_ROUTING_SETTINGS = frozenset({"default_backend", "proxy_pass", "grpc_pass", "fastcgi_pass", "uwsgi_pass"})


def semantic_diff_changes(old: ConfigModel, new: ConfigModel) -> tuple[Change, ...]:
    """Every semantic change from `old` to `new`, in the order of `new`'s sections."""
    down = "marked down" if new.kind == "nginx" else "disabled"
    old_sections = {(s.type, s.name): s for s in old.sections}
    new_sections = {(s.type, s.name): s for s in new.sections}
    removed = [k for k in old_sections if k not in new_sections]
    added = [k for k in new_sections if k not in old_sections]
    renamed = _renames(removed, added, old_sections, new_sections)
    changes: list[Change] = []
    for key, section in new_sections.items():
        if key in renamed:
            was = old_sections[renamed[key]]
            changes.append(
                Change(
                    section.label,
                    "section",
                    "renamed",
                    f"renamed from {was.label}",
                    old=was.name,
                    new=section.name,
                    line=section.line,
                    traffic=section.is_pool,
                )
            )
        elif key not in old_sections:
            changes.append(
                Change(
                    section.label,
                    "section",
                    "added",
                    f"section added{_summary(section)}",
                    line=section.line,
                    traffic=section.is_pool,
                )
            )
        else:
            changes.extend(_section_changes(old_sections[key], section, down))
    gone = set(renamed.values())
    for key in removed:
        if key not in gone:
            section = old_sections[key]
            changes.append(
                Change(
                    section.label,
                    "section",
                    "removed",
                    f"section removed{_summary(section)}",
                    line=section.line,
                    traffic=section.is_pool,
                )
            )
    return tuple(changes)


def normal_form(section: Section) -> dict[str, Any]:
    """The parts of a section that count, free of order where order does not matter."""
    return {
        "balance": section.balance,
        "backup_mode": section.backup_mode if section.is_pool else None,
        "settings": _settings(section),
        "servers": keyed_servers(section),
        "chains": _chains(section),
    }


def server_form(server: Server) -> dict[str, Any]:
    return {
        "address": server.endpoint,
        "weight": server.weight,
        "backup": server.backup,
        "disabled": server.disabled,
        "check": server.check,
        "options": dict(server.options),
    }


def _settings(section: Section) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for setting in section.settings:
        settings.setdefault(setting.key, []).append(setting.value)
    for values in settings.values():
        values.sort()
    return settings


def _chains(section: Section) -> dict[str, list[str]]:
    chains: dict[str, list[str]] = {}
    for rule in section.rules:
        chains.setdefault(rule.chain, []).append(rule.text)
    return chains


def _summary(section: Section) -> str:
    n = len(section.servers)
    return f" ({n} server{'s' if n != 1 else ''})" if n else ""


def _renames(
    removed: list[tuple[str, str]],
    added: list[tuple[str, str]],
    old: dict[tuple[str, str], Section],
    new: dict[tuple[str, str], Section],
) -> dict[tuple[str, str], tuple[str, str]]:
    """Pair a removed section with an added one of the same type and identical content."""
    renamed: dict[tuple[str, str], tuple[str, str]] = {}
    forms = {k: normal_form(old[k]) for k in removed}
    for key in added:
        form = normal_form(new[key])
        for was in removed:
            if was[0] == key[0] and was not in renamed.values() and forms[was] == form:
                renamed[key] = was
                break
    return renamed


def _section_changes(old: Section, new: Section, down: str) -> Iterator[Change]:
    label = new.label
    if old.balance != new.balance:
        yield Change(
            label,
            "balance",
            "changed",
            f"balance {old.balance} → {new.balance}",
            field="balance",
            old=old.balance,
            new=new.balance,
            line=new.line,
            traffic=True,
        )
    if new.is_pool and old.backup_mode != new.backup_mode:
        yield Change(
            label,
            "balance",
            "changed",
            f"backups used: {old.backup_mode} → {new.backup_mode}",
            field="backup_mode",
            old=old.backup_mode,
            new=new.backup_mode,
            line=new.line,
            traffic=True,
        )
    old_settings, new_settings = _settings(old), _settings(new)
    if old_settings != new_settings:
        yield from _setting_changes(label, old_settings, new_settings, new)
    old_servers, new_servers = keyed_servers(old), keyed_servers(new)
    if old_servers != new_servers:
        yield from _server_changes(label, old_servers, new_servers, down)
    old_chains, new_chains = _chains(old), _chains(new)
    if old_chains != new_chains:
        lines = {(r.chain, r.text): r.line for r in new.rules}
        for chain in [*new_chains, *(c for c in old_chains if c not in new_chains)]:
            before, after = old_chains.get(chain, []), new_chains.get(chain, [])
            if before != after:
                yield from _chain_changes(label, chain, before, after, lines)


def _setting_changes(
    label: str, old: dict[str, list[str]], new: dict[str, list[str]], section: Section
) -> Iterator[Change]:
    from deepdiff import DeepDiff

    lines = {s.key: s.line for s in section.settings}
    # Whole keys added or removed are read off the dicts; deepdiff sees only the keys both have
    # (handed an empty side, it reports a change at the root, with no key to name).
    for key in sorted(new.keys() - old.keys()):
        for value in new[key]:
            yield _setting(label, "added", key, new=value, line=lines.get(key))
    for key in sorted(old.keys() - new.keys()):
        for value in old[key]:
            yield _setting(label, "removed", key, old=value, line=lines.get(key))
    old = {k: v for k, v in old.items() if k in new and v != new[k]}
    new = {k: v for k, v in new.items() if k in old}
    if not old:
        return
    tree = DeepDiff(old, new, ignore_order=True, view="tree")
    for report, levels in sorted(tree.items()):
        for level in sorted(levels, key=lambda lv: str(lv.path())):
            key = str(level.path(output_format="list")[0])
            if report == "values_changed":
                yield _setting(label, "changed", key, old=level.t1, new=level.t2, line=lines.get(key))
            elif report == "iterable_item_added":
                yield _setting(label, "added", key, new=level.t2, line=lines.get(key))
            elif report == "iterable_item_removed":
                yield _setting(label, "removed", key, old=level.t1, line=lines.get(key))


def _setting(label: str, action: str, key: str, *, old: Any = None, new: Any = None, line: int | None) -> Change:
    """One setting added, removed or changed, as a person reads it."""
    if action == "changed" and only_secrets_differ(str(old), str(new)):
        text = f"{SECRET_CHANGED}: {_join(key, new)}"
    elif action == "changed":
        note = f"{SECRET_CHANGED}: " if _seals(old) != _seals(new) else ""
        text = f"{note}{key} {_shown(old)} → {_shown(new)}"
    else:
        text = f"{_join(key, new if action == 'added' else old)} {action}"
    traffic = key.partition(" ")[0] in _ROUTING_SETTINGS
    return Change(label, "setting", action, text, subject=key, old=old, new=new, line=line, traffic=traffic)


def _server_changes(label: str, old: dict[str, Server], new: dict[str, Server], down: str) -> Iterator[Change]:
    from deepdiff import DeepDiff

    for key, server in new.items():
        was = old.get(key)
        if was is None:
            yield Change(
                label,
                "server",
                "added",
                f"server {key} added ({_describe(key, server)})",
                subject=key,
                new=server.endpoint,
                line=server.line,
                traffic=True,
            )
        elif was != server:
            tree = DeepDiff(server_form(was), server_form(server), view="tree")
            for report, levels in sorted(tree.items()):
                for level in sorted(levels, key=lambda lv: str(lv.path())):
                    yield _server_field_change(label, key, report, level, server, down)
    for key, server in old.items():
        if key not in new:
            yield Change(
                label,
                "server",
                "removed",
                f"server {key} removed ({_describe(key, server)})",
                subject=key,
                old=server.endpoint,
                line=server.line,
                traffic=True,
            )


def _server_field_change(label: str, key: str, report: str, level: Any, server: Server, down: str) -> Change:
    path = [str(p) for p in level.path(output_format="list")]
    field = path[-1]
    old = None if report == "dictionary_item_added" else level.t1
    new = None if report == "dictionary_item_removed" else level.t2
    if field == "disabled":
        text = down if new else f"no longer {down}" if down == "marked down" else "enabled"
    elif field == "backup":
        text = "is now a backup server" if new else "is no longer a backup server"
    elif field == "check":
        text = "health checks enabled" if new else "health checks disabled"
    elif old is None:
        text = f"{_join(field, new or '')} added"
    elif new is None:
        text = f"{_join(field, old)} removed"
    else:
        text = f"{field} {_shown(old)} → {_shown(new)}"
    traffic = path[0] != "options"
    return Change(
        label,
        "server",
        "changed",
        f"server {key} {text}",
        subject=key,
        field=field,
        old=_str(old),
        new=_str(new),
        line=server.line,
        traffic=traffic,
    )


def _chain_changes(label: str, chain: str, old: list[str], new: list[str], lines: dict[Any, int]) -> Iterator[Change]:
    traffic = chain in _ROUTING_CHAINS
    if sorted(old) == sorted(new):
        order = "; ".join(f"{i}. {text}" for i, text in enumerate(new, 1))
        yield Change(
            label,
            "rule",
            "reordered",
            f"{chain} rules reordered: {order}",
            subject=chain,
            old=" | ".join(old),
            new=" | ".join(new),
            traffic=traffic,
        )
        return
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        paired = min(i2 - i1, j2 - j1) if op == "replace" else 0
        for n in range(paired):
            a, b = old[i1 + n], new[j1 + n]
            if only_secrets_differ(a, b):
                text = f"rule {j1 + n + 1} {SECRET_CHANGED}: {b}"
            else:
                note = f" ({SECRET_CHANGED})" if _seals(a) != _seals(b) else ""
                text = f"rule {j1 + n + 1} changed{note}: {a} → {b}"
            yield Change(
                label,
                "rule",
                "changed",
                text,
                subject=chain,
                old=a,
                new=b,
                line=lines.get((chain, b)),
                traffic=traffic,
            )
        for i in range(i1 + paired, i2):
            yield Change(
                label, "rule", "removed", f"rule {i + 1} removed: {old[i]}", subject=chain, old=old[i], traffic=traffic
            )
        for j in range(j1 + paired, j2):
            yield Change(
                label,
                "rule",
                "added",
                f"rule {j + 1} added: {new[j]}",
                subject=chain,
                new=new[j],
                line=lines.get((chain, new[j])),
                traffic=traffic,
            )


def _seals(value: object) -> set[str]:
    return set(sealed_parts(value)) if isinstance(value, str) else set()


def _describe(key: str, server: Server) -> str:
    parts = [] if key == server.endpoint else [server.endpoint]
    parts.append(f"weight {server.weight}")
    if server.backup:
        parts.append("backup")
    if server.disabled:
        parts.append("disabled")
    return ", ".join(parts)


def _join(key: str, value: str) -> str:
    return f"{key} {value}" if value else key


def _shown(value: object) -> str:
    return f"{value}" if value != "" else "(set)"


def _str(value: object) -> str | None:
    return None if value is None else str(value)
