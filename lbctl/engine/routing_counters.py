"""Each backend's requests from the LB's own counters, for the routing figures of a plan.

Read only when a change moves traffic between backends (a plan with no routing change
reads nothing and waits for nothing). Two readings `SAMPLE_SECONDS` apart give what the
LB served just now (HAProxy's per-backend session totals, nginx's access-log counts per
upstream); when nothing was served in that window, the totals since the worker started
(or the log's recent tail) stand in. Caddy counts no requests per upstream (its readings
are lbctl's own probes), so a Caddy change keeps its bounds, and so does any target whose
counters cannot be read: the reason is returned as a note, never raised.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lbctl.errors import LbctlError, TransientError

if TYPE_CHECKING:
    from lbctl.kinds.base import Kind
    from lbctl.transports.base import Transport

SAMPLE_SECONDS = 1.0


@dataclass(frozen=True)
class BackendCounts:
    """Requests per backend (or upstream), and where the figures come from."""

    counts: dict[str, int]
    note: str


def sample(kind: Kind, transport: Transport, seconds: float = SAMPLE_SECONDS) -> BackendCounts | str:
    """The LB's per-backend counts, or why there are none (a note for the plan)."""
    from lbctl.checks.counters import window

    if kind.probes_itself:
        return f"the {kind.name} kind counts no requests per upstream: the routing figures are bounds"
    try:
        first = kind.traffic_snapshot(transport)
        time.sleep(seconds)
        last = kind.traffic_snapshot(transport)
    except (LbctlError, TransientError, OSError) as exc:
        return f"the LB's counters could not be read ({exc}): the routing figures are bounds"
    recent = window(first, last).backend_sessions
    if sum(recent.values()) > 0:
        return BackendCounts(dict(recent), f"the LB's counters, sampled over {seconds:g} s")
    if sum(last.backend_sessions.values()) > 0:
        return BackendCounts(
            dict(last.backend_sessions), f"the LB's cumulative counters (no requests in the {seconds:g} s sample)"
        )
    return "the LB's counters show no requests yet: the routing figures are bounds"
