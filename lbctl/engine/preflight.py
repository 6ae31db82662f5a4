"""What a change means before anything is pushed: semantic diff, traffic preview, rules.

One parse of each version serves the plan's diff, the event's record, the policy lint
and the blast radius. A candidate lbctl cannot parse is a policy problem (exit 3): its
traffic cannot be previewed, so `--force` is needed to ship it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from lbctl.config import Policy, Safety, Target
from lbctl.engine.gates import Problem, blast_radius, effective_max_share, policy_lint, routing_radius
from lbctl.errors import ExitCode, ParseError

if TYPE_CHECKING:
    from pathlib import Path

    from lbctl.engine.routing_counters import BackendCounts
    from lbctl.semantic import ConfigModel, SemanticDiff
    from lbctl.semantic.routing_model import RoutingMove, RoutingReport
    from lbctl.store.bundle import Bundle

# Reads the LB's per-backend counters (or says why it cannot): called only when routing changes.
CounterReader = Callable[[], "BackendCounts | str"]


@dataclass(frozen=True)
class Replayed:
    """Figures from requests replayed through both versions: they replace the estimate.

    They replace it for the entries the replay sent requests through (`covered`, as the
    sandbox names its listeners: a HAProxy frontend's name, nginx's `:80`, a Caddy server);
    a changed entry the replay did not reach keeps the counters' figures or the bounds.
    """

    moves: Sequence[RoutingMove]
    note: str  # e.g. "a replay of 10,000 requests from access.log"
    covered: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Analysis:
    text: str  # the change as a person reads it ("" when nothing changes)
    semantic: SemanticDiff | None  # None when the candidate could not be parsed (then `text` is a unified diff)
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any] | None:
        return self.semantic.to_json() if self.semantic is not None else None


def analyze(
    target: Target,
    policy: Policy,
    safety: Safety,
    old: Bundle | None,
    new: Bundle,
    *,
    counters: CounterReader | None = None,
    replay: Replayed | None = None,
) -> Analysis:
    """The semantic diff of live `old` → candidate `new`, judged against policy and thresholds.

    A bundle's includes are followed (each side from its own files), so a change in an
    included file is seen as the change it makes to the main config. When the change moves
    requests between backends, `replay`'s figures judge it, else the LB's `counters`, else
    the bounds the config alone gives.
    """
    from lbctl.store.bundle import materialized

    filename = target.path or target.source
    with materialized(old, filename) as old_root, materialized(new, filename) as new_root:
        return _analyze(target, policy, safety, old, new, filename, old_root, new_root, counters, replay)


def _analyze(
    target: Target,
    policy: Policy,
    safety: Safety,
    old: Bundle | None,
    new: Bundle,
    filename: str,
    old_root: Path | None,
    new_root: Path | None,
    counters: CounterReader | None = None,
    replay: Replayed | None = None,
) -> Analysis:
    from lbctl.semantic import parse_config, semantic_diff

    max_share = effective_max_share(policy, target)
    try:
        new_model = parse_config(target.kind, new.main.decode("utf-8", "replace"), filename=filename, root=new_root)
    except ParseError as exc:
        problem = Problem(
            ExitCode.VALIDATION,
            "parse",
            f"lbctl cannot parse the candidate, so it cannot preview its traffic: {exc}",
            line=exc.line,
        )
        return Analysis(_unified(old, new), None, (problem,))
    notes: list[str] = []
    try:
        if old is None:
            raise ParseError("there is no live config")
        old_model = parse_config(target.kind, old.main.decode("utf-8", "replace"), filename=filename, root=old_root)
        diff = semantic_diff(old_model, new_model, max_share=max_share)
        diff = _figures(diff, old_model, new_model, counters, replay, notes)
    except ParseError as exc:
        notes.append(f"the live config could not be compared ({exc}); the preview covers the candidate only")
        diff = semantic_diff(parse_config(target.kind, "", filename=filename), new_model, max_share=max_share)
    problems = [
        *policy_lint(policy, target, new_model, diff),
        *blast_radius(safety, diff),
        *routing_radius(safety, max_share, diff.routing),
    ]
    judged = {p.message for p in problems}
    notes.extend(f.message for f in diff.findings if f.message not in judged)
    text = "" if old == new else "\n".join(c.text for c in diff.changes) or _only_cosmetic(old, new)
    return Analysis(text, diff, tuple(problems), tuple(notes))


def _figures(
    diff: SemanticDiff,
    old: ConfigModel,
    new: ConfigModel,
    counters: CounterReader | None,
    replay: Replayed | None,
    notes: list[str],
) -> SemanticDiff:
    """The routing changes judged on the best figures there are: a replay, the LB's counters, bounds."""
    routing = diff.routing
    if not routing.changes and not (replay is not None and replay.moves):
        return diff
    if replay is not None and not _uncovered(routing, replay):
        return replace(diff, routing=with_replay(routing, replay))
    if counters is not None and routing.changes:
        from lbctl.semantic.routing_figures import with_counters

        read = counters()
        if isinstance(read, str):
            notes.append(read)
        else:
            routing = with_counters(routing, read.counts, read.note, old, new)
    return replace(diff, routing=with_replay(routing, replay) if replay is not None else routing)


def with_replay(routing: RoutingReport, replay: Replayed) -> RoutingReport:
    """`routing` with the replay's moves for the entries it covered, the other entries' figures kept."""
    from dataclasses import replace as changed

    name = _entry_names(routing)
    covered = {name(label) for label in replay.covered}
    moves = [changed(m, frontend=name(m.frontend)) for m in replay.moves]
    kept = [m for m in routing.moves if m.frontend not in covered]
    note = replay.note
    if kept:
        note += f"; {routing.basis_note} for {', '.join(sorted({m.frontend for m in kept}))} (not in the replay)"
    return routing.with_moves([*moves, *kept], note)


def rejudged(analysis: Analysis, target: Target, policy: Policy, safety: Safety, replay: Replayed) -> Analysis:
    """`analysis` with its routing figures replaced by a replay's, and the routing gate judged again on them."""
    if analysis.semantic is None:
        return analysis
    routing = analysis.semantic.routing
    if not routing.changes and not replay.moves:
        return analysis
    max_share = effective_max_share(policy, target)
    before = routing_radius(safety, max_share, routing)
    routing = with_replay(routing, replay)
    problems = [p for p in analysis.problems if p not in before] + routing_radius(safety, max_share, routing)
    return replace(analysis, semantic=replace(analysis.semantic, routing=routing), problems=tuple(problems))


def _uncovered(routing: RoutingReport, replay: Replayed) -> bool:
    name = _entry_names(routing)
    covered = {name(label) for label in replay.covered}
    return any(c.entry not in covered for c in routing.changes)


def _entry_names(routing: RoutingReport) -> Callable[[str], str]:
    """A sandbox listener's label (`www`, `:80`, `srv0`) → the routing entry it is (`frontend www`, ...)."""
    entries = {c.entry for c in routing.changes} | {entry for entry, _ in routing.reached}

    def name(label: str) -> str:
        if label in entries:
            return label
        found = [e for e in entries if e.endswith(" " + label) or (label.startswith(":") and e.endswith(label))]
        return found[0] if len(found) == 1 else label

    return name


def _only_cosmetic(old: Bundle | None, new: Bundle) -> str:
    before = old.files() if old is not None else {}
    after = new.files()
    changed = [rel for rel in sorted(set(before) | set(after)) if before.get(rel) != after.get(rel)]
    return "(only cosmetic changes" + (f" in {', '.join(changed)}" if changed else "") + ")"


def _unified(old: Bundle | None, new: Bundle) -> str:
    from lbctl.diffing import unified_files

    before = {"": old.main, **old.files()} if old is not None else {}
    return unified_files(before, {"": new.main, **new.files()}, "live", "candidate")
