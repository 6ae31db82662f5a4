"""What a running HAProxy holds, compared with a config: servers, addresses, weights, states.

The runtime API shows state that no file holds: `set server be/s weight 0` during an
incident, `set server be/s state maint`, a server added with `add server`, or a whole
config that a reload never loaded. `show servers state` gives, per server, its address,
port, admin state and current (user) weight; `show stat` adds whether it is a backup.
Both are read on one connection, from the stats socket or, through the master CLI, from
the current worker (`@1`).

A server's admin state is a bit field: 0x01 forced maintenance (`set server ... state
maint`), 0x04 maintenance from the configuration (`disabled`), 0x08 forced drain.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lbctl.errors import TransientError
from lbctl.semantic.model import ConfigModel

_FORCED_MAINT = 0x01
_CONFIG_MAINT = 0x04
_FORCED_DRAIN = 0x08
QUERY = "show servers state;show stat"


@dataclass(frozen=True)
class RunningServer:
    backend: str
    name: str
    address: str
    port: str
    admin: int
    weight: int
    backup: bool | None  # None: `show stat` did not say

    @property
    def maintenance(self) -> bool:
        return bool(self.admin & (_FORCED_MAINT | _CONFIG_MAINT))

    @property
    def draining(self) -> bool:
        return bool(self.admin & _FORCED_DRAIN)


def parse_runtime(text: str) -> dict[str, dict[str, RunningServer]]:
    """backend → server → its running state, from the answer to `QUERY`."""
    state_part, _, stat_part = text.partition("# pxname")
    lines = [line for line in state_part.splitlines() if line.strip()]
    if not lines or not lines[0].strip().isdigit() or len(lines) < 2 or not lines[1].startswith("# be_id"):
        raise TransientError(f"unexpected `show servers state` answer: {text.strip()[:200]!r}")
    header = lines[1].lstrip("# ").split()
    col = {name: i for i, name in enumerate(header)}
    backups = _backups("# pxname" + stat_part) if stat_part else {}
    running: dict[str, dict[str, RunningServer]] = {}
    for line in lines[2:]:
        fields = line.split()
        if len(fields) < len(header):
            continue

        def field(name: str, fields: list[str] = fields) -> str:
            return fields[col[name]] if name in col else ""

        backend, name = field("be_name"), field("srv_name")
        running.setdefault(backend, {})[name] = RunningServer(
            backend=backend,
            name=name,
            address=field("srv_addr"),
            port=field("srv_port"),
            admin=int(field("srv_admin_state") or 0),
            weight=int(field("srv_uweight") or 0),
            backup=backups.get((backend, name)),
        )
    return running


def _backups(csv: str) -> dict[tuple[str, str], bool]:
    rows = csv.splitlines()
    header = rows[0].lstrip("# ").split(",")
    if "bck" not in header:
        return {}
    at = header.index("bck")
    found = {}
    for row in rows[1:]:
        cells = row.split(",")
        if len(cells) > at and cells[1] not in ("FRONTEND", "BACKEND"):
            found[(cells[0], cells[1])] = cells[at] == "1"
    return found


def differences(model: ConfigModel, running: dict[str, dict[str, RunningServer]]) -> list[str]:
    """What the running HAProxy does differently from `model`, one line per fact."""
    found: list[str] = []
    pools = {s.name: s for s in model.pools() if "#" not in s.name}
    for name, pool in pools.items():
        live = running.get(name)
        if live is None:
            if pool.servers:
                found.append(f"backend {name}: in the config, not running")
            continue
        for server in pool.servers:
            run = live.get(server.name)
            label = f"backend {name} server {server.name}"
            if run is None:
                found.append(f"{label}: in the config, not running")
                continue
            if run.weight != server.weight:
                found.append(f"{label}: weight {run.weight} running, {server.weight} in the config")
            if run.maintenance != server.disabled:
                found.append(
                    f"{label}: in maintenance running, enabled in the config"
                    if run.maintenance
                    else f"{label}: enabled running, disabled in the config"
                )
            if run.draining:
                found.append(f"{label}: draining running (set through the runtime API), not in the config")
            if run.backup is not None and run.backup != server.backup:
                found.append(
                    f"{label}: {'backup' if run.backup else 'active'} running, "
                    f"{'backup' if server.backup else 'active'} in the config"
                )
            if _literal(server.address) and run.address not in ("", "-") and not _same_ip(run.address, server.address):
                found.append(f"{label}: address {run.address} running, {server.address} in the config")
            if server.port and server.port.isdigit() and run.port.isdigit() and int(run.port) != int(server.port):
                found.append(f"{label}: port {run.port} running, {server.port} in the config")
        names = {s.name for s in pool.servers}
        for extra in sorted(set(live) - names):
            found.append(f"backend {name} server {extra}: running, not in the config")
    for extra in sorted(set(running) - set(pools)):
        if running[extra]:
            found.append(f"backend {extra}: running, not in the config")
    return found


def _literal(address: str) -> bool:
    try:
        ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return True


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b.strip("[]"))
    except ValueError:
        return a == b
