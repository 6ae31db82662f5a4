"""HAProxy's two sockets, read through the transport: the master CLI and the runtime API.

Every command lbctl sends to HAProxy goes through `ask(transport, socket, command, read)`:
one request (several commands `;`-separated run in order on one connection) on a UNIX
socket of the LB host, sent by `send` (the one place that reaches the socket), retried
while HAProxy briefly refuses it (a reload re-executes the master) or `read` finds the
answer incomplete. What is read here:

- the master CLI's `show proc` (`ProcState`: master pid, reload count, `[failed: N]`,
  workers) and a worker's `show info` (`WorkerInfo`);
- `show info;show stat`: per-server and per-backend counters for the balance check (`parse_stats`);
- `show servers state;show stat`: what the running HAProxy holds, compared with a config
  (`parse_runtime`, `differences`): state no file holds, as `set server be/s weight 0`
  during an incident, `set server be/s state maint`, a server added with `add server`,
  or a whole config that a reload never loaded;
- `check_sockets(transport, target)`: the preflight. The sockets a target names must answer,
  and each must be the socket it is named as (a stats socket given as `master_socket` answers
  "Unknown command" to `show proc`); otherwise a `ConfigError` naming the key and the fix,
  before anything changes on the LB.

A server's admin state is a bit field: 0x01 forced maintenance (`set server ... state
maint`), 0x04 maintenance from the configuration (`disabled`), 0x08 forced drain.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from lbctl import retry
from lbctl.checks.counters import ServerCounters, Snapshot
from lbctl.config import Target
from lbctl.errors import ConfigError, TransientError
from lbctl.kinds.haproxy_socket import unix_request
from lbctl.transports.base import SocketUnavailable, Transport

if TYPE_CHECKING:
    from lbctl.semantic.model import ConfigModel

T = TypeVar("T")

_MASTER = re.compile(r"^(\d+)\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]", re.M)
# A socket that does not answer at all is a setting to fix, not a network to wait for: a
# reload makes the master refuse for ~50-80 ms, so a short deadline covers it.
PREFLIGHT = retry.Policy("socket-preflight", attempts=60, first_wait=0.02, max_wait=0.05, deadline=1.5, jitter=0.005)
STATS_QUERY = "show info;show stat"
QUERY = "show servers state;show stat"
_FORCED_MAINT = 0x01
_CONFIG_MAINT = 0x04
_FORCED_DRAIN = 0x08


# -- sending ------------------------------------------------------------------------------


def send(transport: Transport, socket_path: str, command: str) -> str:
    """One request on a UNIX socket of the LB host, its whole answer; no retry. The only way in."""
    return unix_request(transport, socket_path, command)


def ask(
    transport: Transport,
    socket_path: str,
    command: str,
    read: Callable[[str], T],
    *,
    policy: retry.Policy = retry.MASTER_SOCKET,
) -> T:
    """`read` applied to the answer to `command`, retried under `policy` while either fails transiently."""
    return retry.call(policy, lambda: read(send(transport, socket_path, command)))


# -- the master CLI and show info ------------------------------------------------------


@dataclass(frozen=True)
class ProcState:
    master_pid: int
    reloads: int
    failed: int
    workers: frozenset[int]


def not_reloaded_since(before: ProcState, now: ProcState) -> bool:
    """No reload at all between the two readings (old workers finishing their connections may have left)."""
    same_master = (now.master_pid, now.reloads, now.failed) == (before.master_pid, before.reloads, before.failed)
    return same_master and now.workers <= before.workers


@dataclass(frozen=True)
class WorkerInfo:
    """A worker's identity from `show info` on the stats socket."""

    pid: int
    started: str  # Start_time_sec, or "" on versions without it


def parse_show_proc(text: str) -> ProcState:
    found = _MASTER.search(text)
    if not found:
        raise TransientError(f"unexpected `show proc` answer: {text.strip()[:200]!r}")
    workers: set[int] = set()
    section = ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.strip("# ").lower()
            continue
        fields = line.split()
        if section == "workers" and len(fields) >= 2 and fields[1] == "worker" and fields[0].isdigit():
            workers.add(int(fields[0]))
    return ProcState(int(found.group(1)), int(found.group(2)), int(found.group(3)), frozenset(workers))


def parse_info(text: str) -> dict[str, str]:
    """`show info`'s `Name: value` lines."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name and " " not in name:
            info[name] = value.strip()
    return info


def show_proc(transport: Transport, master_socket: str) -> ProcState:
    return ask(transport, master_socket, "show proc", parse_show_proc)


def show_info(transport: Transport, stats_socket: str) -> WorkerInfo:
    return ask(transport, stats_socket, "show info", parse_worker_info)


def parse_worker_info(text: str) -> WorkerInfo:
    info = parse_info(text)
    if not info.get("Pid", "").isdigit():
        raise TransientError(f"unexpected `show info` answer: {text.strip()[:200]!r}")
    return WorkerInfo(int(info["Pid"]), info.get("Start_time_sec", ""))


# -- counters for the balance check: show info;show stat ---------------------------------


def parse_stats(text: str) -> Snapshot:
    """Parse the answer to `show info;show stat`: the worker's pid, then the CSV."""
    info, _, csv_part = text.partition("# pxname")
    pid = parse_info(info).get("Pid", "")
    if not csv_part or not pid:
        raise TransientError(f"unexpected `show stat` answer: {text.strip()[:200]!r}")
    width, rows = stat_table("# pxname" + csv_part)

    def number(row: dict[str, str], name: str) -> int:
        value = row.get(name, "")
        return int(value) if value.isdigit() else 0

    def responses(row: dict[str, str]) -> int:
        return sum(number(row, f"hrsp_{c}") for c in ("1xx", "2xx", "3xx", "4xx", "5xx", "other"))

    servers: list[ServerCounters] = []
    sessions: dict[str, int] = {}
    errors: dict[str, int] = {}
    answered: dict[str, int] = {}
    for row in rows:
        if len(row) < width - 1 or row["svname"] == "FRONTEND":
            continue
        backend = row["pxname"]
        if row["svname"] == "BACKEND":
            sessions[backend] = number(row, "stot")
            errors[backend] = number(row, "hrsp_5xx")
            answered[backend] = responses(row)
            continue
        limit = number(row, "slim")
        servers.append(
            ServerCounters(
                backend=backend,
                server=row["svname"],
                sessions=number(row, "stot"),
                status=row.get("status", ""),
                weight=number(row, "weight"),
                current=number(row, "scur"),
                limit=limit or None,
                queued=number(row, "qcur"),
                http_5xx=number(row, "hrsp_5xx"),
                http_total=responses(row),
                backup=number(row, "bck") > 0,
                max_current=number(row, "smax"),
                max_queued=number(row, "qmax"),
            )
        )
    return Snapshot(pid, tuple(servers), sessions, errors, answered)


def stat_table(csv: str) -> tuple[int, list[dict[str, str]]]:
    """`show stat`'s CSV, from its `# pxname,...` header line: (number of columns, one row per
    line as column → value). A line cut short lacks its last columns."""
    lines = csv.splitlines()
    header = lines[0].lstrip("# ").split(",")
    return len(header), [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]


# -- the running servers: show servers state;show stat -----------------------------------


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
    _, rows = stat_table(csv)
    return {
        (row["pxname"], row["svname"]): row["bck"] == "1"
        for row in rows
        if "bck" in row and row["svname"] not in ("FRONTEND", "BACKEND")
    }


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
    import ipaddress

    try:
        ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return True


def _same_ip(a: str, b: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b.strip("[]"))
    except ValueError:
        return a == b


# -- the preflight ----------------------------------------------------------------------


def check_sockets(transport: Transport, target: Target) -> ProcState | None:
    """Each socket the target names answers, and is what it is named as (`ConfigError` if not).

    Returns the master's `show proc` as read (None without a master socket).
    """
    state = None
    if target.master_socket:
        answer = _preflight_ask(transport, target, "master_socket", target.master_socket, "show proc")
        if not _MASTER.search(answer):
            stats_like = "Unknown command" in answer
            raise ConfigError(
                f"targets.{target.name}.master_socket: {target.master_socket} on {transport.where} is not "
                f"HAProxy's master CLI: `show proc` answered {_first_line(answer)!r}",
                hint=(
                    "that looks like the runtime API: set stats_socket to it, and master_socket to the path "
                    "HAProxy was started with (`haproxy -W -S PATH`)"
                    if stats_like
                    else "set master_socket to the path HAProxy was started with (`haproxy -W -S PATH`)"
                ),
            )
        state = parse_show_proc(answer)
    if target.stats_socket:
        answer = _preflight_ask(transport, target, "stats_socket", target.stats_socket, "show info")
        if not parse_info(answer).get("Pid", "").isdigit():
            master_like = "show proc" in answer
            raise ConfigError(
                f"targets.{target.name}.stats_socket: {target.stats_socket} on {transport.where} is not "
                f"HAProxy's runtime API: `show info` answered {_first_line(answer)!r}",
                hint=(
                    "that is the master CLI: set master_socket to it, and stats_socket to the path of "
                    "`stats socket PATH level admin` in the config's global section"
                    if master_like
                    else "set stats_socket to the path of `stats socket PATH level admin` in the global section"
                ),
            )
    return state


def _preflight_ask(transport: Transport, target: Target, key: str, path: str, command: str) -> str:
    try:
        return ask(transport, path, command, str, policy=PREFLIGHT)
    except SocketUnavailable as exc:
        what = "the -S path HAProxy was started with" if key == "master_socket" else "the `stats socket` path"
        raise ConfigError(
            f"targets.{target.name}.{key}: nothing answers at {path} on {transport.where} ({exc.reason})",
            hint=f"set {key} to {what}, and check that HAProxy runs there and that lbctl's user may use it",
        ) from None


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:120]
