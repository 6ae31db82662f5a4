"""Where `lbctl watch` reads a target's traffic: the kind's own counter reader, and the live config.

Counters come from `Kind.traffic_snapshot` (HAProxy's runtime API `show stat`, nginx's access
log, Caddy's admin API), the same readers the `balance` check uses. What the weights intend
comes from the config running on the LB, parsed by `lbctl.semantic`: a weight changed through
the runtime API (or a server drained by hand) shows as a gap between the two. The config is
read again whenever the counters say the LB reloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lbctl.checks.counters import Snapshot
from lbctl.config import Target
from lbctl.kinds.base import Kind
from lbctl.transports.base import Transport
from lbctl.watch.evaluate import Pool


@dataclass
class Source:
    """One target's counters and intended shares, read through its transport."""

    target: Target
    transport: Transport
    kind: Kind
    _pools: dict[str, Pool] = field(default_factory=dict)
    _pools_for: str | None = None  # the process whose config `_pools` describes

    @classmethod
    def open(cls, target: Target) -> Source:
        from lbctl.kinds import kind_for
        from lbctl.transports import transport_for

        return cls(target, transport_for(target), kind_for(target))

    def snapshot(self) -> Snapshot:
        return self.kind.traffic_snapshot(self.transport)

    def pools(self, snapshot: Snapshot) -> dict[str, Pool]:
        """Each backend's intended shares, from the config the LB runs (re-read after a reload)."""
        if self._pools_for != snapshot.process:
            self._pools = self._read_pools()
            self._pools_for = snapshot.process
        return self._pools

    def _read_pools(self) -> dict[str, Pool]:
        from lbctl.semantic import parse_config
        from lbctl.semantic.traffic import shares

        if not self.target.path or self.target.kind != "haproxy":
            return {}  # nginx and Caddy counters carry the configured weights already
        try:
            text = self.transport.read_file(self.target.path)
        except Exception:  # unreadable now: judge by the LB's weights until the next reload
            return {}
        if text is None:
            return {}
        try:
            model = parse_config("haproxy", text.decode("utf-8", "replace"), filename=self.target.path)
        except Exception:
            return {}
        pools: dict[str, Pool] = {}
        for section in model.pools():
            intended, approximate = shares(section)
            pools[section.name] = Pool(intended, approximate)
        return pools

    def close(self) -> None:
        self.transport.close()
