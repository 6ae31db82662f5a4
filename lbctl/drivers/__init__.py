"""A driver per target (`lbctl.drivers.base`): its kind and transport, built once per operation."""

from __future__ import annotations

from lbctl.config import Target
from lbctl.drivers.base import Driver
from lbctl.transports.base import Transport


def driver_for(target: Target, transport: Transport | None = None) -> Driver:
    """The driver for `target`: Caddy's admin API, else a file-based LB over its transport (`transport`:
    one the caller opened already, e.g. a fleet rollout's connection to each member)."""
    from lbctl.kinds import kind_for
    from lbctl.transports import transport_for

    kind = kind_for(target)
    transport = transport if transport is not None else transport_for(target)
    if target.kind == "caddy":
        from lbctl.drivers.caddy import CaddyDriver

        return CaddyDriver(target, kind, transport)
    from lbctl.drivers.files import FileDriver

    return FileDriver(target, kind, transport)
