"""Render a `SemanticDiff` (and its traffic preview) as text, coloured text with bars, or Markdown.

JSON is `SemanticDiff.to_json()` (schema in docs/diff-json.md). Every string from
a config goes through `mask` first (done by `Change.text` and `Finding.to_json`),
so secrets show as `****` in every format.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from lbctl.semantic.model import Finding, mask
from lbctl.semantic.result import Change, SemanticDiff
from lbctl.semantic.routing_model import RoutingReport
from lbctl.semantic.traffic import PoolShare, TrafficPreview

_SYMBOL = {"added": "+", "removed": "-"}
_STYLE = {"added": "green", "removed": "red"}
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}
_SEVERITY_ICON = {"error": "❌", "warning": "⚠️", "info": "ℹ️"}
BAR_WIDTH = 20


def render_text(diff: SemanticDiff, *, color: bool = False) -> str:
    """Changes grouped by section, the pools whose shares move, then findings."""
    lines: list[tuple[str, str]] = []  # (text, rich style)
    if diff.is_empty:
        lines.append(("No semantic changes.", "bold"))
    for section, changes in _grouped(diff.changes):
        lines.append((mask(section), "bold"))
        for change in changes:
            style = _STYLE.get(change.action, "yellow") + (" bold" if change.traffic else "")
            lines.append((f"  {_SYMBOL.get(change.action, '~')} {mask(change.description)}", style))
    lines.extend(_routing_lines(diff.routing))
    lines.extend(_traffic_lines(diff.traffic, color=color))
    lines.extend(_finding_lines(diff.findings))
    return _emit(lines, color)


def render_traffic_text(preview: TrafficPreview, *, color: bool = False) -> str:
    """A traffic preview on its own (e.g. for `lbctl check`)."""
    return _emit([*_traffic_lines(preview, color=color), *_finding_lines(preview.findings)], color)


def render_markdown(diff: SemanticDiff) -> str:
    """A pull-request comment: a table of changes, share tables for moved pools, findings."""
    out = [f"### lbctl semantic diff: `{diff.new_file}` ({diff.kind})", ""]
    if diff.is_empty:
        out.append("No semantic changes.")
    else:
        n_sections = len({c.section for c in diff.changes})
        out += [
            f"**{len(diff.changes)} change(s)** in {n_sections} section(s)",
            "",
            "| | section | change |",
            "|---|---|---|",
        ]
        for change in diff.changes:
            symbol = _SYMBOL.get(change.action, "~")
            out.append(f"| {symbol} | {_cell(change.section)} | {_cell(change.description)} |")
    out += _routing_markdown(diff.routing)
    pools = _shown_pools(diff.traffic)
    if pools:
        out += ["", "#### Traffic shares (new requests)"]
    for pool in pools:
        note = ", approximate" if pool.approximate else ""
        out += [
            "",
            f"**{_cell(pool.section)}** ({_cell(pool.algorithm or '')}{note})",
            "",
            "| server | before | after |",
            "|---|---:|---:|",
        ]
        for row in pool.servers:
            after = _pct(row.after)
            if row.after == 0.0 and row.before:
                after = f"**{after}** ⚠️"
            out.append(f"| {_cell(row.name)} | {_pct(row.before)} | {after} |")
    if diff.findings:
        out += ["", "#### Findings", ""]
        for finding in diff.findings:
            where = f" (line {finding.line})" if finding.line else ""
            icon = _SEVERITY_ICON.get(finding.severity, "")
            out.append(f"- {icon} **{finding.severity}** {_cell(finding.message)}{where}")
    return "\n".join(out) + "\n"


def render_routing_text(routing: RoutingReport) -> str:
    """The routing changes and their traffic figures on their own."""
    return _emit(_routing_lines(routing), False)


def _routing_lines(routing: RoutingReport) -> list[tuple[str, str]]:
    if not routing.changes:
        return []
    lines: list[tuple[str, str]] = [("", ""), ("Routing changes (where requests go now):", "bold")]
    for entry, statement in _statements(routing):
        lines.append((f"  {mask(entry)}: {mask(statement)}", "yellow bold"))
    if routing.moves:
        lines.append((f"Traffic moved ({mask(routing.basis_note)}):", "bold"))
        for share, detail in _move_lines(routing):
            style = "bold red" if share is not None and share >= 0.5 else "yellow"
            lines.append((f"  {mask(detail)}", style))
    return lines


def _move_lines(routing: RoutingReport) -> list[tuple[float | None, str]]:
    """Each move's figure; moves of part of several backends' requests to one place read as one line."""
    out: list[tuple[float | None, str]] = []
    groups: dict[tuple[str, str], tuple[int, list[str]]] = {}
    for move in routing.moves:
        if move.share is None and not move.whole:
            key = (move.frontend, move.to_backend)
            if key in groups:
                groups[key][1].append(move.from_backend)
                continue
            groups[key] = (len(out), [move.from_backend])
        out.append((move.share, move.detail))
    for (entry, to), (at, sources) in groups.items():
        if len(sources) > 1:
            out[at] = (
                None,
                f"part of the requests that went to {', '.join(sources)} through {entry} now goes to {to}; "
                "how much, only a replay can say",
            )
    return out


def _statements(routing: RoutingReport) -> list[tuple[str, str]]:
    """One line per routing change; changes that differ only in where requests came from read as one."""
    grouped: dict[tuple[str, str], list[str]] = {}
    first: dict[tuple[str, str], str] = {}
    for change in routing.changes:
        was = f"(was {change.frm.shown})"
        key = (change.entry, change.statement.replace(was, "(was …)", 1))
        grouped.setdefault(key, []).append(change.frm.shown)
        first.setdefault(key, change.statement)
    out = []
    for (entry, statement), sources in grouped.items():
        if len(sources) > 1:
            statement = statement.replace("(was …)", f"(was {', '.join(sources)})", 1)
        else:
            statement = first[(entry, statement)]
        out.append((entry, statement))
    return out


def _routing_markdown(routing: RoutingReport) -> list[str]:
    if not routing.changes:
        return []
    out = ["", "#### Routing changes", ""]
    out += [f"- **{_cell(entry)}**: {_cell(statement)}" for entry, statement in _statements(routing)]
    if routing.moves:
        out += ["", f"#### Traffic moved ({_cell(routing.basis_note)})", ""]
        for share, detail in _move_lines(routing):
            icon = "⚠️ " if share is not None and share >= 0.5 else ""
            out.append(f"- {icon}{_cell(detail)}")
    return out


def _grouped(changes: Iterable[Change]) -> list[tuple[str, list[Change]]]:
    groups: dict[str, list[Change]] = {}
    for change in changes:
        groups.setdefault(change.section, []).append(change)
    return list(groups.items())


def _shown_pools(preview: TrafficPreview) -> list[PoolShare]:
    return [p for p in preview.pools if p.changed] if preview.compared else list(preview.pools)


def _traffic_lines(preview: TrafficPreview, *, color: bool) -> list[tuple[str, str]]:
    pools = _shown_pools(preview)
    if not pools:
        return []
    lines: list[tuple[str, str]] = [("", ""), ("Traffic shares (new requests per server):", "bold")]
    for pool in pools:
        note = ", approximate" if pool.approximate else ""
        lines.append((f"  {mask(pool.section)} ({pool.algorithm or 'default'}{note})", "bold"))
        width = max((len(mask(r.name)) for r in pool.servers), default=0)
        for row in pool.servers:
            shares = f"{_pct(row.before):>5} → {_pct(row.after):>5}" if preview.compared else f"{_pct(row.after):>5}"
            state = "" if row.state == "active" else f"  ({row.state})"
            bar = f"  {_bar(row.after)}" if color else ""
            starved = bool(row.before) and row.after == 0.0
            style = "bold red" if starved else "green" if row.after else "dim"
            lines.append((f"    {mask(row.name):<{width}}  {shares}{bar}{state}", style))
    return lines


def _finding_lines(findings: Iterable[Finding]) -> list[tuple[str, str]]:
    found = list(findings)
    if not found:
        return []
    lines: list[tuple[str, str]] = [("", ""), ("Findings:", "bold")]
    for finding in found:
        where = f" (line {finding.line})" if finding.line else ""
        lines.append((f"  {finding.severity}: {mask(finding.message)}{where}", _SEVERITY_STYLE[finding.severity]))
    return lines


def _emit(lines: list[tuple[str, str]], color: bool) -> str:
    if not color:
        return "\n".join(text for text, _ in lines) + "\n"
    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="standard", width=200, highlight=False)
    for text, style in lines:
        console.print(Text(text, style=style or ""), soft_wrap=True)
    return buffer.getvalue()


def _bar(share: float | None) -> str:
    filled = round((share or 0.0) * BAR_WIDTH)
    return "█" * filled + "·" * (BAR_WIDTH - filled)


def _pct(share: float | None) -> str:
    if share is None:
        return "—"
    return f"{share:.0%}" if share in (0.0, 1.0) or share >= 0.01 else f"{share:.1%}"


def _cell(text: str) -> str:
    return mask(text).replace("|", "\\|").replace("\n", " ")
