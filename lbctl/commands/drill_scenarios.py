"""A drill's change, derived from a target's current config through the semantic model.

Each scenario reads the config as lbctl's HAProxy parser models it (frontends, pools, servers,
their source lines) and edits those lines only, so the drill breaks the target's own config the
way the scenario says, whatever its names:

- `misroute`: the default route of a frontend goes to the pool with the fewest servers
  (the seed's outage: a one-server legacy pool takes everything);
- `drain-half`: half of the biggest backend's servers at weight 0;
- `bad-acl`: a catch-all `use_backend ... if TRUE` before the frontend's rules, to a pool with no
  server up (every server `disabled`), else an empty one, else a new empty backend;
- `reload-fail`: a `bind` on a UNIX socket in a directory that does not exist: `haproxy -c`
  accepts it, the reload cannot load it (HAProxy keeps the old workers).

A config that cannot host a scenario (one backend only for misroute, a single server to drain)
raises `CannotHost` (exit 2) with a hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lbctl.errors import UsageError
from lbctl.semantic.model import ConfigModel, Section

SCENARIOS = {
    "misroute": "the default route goes to the pool with the fewest servers (the seed's outage)",
    "drain-half": "half of the biggest backend's servers at weight 0",
    "bad-acl": "a catch-all rule sends every request to a pool with no server up",
    "reload-fail": "a config that validates but that the LB cannot load",
}
VOID = "lbctl_drill_void"
MISSING_DIR = "/nonexistent-lbctl-drill"


class CannotHost(UsageError):
    """The target's config has nothing the scenario can break (exit 2)."""


@dataclass(frozen=True)
class Change:
    scenario: str
    text: str  # the whole config with the scenario's change
    summary: str  # what was changed, in the config's own names


def derive(scenario: str, kind: str, text: str, *, filename: str) -> Change:
    """The scenario's change to `text` (a config of `kind`)."""
    if scenario not in SCENARIOS:
        raise UsageError(f"unknown drill scenario {scenario!r}", hint=", ".join(SCENARIOS))
    if kind != "haproxy":
        raise UsageError(
            f"drills on a {kind} target are not available yet: lbctl derives them from HAProxy configs only",
            hint="rehearse on a HAProxy target, or on a throw-away local one with --sandbox",
        )
    from lbctl.semantic import parse_config

    model = parse_config(kind, text, filename=filename)
    lines = text.splitlines(keepends=True)
    edit = {"misroute": _misroute, "drain-half": _drain_half, "bad-acl": _bad_acl, "reload-fail": _reload_fail}
    summary = edit[scenario](model, lines)
    return Change(scenario, "".join(lines), summary)


def _backends(model: ConfigModel) -> list[Section]:
    return [s for s in model.sections if s.type == "backend" and s.is_pool]


def _routed_frontend(model: ConfigModel) -> tuple[Section, int, str]:
    """The first frontend with a `default_backend`: the section, that line's number, the pool it names."""
    for section in model.sections:
        if section.type != "frontend":
            continue
        for directive in section.directives:
            if directive.name == "default_backend" and directive.args:
                return section, directive.line, directive.args[0]
    raise CannotHost(
        "the config has no frontend with a `default_backend` to misroute",
        hint="rehearse on a target whose frontend has a default route, or use --sandbox",
    )


def _misroute(model: ConfigModel, lines: list[str]) -> str:
    frontend, line, current = _routed_frontend(model)
    others = [s for s in _backends(model) if s.name != current and s.servers]
    if not others:
        raise CannotHost(
            f"frontend {frontend.name} routes to {current!r} and the config has no other backend with a server "
            "to misroute it to",
            hint="a misroute needs a second (smaller) backend, e.g. a one-server legacy pool; "
            "try drain-half or bad-acl on this target, or --sandbox",
        )
    smallest = min(others, key=lambda s: len(s.servers))  # the first of equals, in the config's order
    lines[line - 1] = re.sub(r"(default_backend\s+)\S+", rf"\g<1>{smallest.name}", lines[line - 1], count=1)
    return (
        f"frontend {frontend.name}'s default route moves from {current} to {smallest.name} "
        f"({len(smallest.servers)} server{'s' if len(smallest.servers) != 1 else ''})"
    )


def _drain_half(model: ConfigModel, lines: list[str]) -> str:
    pools = [s for s in _backends(model) if [v for v in s.servers if not v.backup]]
    biggest = max(pools, key=lambda s: len([v for v in s.servers if not v.backup]), default=None)
    active = [v for v in biggest.servers if not v.backup] if biggest is not None else []
    if biggest is None or len(active) < 2:
        raise CannotHost(
            "the config has no backend with two servers or more: draining half of one server is an outage, "
            "not a drill of one",
            hint="try misroute or bad-acl on this target, or --sandbox",
        )
    drained = active[: len(active) // 2]
    for server in drained:
        lines[server.line - 1] = _with_weight_zero(lines[server.line - 1])
    names = ", ".join(s.name for s in drained)
    return f"backend {biggest.name}: {names} at weight 0 ({len(drained)} of {len(active)} servers)"


def _with_weight_zero(line: str) -> str:
    if re.search(r"\sweight\s+\S+", line):
        return re.sub(r"(\sweight\s+)\S+", r"\g<1>0", line, count=1)
    body, newline = (line[:-1], "\n") if line.endswith("\n") else (line, "")
    comment = body.find("#")
    if comment >= 0:
        return body[:comment].rstrip() + " weight 0 " + body[comment:] + newline
    return body.rstrip() + " weight 0" + newline


def _bad_acl(model: ConfigModel, lines: list[str]) -> str:
    frontend, default_line, _ = _routed_frontend(model)
    pools = _backends(model)
    dead = [s for s in pools if s.servers and all(v.disabled for v in s.servers)]
    empty = [s for s in pools if not s.servers]
    found = dead or empty
    pool = found[0] if found else None
    rules = [r.line for r in frontend.rules if r.chain == "use_backend"]
    at = min(rules) if rules else default_line
    if pool is None:
        mode = _mode(model, frontend)
        name = VOID
        while model.section("backend", name) is not None:
            name += "_"
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f"\nbackend {name}\n    mode {mode}\n")
        why = "a new empty backend"
    else:
        name = pool.name
        why = "every server disabled" if pool.servers else "no server"
    indent = re.match(r"\s*", lines[at - 1]).group(0) or "    "  # type: ignore[union-attr]
    lines.insert(at - 1, f"{indent}use_backend {name} if TRUE\n")
    return f"frontend {frontend.name}: a catch-all `use_backend {name} if TRUE` first ({name}: {why})"


def _mode(model: ConfigModel, frontend: Section) -> str:
    for section in (frontend, *(s for s in model.sections if s.type == "defaults")):
        for directive in section.directives:
            if directive.name == "mode" and directive.args:
                return directive.args[0]
    return "tcp"


def _reload_fail(model: ConfigModel, lines: list[str]) -> str:
    frontend = next((s for s in model.sections if s.type in ("frontend", "listen")), None)
    if frontend is None or not frontend.line:
        raise CannotHost("the config has no frontend or listen section", hint="use --sandbox")
    socket = f"{MISSING_DIR}/{frontend.name or 'drill'}.sock"
    lines.insert(frontend.line, f"    bind unix@{socket}\n")
    return f"{frontend.label}: a `bind unix@{socket}` that validates but cannot be loaded (no such directory)"
