"""HAProxy's two sockets, read through the transport: the master CLI and the runtime API.

- `ask(transport, socket, command)`: one command (or several, `;`-separated) on a socket
  of the LB host, retried while HAProxy briefly refuses it (a reload re-executes the master);
  returns the whole answer. Every reader of either socket goes through it.
- `show_proc` / `show_info`: the master's `show proc` and a worker's `show info`, parsed.
- `check_sockets(transport, target)`: the preflight. The sockets a target names must answer,
  and each must be the socket it is named as (a stats socket given as `master_socket` answers
  "Unknown command" to `show proc`); otherwise a `ConfigError` naming the key and the fix,
  before anything changes on the LB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lbctl import retry
from lbctl.config import Target
from lbctl.errors import ConfigError, TransientError
from lbctl.kinds.haproxy_socket import unix_request
from lbctl.transports.base import SocketUnavailable, Transport

_MASTER = re.compile(r"^(\d+)\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]", re.M)
# A socket that does not answer at all is a setting to fix, not a network to wait for: a
# reload makes the master refuse for ~50-80 ms, so a short deadline covers it.
PREFLIGHT = retry.Policy("socket-preflight", attempts=60, first_wait=0.02, max_wait=0.05, deadline=1.5, jitter=0.005)


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


def ask(transport: Transport, socket_path: str, command: str, *, policy: retry.Policy = retry.MASTER_SOCKET) -> str:
    return retry.call(policy, lambda: unix_request(transport, socket_path, command))


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
    return retry.call(retry.MASTER_SOCKET, lambda: parse_show_proc(unix_request(transport, master_socket, "show proc")))


def show_info(transport: Transport, stats_socket: str) -> WorkerInfo:
    def read() -> WorkerInfo:
        text = unix_request(transport, stats_socket, "show info")
        info = parse_info(text)
        if not info.get("Pid", "").isdigit():
            raise TransientError(f"unexpected `show info` answer: {text.strip()[:200]!r}")
        return WorkerInfo(int(info["Pid"]), info.get("Start_time_sec", ""))

    return retry.call(retry.MASTER_SOCKET, read)


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
        return ask(transport, path, command, policy=PREFLIGHT)
    except SocketUnavailable as exc:
        what = "the -S path HAProxy was started with" if key == "master_socket" else "the `stats socket` path"
        raise ConfigError(
            f"targets.{target.name}.{key}: nothing answers at {path} on {transport.where} ({exc.reason})",
            hint=f"set {key} to {what}, and check that HAProxy runs there and that lbctl's user may use it",
        ) from None


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:120]
