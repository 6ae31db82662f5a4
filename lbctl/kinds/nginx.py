"""nginx (open source, 1.18+), over the local or ssh transport.

Validation runs `nginx -t` on the staged file, which sits beside the live one: nginx
resolves a relative `include` against the directory of the file given with `-c`, and
everything else (pid, logs, temp paths) against the prefix (`-p`, the target's `prefix`),
so the staged file is checked exactly as the live one will be loaded.

A reload keeps the master process and starts a new generation of workers; the old
ones close their listening sockets, finish their requests and exit (their title turns
to "worker process is shutting down"). The reload is confirmed when the new generation
is up and no old worker still accepts: until then, requests may reach the old config. A reload that
nginx refuses (a config that no longer loads, a port it cannot bind) leaves the old
workers serving and logs the reason: no new worker appears, and that is what lbctl
waits for. Workers are listed with `ps --ppid` on the LB host.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lbctl import retry
from lbctl.checks.counters import Snapshot
from lbctl.config import Target
from lbctl.errors import ConfigError, TransientError
from lbctl.kinds.base import Kind, ReloadFailed, ReloadNotConfirmed
from lbctl.kinds.nginx_traffic import TAIL_BYTES, LiveView, Tally, algorithm, pick_log, read_view
from lbctl.transports.base import Transport

if TYPE_CHECKING:
    from lbctl.kinds.conformance import Conformance, Origin
    from lbctl.store.bundle import Bundle

_SHUTTING_DOWN = "is shutting down"
# The LB host's clock now, its uptime, the clock tick, each worker's start (ticks since boot),
# then each config file's modification time: whether the workers loaded the files as they are.
_AGES = (
    'date +%s.%N; cut -d" " -f1 /proc/uptime; getconf CLK_TCK; '
    'for p in $1; do cut -d" " -f22 "/proc/$p/stat" 2>/dev/null || echo -; done; echo --; '
    'shift; stat -L -c "%.9Y %n" -- "$@" 2>/dev/null; exit 0'
)
_SLACK = 0.05  # seconds: the LB host's boot time is known to ~10 ms
_BUILD_OPTION = re.compile(r"--([a-z-]+)=(\S+)")
# Not the semantic parser: this reads a config nginx has just refused, which may not parse at all.
_ERROR_LOG = re.compile(r"^\s*error_log\s+([^\s;]+)", re.M)


@dataclass(frozen=True)
class Generation:
    """The master and its current (not shutting down) workers."""

    master: int
    workers: frozenset[int]


@dataclass
class _LogCursor:
    path: str
    file_id: str
    anchor: int
    offset: int
    tally: Tally
    generation: str  # the worker generation that wrote the lines counted


class NginxKind(Kind):
    name = "nginx"
    default_validate = ("nginx", "-t", "-q", "-c", "{path}")
    follows_includes = True

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._build: dict[str, str] | None = None
        self._cursor: _LogCursor | None = None

    # -- validate and reload ---------------------------------------------------------

    def default_validate_argv(self, path: str) -> list[str]:
        prefix = ["-p", self.target.prefix] if self.target.prefix else []
        return ["nginx", "-t", "-q", *prefix, "-c", path]

    def include_patterns(self, content: bytes) -> list[str]:
        if b"include" not in content:  # most configs: no parse needed
            return []
        from lbctl.semantic.nginx import include_patterns

        return [
            p for p in include_patterns(content.decode("utf-8", "replace")) if not p.startswith("/") and "$" not in p
        ]

    def reload_marker(self, transport: Transport) -> Generation:
        return self.generation(transport)

    def reload(self, transport: Transport) -> None:
        argv = self.reload_argv()
        if argv is None:
            prefix = ["-p", self.target.prefix] if self.target.prefix else []
            argv = ["nginx", "-s", "reload", *prefix, "-c", self.target.path or ""]
        result = transport.run(argv, timeout=60)
        if result.code != 0:
            shown = self.target.reload or " ".join(argv)
            raise ReloadFailed(f"`{shown}` exited {result.code}: {self.shown_names(result.output)[:1000]}")

    def confirm_reload(self, transport: Transport, marker: object) -> str:
        if not isinstance(marker, Generation):
            return "reload command exited 0"
        before = marker

        def took() -> Generation:
            now = self.generation(transport)
            if now.master != before.master:
                raise ReloadFailed(f"the nginx master changed (pid {before.master} → {now.master})")
            if not now.workers - before.workers:
                raise TransientError("no new worker generation yet")
            if now.workers & before.workers:  # old workers still accept: wait until they let go
                raise TransientError("the old workers still accept connections")
            return now

        try:
            after = retry.call(retry.POLL, took)
        except TransientError:
            said = self._error_log_says(transport)
            if self.target.reload and not said:
                raise ReloadNotConfirmed(
                    f"nginx did not reload: after {retry.POLL.deadline:.0f} s master {before.master} has no new "
                    f"workers; the reload command `{self.target.reload}` exited 0 without reloading it (it runs with "
                    f"/bin/sh -c on the LB host: check targets.{self.target.name}.reload)"
                ) from None
            raise ReloadNotConfirmed(
                f"nginx started no new workers within {retry.POLL.deadline:.0f} s: it refused the config on "
                "reload and the old workers keep serving. " + (said or "Its error log says why.")
            ) from None
        new = ", ".join(str(p) for p in sorted(after.workers - before.workers))
        return f"new worker generation {new} under master {after.master}"

    def still_running(self, transport: Transport, marker: object) -> bool:
        return isinstance(marker, Generation) and self.generation(transport) == marker

    def _error_log_says(self, transport: Transport) -> str:
        """The last [emerg]/[alert] line of nginx's error log (why it refused a reload), or ""."""
        raw = transport.read_file(self.target.path or "") if self.target.path else None
        found = _ERROR_LOG.search(raw.decode("utf-8", "replace")) if raw else None
        log = self.resolve(transport, found.group(1) if found else "logs/error.log")
        tail = transport.run(["tail", "-c", "8192", "--", log], timeout=10)
        lines = [line for line in tail.stdout.splitlines() if "[emerg]" in line or "[alert]" in line]
        if tail.code != 0 or not lines:
            return ""
        return f"nginx said (in {log}): {self.shown_names(lines[-1].strip())}"

    def generation(self, transport: Transport) -> Generation:
        pid_path = self.pid_path(transport)
        raw = transport.read_file(pid_path)
        text = raw.decode("ascii", "replace").strip() if raw else ""
        if not text.isdigit():
            raise ReloadFailed(f"nginx is not running on {transport.where}: no master pid in {pid_path}")
        master = int(text)
        listed = transport.run(["ps", "-o", "pid=,args=", "--ppid", str(master)], timeout=10)
        if listed.code == 127:
            raise ConfigError(f"confirming an nginx reload needs `ps` on {transport.where}")
        workers = set()
        for line in listed.stdout.splitlines():
            pid, _, args = line.strip().partition(" ")
            if pid.isdigit() and "worker process" in args and _SHUTTING_DOWN not in args:
                workers.add(int(pid))
        alive = transport.run(["kill", "-0", str(master)], timeout=10)
        if alive.code != 0 and not workers:
            raise ReloadFailed(f"the nginx master (pid {master} from {pid_path}) is not running")
        return Generation(master, frozenset(workers))

    # -- paths the running nginx uses ---------------------------------------------------

    def build_options(self, transport: Transport) -> dict[str, str]:
        """`nginx -V`'s compiled-in defaults (prefix, pid path), read once."""
        if self._build is None:
            result = transport.run(["nginx", "-V"], timeout=10)
            self._build = dict(_BUILD_OPTION.findall(result.output))
        return self._build

    def prefix(self, transport: Transport) -> str:
        return self.target.prefix or self.build_options(transport).get("prefix", "/usr/share/nginx")

    def resolve(self, transport: Transport, path: str) -> str:
        return path if path.startswith("/") else posixpath.join(self.prefix(transport), path)

    def live_view(self, transport: Transport) -> LiveView | None:
        raw = transport.read_file(self.target.path or "") if self.target.path else None
        if raw is None:
            return None
        return read_view(raw.decode("utf-8", "replace"), filename=self.target.path or "nginx.conf")

    def pid_path(self, transport: Transport) -> str:
        view = self.live_view(transport)
        pid = view.pid if view and view.pid else self.build_options(transport).get("pid-path", "/run/nginx.pid")
        return self.resolve(transport, pid)

    # -- what the running nginx holds (lbctl.kinds.conformance) -------------------------------

    def config_origin(self, transport: Transport) -> Origin:
        """The `-c` file on the master's command line (nginx shows it in its process title)."""
        from lbctl.kinds.conformance import absolute, judge, origin_unknown, read_started

        try:
            master = self.generation(transport).master
        except (ReloadFailed, ConfigError) as exc:
            return origin_unknown(str(exc))
        started = read_started(transport, self.target, master, f"master pid {master}")
        if started is None:
            return origin_unknown(f"cannot read the command line of nginx's master (pid {master})")
        words = " ".join(started.argv).split()  # "nginx: master process /usr/sbin/nginx -c FILE"
        conf = prefix = None
        for i, word in enumerate(words):
            for flag in ("-c", "-p"):
                if word == flag and i + 1 < len(words):
                    value: str | None = words[i + 1]
                elif word.startswith(flag) and len(word) > 2:
                    value = word[2:]
                else:
                    continue
                if flag == "-c":
                    conf = value
                else:
                    prefix = value
        build = self.build_options(transport)
        conf = conf or build.get("conf-path", "conf/nginx.conf")
        base = prefix or build.get("prefix", "/usr/share/nginx")
        origin = judge(transport, self.target, started, [absolute(conf, base)])
        cut = origin.matches is False and (self.target.path or "").startswith(origin.files[0])
        if cut and transport.run(["test", "-e", origin.files[0]], timeout=10).code != 0:
            # nginx's title is cut to the size of its original argv and environment: a cut path proves nothing.
            return origin_unknown(f"nginx's process title shows a cut path ({origin.files[0]})")
        return origin

    def conformance(self, transport: Transport, deployed: Bundle) -> Conformance:
        """The current worker generation started after the config files last changed."""
        from datetime import UTC, datetime

        from lbctl.kinds.conformance import Conformance, unknown

        try:
            generation = self.generation(transport)
        except (ReloadFailed, ConfigError) as exc:
            return unknown(str(exc))
        if not generation.workers or not self.target.path:
            return unknown("nginx runs no workers")
        base = posixpath.dirname(self.target.path)
        files = [self.target.path, *(posixpath.join(base, rel) for rel in deployed.rels)]
        workers = " ".join(str(p) for p in sorted(generation.workers))
        result = transport.run(["sh", "-c", _AGES, "lbctl-ages", workers, *files], timeout=15)
        head, _, tail = result.stdout.partition("--\n")
        lines = head.split()
        try:
            now, uptime, tick = float(lines[0]), float(lines[1]), float(lines[2])
            starts = [now - uptime + int(t) / tick for t in lines[3:] if t.isdigit()]
            changed = {name: float(at) for at, _, name in (line.partition(" ") for line in tail.splitlines())}
        except (ValueError, IndexError):
            return unknown(f"cannot read the workers' start times on {transport.where}: {result.output[:200]}")
        if not starts or not changed:
            return unknown("cannot read the workers' start times or the config files' times")
        oldest, (name, newest) = min(starts), max(changed.items(), key=lambda kv: kv[1])
        how = f"worker generation {workers} under master {generation.master}"
        if oldest + _SLACK >= newest:
            return Conformance(True, (), f"{how} started after its config files last changed")

        def clock(at: float) -> str:
            return datetime.fromtimestamp(at, tz=UTC).strftime("%H:%M:%S.%f")[:-3] + " UTC"

        return Conformance(
            True,
            (
                f"nginx's workers started {clock(oldest)}, before {name} changed ({clock(newest)}): "
                "nginx runs the config it loaded before that (no reload since)",
            ),
            how,
        )

    # -- traffic -------------------------------------------------------------------------

    def balance_algorithms(self, transport: Transport) -> dict[str, str]:
        view = self.live_view(transport)
        return {name: algorithm(u) for name, u in view.upstreams.items()} if view else {}

    def traffic_snapshot(self, transport: Transport) -> Snapshot:
        """Counts from the access log since the anchor (see `lbctl.kinds.nginx_traffic`).

        A new worker generation (a reload) moves the anchor to the end of the log: from then
        on, only requests the new config served are counted.
        """
        view = self.live_view(transport)
        if view is None:
            raise ConfigError(f"targets.{self.target.name}: no nginx config at {self.target.path} to read")
        log, pattern = pick_log(view, self.target.access_log, self.target.name)
        path = self.resolve(transport, log)
        cursor = self._cursor
        offset = cursor.offset if cursor is not None and cursor.path == path else 0
        generation = self._generation_key(transport)
        file_id, size, text = self._read_log(transport, path, offset)
        same_file = cursor is not None and cursor.path == path and cursor.file_id == file_id
        if cursor is not None and same_file and size >= cursor.offset and cursor.generation != generation:
            # A reload since the last read: lines so far mix the old config's traffic with the
            # new one's, so counting starts again here (as HAProxy's counters do with a new worker).
            end = offset + len(text[: text.rfind("\n") + 1].encode())
            cursor = self._cursor = _LogCursor(path, file_id, end, end, Tally(), generation)
            return cursor.tally.snapshot(f"{cursor.file_id}@{cursor.anchor}", view)
        fresh = cursor is None or cursor.path != path
        rotated = cursor is not None and not fresh and (cursor.file_id != file_id or size < cursor.offset)
        if cursor is None or fresh or rotated:
            # First read: anchor a little before the end, so the spread before the change is known.
            # A rotated or truncated log: every line of the new file is new.
            anchor = 0 if rotated else max(0, size - TAIL_BYTES)
            if anchor != offset:
                file_id, size, text = self._read_log(transport, path, anchor)
            if anchor:  # drop the partial line we landed in
                cut = text.find("\n") + 1
                anchor += len(text[:cut].encode())
                text = text[cut:]
            cursor = self._cursor = _LogCursor(path, file_id, anchor, anchor, Tally(), generation)
        complete = text[: text.rfind("\n") + 1]
        cursor.tally.add_lines(complete, pattern, view)
        cursor.offset += len(complete.encode())
        return cursor.tally.snapshot(f"{cursor.file_id}@{cursor.anchor}", view)

    def _generation_key(self, transport: Transport) -> str:
        try:
            gen = self.generation(transport)
        except (ReloadFailed, ConfigError):
            return ""
        return f"{gen.master}:{','.join(str(p) for p in sorted(gen.workers))}"

    def _read_log(self, transport: Transport, path: str, offset: int) -> tuple[str, int, str]:
        """The log's identity and size, and its bytes from `offset`, in one round trip."""
        script = 'stat -L -c "%d:%i %s" -- "$1" || exit 3; tail -c "+$2" -- "$1"'
        result = transport.run(["sh", "-c", script, "sh", path, str(offset + 1)], timeout=30)
        head, _, rest = result.stdout.partition("\n")
        fields = head.split()
        if result.code != 0 or len(fields) != 2 or not fields[1].isdigit():
            raise ConfigError(
                f"targets.{self.target.name}: cannot read nginx's access log {path} on {transport.where}: "
                f"{result.stderr.strip()[:200] or 'no such file'}",
                hint="nginx creates it when it starts with the access_log directive; check the path and prefix",
            )
        return fields[0], int(fields[1]), rest
