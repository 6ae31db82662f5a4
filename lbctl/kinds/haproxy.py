"""HAProxy in master-worker mode (`-W -S <master socket>`).

HAProxy 2.6's `reload` on the master CLI prints nothing and succeeds even when the new
config fails to load, so a reload is confirmed from `show proc`: the master's reload
count moves, its `[failed: N]` does not, and a worker PID we had not seen appears.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lbctl import retry
from lbctl.checks.counters import ServerCounters, Snapshot
from lbctl.errors import ConfigError, TransientError
from lbctl.kinds.base import Kind, ReloadFailed
from lbctl.transports.base import Transport

if TYPE_CHECKING:
    from lbctl.bundle import Bundle
    from lbctl.conformance import Conformance, Origin

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


def parse_stats(text: str) -> Snapshot:
    """Parse the answer to `show info;show stat`: the worker's pid, then the CSV."""
    info, _, csv_part = text.partition("# pxname")
    pid = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Pid:")), "")
    if not csv_part or not pid:
        raise TransientError(f"unexpected `show stat` answer: {text.strip()[:200]!r}")
    lines = ("# pxname" + csv_part).splitlines()
    header = lines[0].lstrip("# ").split(",")
    col = {name: i for i, name in enumerate(header)}

    def number(row: list[str], name: str) -> int:
        value = row[col[name]] if name in col and col[name] < len(row) else ""
        return int(value) if value.isdigit() else 0

    def responses(row: list[str]) -> int:
        return sum(number(row, f"hrsp_{c}") for c in ("1xx", "2xx", "3xx", "4xx", "5xx", "other"))

    servers: list[ServerCounters] = []
    sessions: dict[str, int] = {}
    errors: dict[str, int] = {}
    answered: dict[str, int] = {}
    for line in lines[1:]:
        row = line.split(",")
        if len(row) < len(header) - 1 or row[1] == "FRONTEND":
            continue
        if row[1] == "BACKEND":
            sessions[row[0]] = number(row, "stot")
            errors[row[0]] = number(row, "hrsp_5xx")
            answered[row[0]] = responses(row)
            continue
        limit = number(row, "slim")
        servers.append(
            ServerCounters(
                backend=row[0],
                server=row[1],
                sessions=number(row, "stot"),
                status=row[col["status"]],
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


_SECTION = re.compile(
    r"^(global|defaults|frontend|backend|listen|userlist|peers|resolvers|mailers|program|"
    r"http-errors|ring|cache|log-forward)\b\s*(\S*)"
)


def balance_algorithms(text: str) -> dict[str, str]:
    """backend/listen name → `balance` algorithm, inheriting from the defaults above it."""
    algorithms: dict[str, str] = {}
    inherited = "roundrobin"
    section, name = "", ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        header = _SECTION.match(line)
        if header and not raw[:1].isspace():
            section, name = header.group(1), header.group(2)
            if section in ("backend", "listen"):
                algorithms[name] = inherited
            continue
        if line.startswith("balance ") and len(line.split()) > 1:
            algo = line.split()[1]
            if section == "defaults":
                inherited = algo
            elif section in ("backend", "listen") and algorithms.get(name) != "sticky":
                algorithms[name] = algo
        elif line.startswith(("stick on", "stick match", "stick store", "cookie ")) and section in (
            "backend",
            "listen",
        ):
            algorithms[name] = "sticky"  # a client stays on its server whatever the algorithm
    return algorithms


class HaproxyKind(Kind):
    name = "haproxy"
    default_validate = ("haproxy", "-c", "-q", "-f", "{path}")
    conformance_modules = ("lbctl.semantic.haproxy", "lbctl.kinds.haproxy_runtime")

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

    def traffic_snapshot(self, transport: Transport) -> Snapshot:
        sock = self.target.stats_socket
        if not sock:
            raise ConfigError(
                f"targets.{self.target.name}: the balance check needs `stats_socket` (HAProxy's runtime API)",
                hint="add `stats socket /run/haproxy/admin.sock mode 600 level admin` to global and set stats_socket",
            )
        # One connection for both commands: the stats socket runs `;`-separated commands in order.
        return retry.call(retry.MASTER_SOCKET, lambda: parse_stats(transport.unix_request(sock, "show info;show stat")))

    def balance_algorithms(self, transport: Transport) -> dict[str, str]:
        text = transport.read_file(self.target.path or "") if self.target.path else None
        return balance_algorithms(text.decode("utf-8", "replace")) if text else {}

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

    # -- what the running HAProxy holds (lbctl.conformance) -------------------------------

    def config_origin(self, transport: Transport) -> Origin:
        """The `-f` files on the command line of the running master (or worker)."""
        from lbctl.conformance import judge, origin_unknown, read_started

        if self.target.master_socket:
            pid = self.show_proc(transport).master_pid
            how = f"master pid {pid}, from `show proc` on {self.target.master_socket}"
        elif self.target.stats_socket:
            sock = self.target.stats_socket
            info = retry.call(retry.MASTER_SOCKET, lambda: transport.unix_request(sock, "show info"))
            pid = _info_pid(info)
            how = f"pid {pid}, from `show info` on {sock}"
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
        from lbctl.conformance import Conformance, unknown
        from lbctl.errors import ParseError
        from lbctl.kinds.haproxy_runtime import QUERY, differences, parse_runtime
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
            running = parse_runtime(retry.call(retry.MASTER_SOCKET, lambda: transport.unix_request(sock, query)))
        except TransientError as exc:
            return unknown(f"could not read the running servers: {exc}")
        return Conformance(True, tuple(differences(model, running)), f"servers, weights and states from {how}")


def _info_pid(info: str) -> int:
    for line in info.splitlines():
        if line.startswith("Pid:") and line.split(":", 1)[1].strip().isdigit():
            return int(line.split(":", 1)[1])
    raise TransientError(f"unexpected `show info` answer: {info.strip()[:200]!r}")


def config_files(argv: tuple[str, ...], cwd: str) -> list[str]:
    """The config files and directories on a HAProxy command line (`-f X`, or after `--`), made absolute."""
    from lbctl.conformance import absolute

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
