"""Safety gates judged before a single byte reaches a load balancer.

- policy lint (exit 3): rules a config must follow, whatever it changes;
- blast radius (exit 4): how much a change removes or moves, against thresholds;
- staging first (exit 4): production takes only what a staging target verified good;
- drift (exit 4): the LB was changed by hand since lbctl's last deploy.

Each finding names its rule, the section and the line. `--force` overrides all but
policy findings it is not allowed to (none today); the staging gate also wants a reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lbctl.config import BalanceCheck, Policy, Safety, StoreConfig, Target, as_dict
from lbctl.errors import ExitCode

if TYPE_CHECKING:
    from lbctl.semantic import ConfigModel, SemanticDiff
    from lbctl.semantic.routing_model import RoutingReport
    from lbctl.store.journal import Journal


@dataclass(frozen=True)
class Problem:
    """Why a change may not go out as it is."""

    code: ExitCode  # VALIDATION (policy) or REFUSED (safety, staging, drift, checksum)
    rule: str
    message: str
    section: str | None = None
    line: int | None = None

    @property
    def text(self) -> str:
        where = f" [{self.section}" + (f", line {self.line}" if self.line else "") + "]" if self.section else ""
        return f"{self.rule}: {self.message}{where}"

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": int(self.code),
            "rule": self.rule,
            "message": self.message,
            "section": self.section,
            "line": self.line,
        }


ROUTE_CODES = {"route-to-missing-pool", "route-to-empty-pool", "no-usable-server"}


def effective_max_share(policy: Policy, target: Target) -> float | None:
    if policy.max_share is not None:
        return policy.max_share
    balance = next((c for c in target.checks if isinstance(c, BalanceCheck)), None)
    return balance.max_share if balance else None


def policy_lint(policy: Policy, target: Target, model: ConfigModel, diff: SemanticDiff) -> list[Problem]:
    """Every rule of `policy` that the candidate `model` breaks (its preview is in `diff`)."""
    found: list[Problem] = []
    for finding in diff.findings:
        if finding.code == "above-max-share" and effective_max_share(policy, target) is not None:
            found.append(Problem(ExitCode.VALIDATION, "max_share", finding.message, finding.section, finding.line))
        elif finding.code in ROUTE_CODES:
            found.append(Problem(ExitCode.VALIDATION, "routes", finding.message, finding.section, finding.line))
    for section in model.pools():
        active = [s for s in section.servers if not s.backup and not s.disabled and s.weight > 0]
        if policy.min_active_servers is not None and len(active) < policy.min_active_servers:
            found.append(
                Problem(
                    ExitCode.VALIDATION,
                    "min_active_servers",
                    f"{len(active)} active server(s), the policy wants at least {policy.min_active_servers}",
                    section.label,
                    section.line,
                )
            )
        if policy.require_health_checks:
            for server in section.servers:
                if not server.check:
                    found.append(
                        Problem(
                            ExitCode.VALIDATION,
                            "require_health_checks",
                            f"server {server.name} has no health check",
                            section.label,
                            server.line,
                        )
                    )
    for forbidden in policy.forbid_directives or ():
        for section in model.sections:
            for directive in section.directives:
                if directive.text == forbidden or directive.text.startswith(forbidden + " "):
                    found.append(
                        Problem(
                            ExitCode.VALIDATION,
                            "forbid_directives",
                            f"`{directive.text}` is forbidden here",
                            section.label,
                            directive.line,
                        )
                    )
    return found


def blast_radius(safety: Safety, diff: SemanticDiff) -> list[Problem]:
    """Refusals for a change bigger than the target's thresholds (needs a live config to compare)."""
    if not diff.traffic.compared:
        return []
    found: list[Problem] = []
    usable_before = 0
    lost: list[str] = []
    for pool in diff.traffic.pools:
        for server in pool.servers:
            if server.before:
                usable_before += 1
                if not server.after:
                    lost.append(f"{pool.section}/{server.name} ({server.state})")
        had = any(s.before for s in pool.servers)
        if not any(s.state != "removed" for s in pool.servers):
            continue  # the whole pool is gone: its servers count above, and routes to it are linted
        moved = sum(abs((s.after or 0.0) - (s.before or 0.0)) for s in pool.servers) / 2
        emptied = had and not any(s.after for s in pool.servers)
        if emptied and not safety.allow_empty_backend:
            found.append(
                Problem(
                    ExitCode.REFUSED,
                    "empty_backend",
                    "the change leaves it with no server taking traffic (allow_empty_backend = false)",
                    pool.section,
                )
            )
        elif safety.max_traffic_moved is not None and moved > safety.max_traffic_moved + 1e-9:
            found.append(
                Problem(
                    ExitCode.REFUSED,
                    "max_traffic_moved",
                    f"{moved:.0%} of its expected traffic "
                    f"moves to other servers (threshold {safety.max_traffic_moved:.0%})",
                    pool.section,
                )
            )
    if usable_before and safety.max_servers_removed is not None:
        share = len(lost) / usable_before
        if share > safety.max_servers_removed + 1e-9:
            listed = ", ".join(lost[:6]) + (" ..." if len(lost) > 6 else "")
            found.append(
                Problem(
                    ExitCode.REFUSED,
                    "max_servers_removed",
                    f"{len(lost)} of {usable_before} serving "
                    f"servers ({share:.0%}) stop taking traffic: {listed} (threshold "
                    f"{safety.max_servers_removed:.0%})",
                )
            )
    return found


def routing_radius(safety: Safety, max_share: float | None, routing: RoutingReport) -> list[Problem]:
    """Refusals for requests a routing change sends elsewhere, judged on its figures.

    `max_traffic_moved` weighs, as for servers within a pool, the share of a backend's
    requests that now go elsewhere (all of them, when a whole backend is redirected), and
    the share of each entry's (frontend's) requests that change destination: measured by
    the LB's counters or a replay, else bounded (a whole backend or class of requests
    redirected counts as up to 100 %; part of one has no figure and is only shown).
    `max_share` weighs the busiest server of a backend that receives the traffic, as a
    share of the entry's requests, when the counters or a replay measured it and the move
    takes it above the limit (a server already above it is the balance check's business).
    """
    found: list[Problem] = []
    entries: dict[str, list[Any]] = {}
    for move in routing.moves:
        if move.share is not None and move.from_backend != move.to_backend:
            entries.setdefault(move.frontend, []).append(move)
    threshold = safety.max_traffic_moved
    for entry, moves in entries.items():
        whole = [m for m in moves if threshold is not None and (m.pool_share or 0.0) > threshold + 1e-9]
        for move in whole:
            found.append(
                Problem(
                    ExitCode.REFUSED,
                    "max_traffic_moved",
                    f"{move.pool_share:.0%} of {move.from_backend}'s requests now go to {move.to_backend} "
                    f"(threshold {threshold:.0%}): {move.detail}",
                    entry,
                )
            )
        total = min(1.0, sum(m.share for m in moves))
        if not whole and threshold is not None and total > threshold + 1e-9:
            lead = "up to " if any(m.basis == "bound" for m in moves) else "~"
            found.append(
                Problem(
                    ExitCode.REFUSED,
                    "max_traffic_moved",
                    f"the routing change sends {lead}{total:.0%} of its requests elsewhere "
                    f"(threshold {threshold:.0%}): " + "; ".join(m.detail for m in moves),
                    entry,
                )
            )
        for move in moves:
            over = max_share is not None and move.peak_share is not None and move.peak_share > max_share + 1e-9
            if over and (move.peak_before is None or move.peak_before <= (max_share or 0.0) + 1e-9):
                found.append(
                    Problem(
                        ExitCode.REFUSED,
                        "max_share",
                        f"server {move.peak_server} of {move.to_backend} would take ~{move.peak_share:.0%} of its "
                        f"requests (max_share {max_share:.0%})",
                        entry,
                    )
                )
    return found


def staging_gate(config: StoreConfig, journal: Journal, target: Target, rev: str | None, blob: str) -> list[Problem]:
    """A production target takes only a revision (or content) a staging target verified good."""
    if target.environment != "production":
        return []
    staging = [t for t in config.targets.values() if t.environment == "staging"]
    if not staging:
        return []  # no staging environment in this store: nothing to gate on
    for other in staging:
        state = journal.state(other.name)
        if (rev is not None and rev in state.good) or blob in state.good_blobs:
            return []
    names = ", ".join(t.name for t in staging)
    what = f"revision {rev[:10]}" if rev else "this content"
    return [
        Problem(
            ExitCode.REFUSED,
            "staging_first",
            f"{what} has not been verified good on staging; deploy it to {names} first (or --force --reason '...')",
        )
    ]


def drift(target: Target, expected_blob: str | None, running_blob: str | None, changes: Iterable[str]) -> list[Problem]:
    if expected_blob is None or running_blob is None or expected_blob == running_blob:
        return []
    listed = "; ".join(list(changes)[:8]) or "the bytes differ"
    return [
        Problem(
            ExitCode.REFUSED,
            "drift",
            f"{target.name} was changed outside lbctl since its last deploy: "
            f"{listed}. `lbctl pull {target.name}` records it, --force overwrites it",
        )
    ]


def checksum(target: Target, policy: Policy, safety: Safety, live_blob: str | None, candidate_blob: str) -> str:
    """What a reviewed plan depends on: the live config, the candidate, and the rules judging them."""
    import hashlib
    import json

    basis = {
        "target": target.name,
        "kind": target.kind,
        "live": live_blob,
        "candidate": candidate_blob,
        "policy": as_dict(policy),
        "safety": as_dict(safety),
        "checks": [as_dict(c) for c in target.checks],
        "environment": target.environment,
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]
