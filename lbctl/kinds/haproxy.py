"""HAProxy in master-worker mode (`-W -S <master socket>`), or reached by its stats socket.

HAProxy 2.6's `reload` on the master CLI prints nothing and succeeds even when the new
config fails to load, and a `reload` command may exit 0 having done nothing, so every
reload is confirmed: from `show proc` on `master_socket` (the master's reload count moves,
its `[failed: N]` does not, and a worker PID we had not seen appears), or else from `show
info` on `stats_socket` (the worker answering there has a new PID). A target with neither
cannot be confirmed: `lbctl.toml` refuses it unless `confirm_reload = false`.

When the master refuses a reload, its reason is in the master's own output (2.6 has no
`show startup-logs`): lbctl reads it from the file the master's stderr goes to, when it
is one, and otherwise says where to look.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lbctl import retry
from lbctl.checks.counters import Snapshot
from lbctl.config import Target
from lbctl.errors import ConfigError, TransientError
from lbctl.kinds.base import Kind, ReloadFailed, ReloadNotConfirmed
from lbctl.kinds.haproxy_api import (
    QUERY,
    STATS_QUERY,
    ProcState,
    WorkerInfo,
    ask,
    check_sockets,
    differences,
    not_reloaded_since,
    parse_runtime,
    parse_show_proc,
    parse_stats,
    show_info,
    show_proc,
)
from lbctl.transports.base import Transport

if TYPE_CHECKING:
    from lbctl.kinds.conformance import Conformance, Origin
    from lbctl.store.bundle import Bundle

__all__ = ["HaproxyKind", "ProcState", "balance_algorithms", "parse_show_proc", "parse_stats"]

# Where the master's stderr goes, and its end: the reason for a refused reload is there.
_MASTER_LOG = r"""
log=$(readlink "/proc/$1/fd/2") || exit 3
printf '%s\n' "$log"
[ -f "$log" ] || exit 4
tail -c 16384 -- "$log"
"""
_ALERT = re.compile(r"\[(ALERT|EMERG)\]")


def balance_algorithms(text: str, *, filename: str = "haproxy.cfg") -> dict[str, str]:
    """backend/listen name → `balance` algorithm, or `sticky` (see `semantic.haproxy.balance_algorithms`).

    A config the semantic parser cannot read gives no algorithms: every pool is judged on its spread.
    """
    from lbctl.errors import ParseError
    from lbctl.semantic import haproxy

    try:
        return haproxy.balance_algorithms(haproxy.parse(text, filename=filename))
    except ParseError:
        return {}


class HaproxyKind(Kind):
    name = "haproxy"
    # Without -q: on failure HAProxy prints its `[ALERT] ... parsing [FILE:LINE]` lines (with -q, nothing).
    default_validate = ("haproxy", "-c", "-f", "{path}")
    validation_noise = ("] : haproxy version is ", "] : path to executable is ")
    conformance_modules = ("lbctl.semantic.haproxy",)

    def _master(self) -> str:
        if not self.target.master_socket:
            raise ConfigError(
                f"targets.{self.target.name}: reloading HAProxy without a `reload` command needs `master_socket`",
                hint="start HAProxy with -W -S /run/haproxy-master.sock and set master_socket to that path",
            )
        return self.target.master_socket

    def show_proc(self, transport: Transport) -> ProcState:
        return show_proc(transport, self._master())

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._checked: ProcState | None = None  # `show proc` as the preflight read it

    def check_endpoints(self, transport: Transport) -> None:
        self._checked = check_sockets(transport, self.target)

    def endpoint_requests(self) -> tuple[tuple[str, str], ...]:
        t = self.target
        return tuple(
            (sock, line) for sock, line in ((t.master_socket, "show proc"), (t.stats_socket, "show info")) if sock
        )

    def traffic_snapshot(self, transport: Transport) -> Snapshot:
        sock = self.target.stats_socket
        if not sock:
            raise ConfigError(
                f"targets.{self.target.name}: the balance check needs `stats_socket` (HAProxy's runtime API)",
                hint="add `stats socket /run/haproxy/admin.sock mode 600 level admin` to global and set stats_socket",
            )
        # One connection for both commands: the stats socket runs `;`-separated commands in order.
        return ask(transport, sock, STATS_QUERY, parse_stats)

    def balance_algorithms(self, transport: Transport) -> dict[str, str]:
        text = transport.read_file(self.target.path or "") if self.target.path else None
        return balance_algorithms(text.decode("utf-8", "replace"), filename=self.target.path or "") if text else {}

    def reload_marker(self, transport: Transport) -> object:
        if self.target.master_socket:
            # The preflight's reading, once: the operation holds the LB's lock since, and a reading
            # less saves a round trip on the on-call path. Later snapshots (a restore) read anew.
            checked, self._checked = self._checked, None
            return checked or self.show_proc(transport)
        if self.target.stats_socket:
            return show_info(transport, self.target.stats_socket)
        return None

    def reload(self, transport: Transport) -> None:
        argv = self.reload_argv()
        if argv is not None:
            result = transport.run(argv, timeout=60)
            if result.code != 0:
                said = self.shown_names(result.output)[:1000] or "(no output)"
                raise ReloadFailed(f"the reload command `{self.target.reload}` exited {result.code}: {said}")
            return
        ask(transport, self._master(), "reload", str)

    def still_running(self, transport: Transport, marker: object) -> bool:
        if isinstance(marker, ProcState):
            return not_reloaded_since(marker, self.show_proc(transport))
        if isinstance(marker, WorkerInfo) and self.target.stats_socket:
            return show_info(transport, self.target.stats_socket) == marker
        return False

    def confirm_reload(self, transport: Transport, marker: object) -> str:
        if isinstance(marker, WorkerInfo):
            return self._confirm_by_stats(transport, marker)
        if not isinstance(marker, ProcState):
            raise ReloadFailed(f"targets.{self.target.name}: no master_socket or stats_socket to confirm the reload")
        before = marker

        def took() -> ProcState:
            now = self.show_proc(transport)
            if now.master_pid != before.master_pid:
                raise ReloadFailed(f"the HAProxy master changed (pid {before.master_pid} → {now.master_pid})")
            if now.failed > before.failed:
                raise ReloadFailed(
                    f"HAProxy refused the new config on reload ([failed: {now.failed}]); old workers keep serving. "
                    + self._refusal_reason(transport, now.master_pid)
                )
            if now.reloads <= before.reloads or not (now.workers - before.workers):
                raise TransientError("reload not visible yet")
            return now

        try:
            after = retry.call(retry.POLL, took)
        except TransientError:
            now = self.show_proc(transport)
            if not_reloaded_since(before, now):
                raise ReloadNotConfirmed(
                    f"HAProxy did not reload: after {retry.POLL.deadline:.0f} s `show proc` still shows master "
                    f"{now.master_pid} with {now.reloads} reload(s) and worker(s) {_pids(now.workers)}"
                    + self._what_ran()
                ) from None
            raise ReloadFailed(
                f"no new HAProxy worker appeared within {retry.POLL.deadline:.0f} s (master {now.master_pid}: "
                f"{now.reloads} reload(s), [failed: {now.failed}], worker(s) {_pids(now.workers)})"
            ) from None
        new = _pids(after.workers - before.workers)
        return f"reload #{after.reloads} took: new worker {new}, [failed: {after.failed}]"

    def _confirm_by_stats(self, transport: Transport, before: WorkerInfo) -> str:
        sock = self.target.stats_socket or ""

        def took() -> WorkerInfo:
            now = show_info(transport, sock)
            if now.pid == before.pid:
                raise TransientError("the same worker still answers")
            return now

        try:
            after = retry.call(retry.POLL, took)
        except TransientError:
            raise ReloadNotConfirmed(
                f"HAProxy did not reload: after {retry.POLL.deadline:.0f} s the stats socket still answers from "
                f"worker {before.pid}" + self._what_ran() + " (with master_socket set, lbctl could also tell a "
                "refused config from a reload that never happened)"
            ) from None
        return f"reload took: worker {after.pid} answers on the stats socket (was {before.pid})"

    def _what_ran(self) -> str:
        if self.target.reload:
            return (
                f"; the reload command `{self.target.reload}` exited 0 without reloading it "
                f"(it runs with /bin/sh -c on the LB host: check targets.{self.target.name}.reload)"
            )
        return "; the master CLI accepted `reload` but nothing happened"

    def _refusal_reason(self, transport: Transport, master_pid: int) -> str:
        """HAProxy's own words for a refused reload, from the end of the master's stderr file."""
        result = transport.run(["sh", "-c", _MASTER_LOG, "lbctl-master-log", str(master_pid)], timeout=10)
        where, _, text = result.stdout.partition("\n")
        if result.code == 0 and text:
            tail = text.rsplit("Reloading HAProxy", 1)[-1]
            alerts = [self.shown_names(line.strip()) for line in tail.splitlines() if _ALERT.search(line)]
            if alerts:
                return f"HAProxy said (in {where}):\n" + "\n".join(alerts[-12:])
        shown = f" ({where.strip()})" if where.strip() else ""
        return (
            f"Its reason is in the HAProxy master's own output{shown}: its log or journal "
            "(`journalctl -u haproxy` under systemd)"
        )

    # -- what the running HAProxy holds (lbctl.kinds.conformance) -------------------------------

    def config_origin(self, transport: Transport) -> Origin:
        """The `-f` files on the command line of the running master (or worker)."""
        from lbctl.kinds.conformance import judge, origin_unknown, read_started

        if self.target.master_socket:
            # The preflight's `show proc` (read under the LB's lock a moment ago) names the master.
            pid = (self._checked or self.show_proc(transport)).master_pid
            how = f"master pid {pid}, from `show proc` on {self.target.master_socket}"
        elif self.target.stats_socket:
            pid = show_info(transport, self.target.stats_socket).pid
            how = f"pid {pid}, from `show info` on {self.target.stats_socket}"
        else:
            return origin_unknown(
                "neither master_socket nor stats_socket is set:"
                " lbctl cannot ask the running HAProxy which file it reads"
            )
        started = read_started(transport, self.target, pid, how)
        if started is None:
            return origin_unknown(f"cannot read the command line of HAProxy's pid {pid} on {transport.where}")
        files = config_files(started.argv, started.cwd)
        if not files:
            return origin_unknown(f"HAProxy's pid {pid} was started without -f")
        if not all(f.startswith("/") for f in files):  # relative, and its working directory unreadable
            return origin_unknown(f"HAProxy's pid {pid} reads {', '.join(files)} from a directory lbctl cannot see")
        return judge(transport, self.target, started, files)

    def conformance(self, transport: Transport, deployed: Bundle) -> Conformance:
        """Servers, addresses, weights and admin states from the runtime API vs `deployed`."""
        from lbctl.errors import ParseError
        from lbctl.kinds.conformance import Conformance, unknown
        from lbctl.semantic.haproxy import parse

        if self.target.stats_socket:
            sock, query, how = self.target.stats_socket, QUERY, f"the runtime API on {self.target.stats_socket}"
        elif self.target.master_socket:
            sock, query = self.target.master_socket, "@1 show servers state;@1 show stat"
            how = f"the current worker through {self.target.master_socket}"
        else:
            return unknown("neither stats_socket nor master_socket is set: lbctl cannot read the running servers")
        try:
            model = parse(deployed.main.decode("utf-8", "replace"), filename=self.target.path or self.target.source)
        except ParseError as exc:
            return unknown(f"the deployed config does not parse: {exc}")
        try:
            running = parse_runtime(ask(transport, sock, query, str))
        except TransientError as exc:
            return unknown(f"could not read the running servers: {exc}")
        return Conformance(True, tuple(differences(model, running)), f"servers, weights and states from {how}")


def config_files(argv: tuple[str, ...], cwd: str) -> list[str]:
    """The config files and directories on a HAProxy command line (`-f X`, or after `--`), made absolute."""
    from lbctl.kinds.conformance import absolute

    files: list[str] = []
    base = cwd
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            files += argv[i + 1 :]
            break
        if arg in ("-f", "-C") and i + 1 < len(argv):
            if arg == "-f":
                files.append(argv[i + 1])
            else:
                base = absolute(argv[i + 1], cwd)  # -C: HAProxy changes to it before reading the files
            i += 2
            continue
        i += 1
    return [absolute(f, base) for f in files]


def _pids(pids: frozenset[int]) -> str:
    return ", ".join(str(p) for p in sorted(pids)) or "(none)"
