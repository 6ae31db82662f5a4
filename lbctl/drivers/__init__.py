"""A driver per target (`lbctl.drivers.base`): its kind and transport, built once per operation."""

from __future__ import annotations

from lbctl.config import Target
from lbctl.drivers.base import Driver


def driver_for(target: Target) -> Driver:
    """The driver for `target`: Caddy's admin API, else a file-based LB over its transport."""
    from lbctl.kinds import kind_for
    from lbctl.transports import transport_for

    kind, transport = kind_for(target), transport_for(target)
    if target.kind == "caddy":
        from lbctl.drivers.caddy import CaddyDriver

        return CaddyDriver(target, kind, transport)
    from lbctl.drivers.files import FileDriver

    return FileDriver(target, kind, transport)
