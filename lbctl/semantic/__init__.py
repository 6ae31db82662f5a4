"""Semantic diff of load-balancer configs, with a traffic-share preview.

The public API the CLI and the deploy plan call::

    parse_config(kind, text, filename=..., root=None) -> ConfigModel
    diff_texts(kind, old, new, filename=..., root=None, max_share=None) -> SemanticDiff
    semantic_diff(old_model, new_model, max_share=None) -> SemanticDiff
    traffic_preview(model, max_share=None, baseline=None) -> TrafficPreview
    diff.routing -> RoutingReport: routing changes as traffic (see `lbctl.semantic.routing`)
    render_text(diff, color=False) / render_markdown(diff) -> str;  diff.to_json() -> dict

`kind` is "haproxy", "nginx" or "caddy". Malformed input raises
`lbctl.errors.ParseError` (exit 3) naming the file and line. Heavy dependencies
(deepdiff, crossplane, rich) are imported only when a function needs them.
"""

from __future__ import annotations

from pathlib import Path

from lbctl import kinds
from lbctl.errors import ParseError, UsageError
from lbctl.semantic.model import ConfigModel, Finding, Section, Server
from lbctl.semantic.result import SCHEMA_VERSION, Change, SemanticDiff
from lbctl.semantic.traffic import TrafficPreview, traffic_preview

KINDS = tuple(kinds.REGISTRY)  # a parser for each kind of LB lbctl knows

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "Change",
    "ConfigModel",
    "Finding",
    "Section",
    "SemanticDiff",
    "Server",
    "TrafficPreview",
    "diff_texts",
    "parse_config",
    "render_markdown",
    "render_text",
    "semantic_diff",
    "traffic_preview",
]


def parse_config(kind: str, text: str, *, filename: str, root: Path | None = None) -> ConfigModel:
    """Parse `text` (the content of `filename`) as a config of `kind`.

    `root` is where relative nginx `include`s are resolved (the store directory);
    without it they are kept as unresolved `include` statements.
    """
    refuse_nul(text, filename)
    if kind == "haproxy":
        from lbctl.semantic import haproxy

        return haproxy.parse(text, filename=filename)
    if kind == "nginx":
        from lbctl.semantic import nginx

        return nginx.parse(text, filename=filename, root=root)
    if kind == "caddy":
        from lbctl.semantic import caddy

        return caddy.parse(text, filename=filename)
    raise UsageError(f"unknown config kind '{kind}'", hint=f"use one of: {', '.join(KINDS)}")


def refuse_nul(text: str, filename: str) -> None:
    """A NUL byte ends a C string: HAProxy refuses the file, nginx silently cuts the word short."""
    at = text.find("\0")
    if at >= 0:
        line = text.count("\n", 0, at) + 1
        column = at - (text.rfind("\n", 0, at) + 1) + 1
        raise ParseError(
            f"NUL byte at column {column}: HAProxy refuses one and nginx cuts the word short there; remove it",
            file=filename,
            line=line,
        )


def semantic_diff(old: ConfigModel, new: ConfigModel, *, max_share: float | None = None) -> SemanticDiff:
    """What changed from `old` to `new`, each pool's traffic shares before and after, and routing moves."""
    from lbctl.semantic.differ import semantic_diff_changes
    from lbctl.semantic.routing import compare

    changes = semantic_diff_changes(old, new)
    preview = traffic_preview(new, max_share=max_share, baseline=old)
    return SemanticDiff(new.kind, old.filename, new.filename, changes, preview, compare(old, new))


def diff_texts(
    kind: str,
    old: str,
    new: str,
    *,
    filename: str,
    root: Path | None = None,
    max_share: float | None = None,
    old_filename: str | None = None,
) -> SemanticDiff:
    """Parse both versions of `filename` and diff them (`old_filename` if the old one was elsewhere)."""
    old_model = parse_config(kind, old, filename=old_filename or filename, root=root)
    new_model = parse_config(kind, new, filename=filename, root=root)
    return semantic_diff(old_model, new_model, max_share=max_share)


def render_text(diff: SemanticDiff, color: bool = False) -> str:
    """Plain text, or with `color` rich's ANSI colours and share bars, for a terminal."""
    from lbctl.semantic.render import render_text as _render

    return _render(diff, color=color)


def render_markdown(diff: SemanticDiff) -> str:
    """Markdown for a pull-request comment."""
    from lbctl.semantic.render import render_markdown as _render

    return _render(diff)
