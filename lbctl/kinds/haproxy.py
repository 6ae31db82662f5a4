"""HAProxy in master-worker mode (`-W -S <master socket>`).

HAProxy 2.6's `reload` on the master CLI prints nothing and succeeds even when the new
config fails to load, so a reload is confirmed from `show proc`: the master's reload
count moves, its `[failed: N]` does not, and a worker PID we had not seen appears.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lbctl import retry
from lbctl.errors import ConfigError, TransientError
from lbctl.kinds.base import Kind, ReloadFailed
from lbctl.transports.base import Transport

_MASTER = re.compile(r"^(\d+)\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]", re.M)


@dataclass(frozen=True)
class ProcState:
    master_pid: int
    reloads: int
    failed: int
    workers: frozenset[int]


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


class HaproxyKind(Kind):
    name = "haproxy"
    default_validate = ("haproxy", "-c", "-q", "-f", "{path}")

    def _master(self) -> str:
        if not self.target.master_socket:
            raise ConfigError(
                f"targets.{self.target.name}: confirming a HAProxy reload needs `master_socket`",
                hint="start HAProxy with -W -S /run/haproxy-master.sock and set master_socket to that path",
            )
        return self.target.master_socket

    def show_proc(self, transport: Transport) -> ProcState:
        master = self._master()
        return retry.call(retry.MASTER_SOCKET, lambda: parse_show_proc(transport.unix_request(master, "show proc")))

    def reload_marker(self, transport: Transport) -> object:
        return self.show_proc(transport) if self.target.master_socket else None

    def reload(self, transport: Transport) -> None:
        argv = self.reload_argv()
        if argv is not None:
            result = transport.run(argv, timeout=60)
            if result.code != 0:
                raise ReloadFailed(f"reload command exited {result.code}: {result.output[:500]}")
            return
        master = self._master()
        retry.call(retry.MASTER_SOCKET, lambda: transport.unix_request(master, "reload"))

    def confirm_reload(self, transport: Transport, marker: object) -> str:
        if not isinstance(marker, ProcState):
            return "reload command exited 0 (no master socket to confirm with)"
        before = marker

        def took() -> ProcState:
            now = self.show_proc(transport)
            if now.master_pid != before.master_pid:
                raise ReloadFailed(f"the HAProxy master changed (pid {before.master_pid} → {now.master_pid})")
            if now.failed > before.failed:
                raise ReloadFailed(
                    f"HAProxy refused the new config on reload ([failed: {now.failed}]); old workers keep serving"
                )
            if now.reloads <= before.reloads or not (now.workers - before.workers):
                raise TransientError("reload not visible yet")
            return now

        try:
            after = retry.call(retry.POLL, took)
        except TransientError as exc:
            raise ReloadFailed(f"no new HAProxy worker appeared within {retry.POLL.deadline:.0f} s ({exc})") from None
        new = ", ".join(str(p) for p in sorted(after.workers - before.workers))
        return f"reload #{after.reloads} took: new worker {new}, [failed: {after.failed}]"
