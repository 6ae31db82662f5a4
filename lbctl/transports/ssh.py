"""The `ssh` transport: the load balancer is reached over one paramiko connection.

Behaves like OpenSSH: host keys are checked against known_hosts (unknown → refused unless
`LBCTL_SSH_TRUST_NEW=1`, changed → refused), `~/.ssh/config`, identity files and ssh-agent
are honoured (`ssh_config` resolves the route, `ssh_connect` logs in). One connection serves
the whole operation; its socket has TCP_NODELAY (paramiko leaves Nagle on: ~40 ms per round trip).

Remote commands are argument lists joined with `shlex.quote`; the few multi-step actions
(read, upload, swap, restore, lock) are constant `sh -c` scripts that take every value as a
positional argument, so no path, name or message is ever parsed as shell code.

Round trips, not bytes, are what an operator pays over a VPN (PRODUCT.md §6), so every step is
one command on one session channel, and a command costs one round trip: the channel it runs on
was opened in the background while the previous command ran (a spare), and its `exec` request,
its stdin and its end-of-input leave together, without waiting for the server to accept the
request first (a refused request closes the channel, which reads as a lost connection). Files
are read with `cat` and written with `cat >` plus the written file's sha256 in the same command,
not over SFTP, where opening, reading, closing and checking a file take a round trip each.

Retries: a dropped connection, a refused or reset connect, a timeout or a closed channel is a
`TransientError`; each step reconnects and retries under `retry.network(target.retries)`.
Every step is safe to repeat: an upload rewrites the staged file from scratch, a swap whose
staged file is gone checks that the live file already holds the staged bytes, restore and
remove are idempotent. Host-key and authentication failures are `LbctlError`s, never retried.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import re
import secrets
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from lbctl import retry
from lbctl.config import Target
from lbctl.errors import (
    AuthenticationFailed,
    CommandFailed,
    ConfigError,
    DiskFull,
    HostKeyChanged,
    HostKeyUnknown,
    LbctlError,
    Locked,
    RemoteFileError,
    TransientError,
)
from lbctl.lock import describe_holder, holder_is_gone
from lbctl.transports.base import SOCKET_UNAVAILABLE, RunResult, SocketUnavailable, Transport
from lbctl.transports.ssh_config import Route, resolve
from lbctl.transports.ssh_connect import (
    TRUST_NEW_ENV,
    connect,
    tunnel,
)

if TYPE_CHECKING:
    import paramiko

__all__ = [
    "TRUST_NEW_ENV",
    "AuthenticationFailed",
    "HostKeyChanged",
    "HostKeyUnknown",
    "RemoteFileError",
    "SshTransport",
]
T = TypeVar("T")

# A lock older than this is reported as probably stale (no operation takes this long).
STALE_LOCK_SECONDS = 15 * 60
# socat parses its address (`unix-connect:PATH,option...`); allow only plain path characters.
_SOCAT_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./@+=-]+$")
# Appended, not prepended: the user's PATH wins, but haproxy in /usr/sbin is found for non-root users.
_PATH_PREFIX = 'PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; export PATH; '

_SWAP = r"""
staged=$1 path=$2 keep=$3
[ -f "$staged" ] || exit 3
if [ -e "$path" ] && ! [ "$path" -ef "$keep" ]; then
  ln -f -- "$path" "$keep.lbctl-tmp" && mv -f -- "$keep.lbctl-tmp" "$keep" || exit 5
fi
sync -- "$staged" 2>/dev/null
mv -f -- "$staged" "$path" || exit 5
"""
_RESTORE = r"""
keep=$1 path=$2
[ -f "$keep" ] || { echo "no kept file $keep" >&2; exit 3; }
[ "$keep" -ef "$path" ] && exit 0  # restored already (a repeat): mv would refuse two names of one file
ln -f -- "$keep" "$path.lbctl-restore" && mv -f -- "$path.lbctl-restore" "$path"
"""
_UNLOCK = r"""
dir=$1 info=$2
[ "$(cat -- "$dir/info" 2>/dev/null)" = "$info" ] || exit 0
rm -rf -- "$dir"
"""
_HOLDER = r"""
dir=$1
[ -d "$dir" ] || exit 0
now=$(date +%s)
echo $((now - $(stat -c %Y -- "$dir" 2>/dev/null || echo "$now")))
cat -- "$dir/info" 2>/dev/null
exit 75
"""
# Prints nothing and exits 44 when the file does not exist: read_file's None.
_READ = r"""
[ -e "$1" ] || exit 44
exec cat -- "$1"
"""
# Writes stdin to $1 whole (a retry truncates and starts again), with the mode of $2 (else 0644),
# then prints the written file's sha256: what landed is compared with what was sent. (The bytes go
# as stdin, never as an argument: another user of the LB host could read them in the process list.)
_PUT = r"""
dest=$1 like=$2 make=$3 dir=$4
if ! mode=$(stat -c %a -- "$like" 2>/dev/null); then
  mode=644
  [ -z "$make" ] || [ -d "$make" ] || mkdir -p -- "$make" || exit 4
fi
[ -d "$dir" ] || { echo "its directory is missing" >&2; exit 3; }
cat > "$dest" || exit 6
chmod "$mode" -- "$dest" && sha256sum < "$dest"
"""
_REMOVE = r"""
[ -e "$1" ] || [ -L "$1" ] || exit 0
rm -f -- "$1"
"""
# One line to a UNIX socket, and the whole answer: $1 timeout, $2 socket path, $3 the line.
_SOCAT = r"""
printf '%s\n' "$3" | socat -t "$1" -T "$1" stdio "unix-connect:$2"
"""
# Runs the command lbctl asked for, then (only if it succeeded) the reads announced by `read_ahead`,
# each framed as "CODE OUT_BYTES ERR_BYTES\n" + stdout + stderr. The commands follow as lines
# `one ARGV...`, each argument quoted by shlex.
_AHEAD = r"""
t=$(mktemp -d) || exit 70
trap 'rm -rf -- "$t"' EXIT
one() {
  "$@" > "$t/o" 2> "$t/e" < /dev/null
  c=$?
  printf '%s %s %s\n' "$c" $(wc -c < "$t/o") $(wc -c < "$t/e")
  cat -- "$t/o" "$t/e"
  return "$c"
}
"""
# An answer read ahead is served to its first asking only this long after it was read.
AHEAD_SECONDS = 5.0
_FREE_BYTES = r"""
stat -f -c '%a %S' -- "$1"
"""
# The lock directory is made under a name of this operation's own, with its info, and renamed to
# the lock's name: never without its info, and refused while the lock exists with an info in it.
# (Without `mv -T`, BusyBox's mv, a plain rename once the lock is seen absent.)
_LOCK = r"""
dir=$1 info=$2 mine=$3
rm -rf -- "$mine"
if ! { mkdir -- "$mine" && printf '%s\n' "$info" > "$mine/info"; }; then
  rm -rf -- "$mine"; exit 2
fi
mv -T -- "$mine" "$dir" 2>/dev/null && exit 0
[ -e "$dir" ] || { mv -- "$mine" "$dir" && exit 0; }
rm -rf -- "$mine"
[ -d "$dir" ] || { echo "$dir is not a directory" >&2; exit 2; }
now=$(date +%s)
echo $((now - $(stat -c %Y -- "$dir" 2>/dev/null || echo "$now")))
cat -- "$dir/info" 2>/dev/null
exit 75
"""


class _Final(Exception):
    """Carries a `TransientError` through `retry.call` without being retried (a command timed out)."""

    def __init__(self, error: TransientError) -> None:
        super().__init__(str(error))
        self.error = error


class SshTransport(Transport):
    name = "ssh"
    # Connections started by `connect_ahead`, by target name, until a transport takes one over.
    _ahead: ClassVar[dict[str, tuple[SshTransport, threading.Thread]]] = {}
    _ahead_lock: ClassVar[threading.Lock] = threading.Lock()  # an early attempt's end vs its abandonment

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self._route: Route | None = None
        self._clients: list[paramiko.SSHClient] = []  # jump hosts first, the target last
        self._spare: _Spare | None = None  # the session channel the next command runs on, opening
        self._reads_ahead: list[list[str]] = []  # commands to run with the next one (`read_ahead`)
        self._answers: dict[tuple[str, ...], tuple[float, int, bytes, bytes]] = {}  # their answers, by argv
        self._stage_token = secrets.token_hex(4)
        self._staged: dict[str, tuple[int, bytes]] = {}  # staged path → (size, sha256) of what we uploaded
        self._early_error: Exception | None = None  # how a connection started ahead failed
        self._early_done = False  # the early attempt ended (connected or not)
        self._early_abandoned = False  # nobody will take it over: whoever comes last closes it
        self.took_over: str | None = None  # the dead holder whose LB lock `lock` broke to take it

    # -- connection ------------------------------------------------------------------

    @property
    def route(self) -> Route:
        if self._route is None:
            t = self.target
            self._route = resolve(
                t.host or "",
                port=t.port,
                user=t.user,
                identity_file=t.identity_file,
                known_hosts=t.known_hosts,
                proxy_jump=t.proxy_jump,
            )
        return self._route

    @property
    def where(self) -> str:
        return self.route.where

    @classmethod
    def connect_ahead(cls, target: Target) -> None:
        """Start connecting (and opening a session channel) in the background while the caller reads the store.

        The next transport opened for the same target takes the connection over. A failed early
        attempt counts as that transport's first attempt: its error is raised there, where the
        operation's retry policy decides (an unreachable LB is not tried once more than before).
        """
        if target.name in cls._ahead:
            return
        early = cls(target)
        try:
            # paramiko's import is CPU work: done here, so that the thread's share is the
            # handshake, which waits on the network while the caller goes on loading.
            early.route  # noqa: B018
        except Exception:  # reported by the transport that connects for real
            return

        def connect() -> None:
            try:
                early._connect()
                early._ready()
            except Exception as exc:  # raised by the transport that takes this attempt over
                early._drop()
                if not isinstance(exc, LbctlError | TransientError) and _is_connection_error(exc):
                    # paramiko's EOFError would escape as click's "aborted" (exit 130): it is a lost link
                    exc = TransientError(f"{early.where}: {_describe(exc)}")
                early._early_error = exc
            with cls._ahead_lock:
                early._early_done = True
                if early._early_abandoned:
                    early._drop()

        thread = threading.Thread(target=connect, name=f"lbctl-ssh-{target.name}", daemon=True)
        cls._ahead[target.name] = (early, thread)
        thread.start()

    @classmethod
    def release_ahead(cls) -> None:
        """Close the connections started ahead that no transport took over (the command ended first)."""
        while cls._ahead:
            _, (early, _thread) = cls._ahead.popitem()
            early._abandon()

    def _abandon(self) -> None:
        """Close this early connection now, or let its thread close it when it ends."""
        with self._ahead_lock:
            self._early_abandoned = True
            if self._early_done:
                self._drop()

    def _take_over_early(self) -> bool:
        found = self._ahead.pop(self.target.name, None)
        if found is None:
            return False
        early, thread = found
        if early.target != self.target:  # the same name, other settings: not this connection
            early._abandon()
            return False
        # Each hop may take a timeout to connect, one for the banner, one to log in and one for
        # SFTP; past that the attempt hangs, and this transport connects by itself.
        thread.join(4 * (len(early.route.jumps) + 1) * self.target.connect_timeout + 1)
        if thread.is_alive():
            early._abandon()
            return False
        if early._early_error is not None:
            raise early._early_error  # this attempt's outcome
        if not early._clients or not early._alive():
            return False
        self._route, self._clients, self._spare = early._route, early._clients, early._spare
        early._clients, early._spare = [], None
        return True

    def open(self) -> None:
        if self._clients and self._alive():
            return
        self._drop()
        if not self._take_over_early():
            self._connect()

    def _connect(self) -> None:
        route = self.route
        sock: Any = None
        try:
            for endpoint in (*route.jumps, route.target):
                client = connect(endpoint, sock, self.target.connect_timeout)
                self._clients.append(client)
                sock = None
                if endpoint is not route.target:
                    sock = tunnel(client, route.jumps, route.target, endpoint, self.target.connect_timeout)
        except BaseException:
            self._drop()
            raise

    def close(self) -> None:
        self._drop()

    def _alive(self) -> bool:
        transport = self._clients[-1].get_transport()
        return transport is not None and transport.is_active()

    def _drop(self) -> None:
        self._spare = None  # its channel closes with the connection
        for client in reversed(self._clients):
            with contextlib.suppress(Exception):
                client.close()
        self._clients = []

    def _client(self) -> paramiko.SSHClient:
        self.open()
        return self._clients[-1]

    def _ready(self) -> None:
        """Open the session channel the first command will run on (the connection ahead does it)."""
        transport = self._client().get_transport()
        if transport is None:
            raise EOFError("the connection closed")
        self._spare = _Spare.opened(transport.open_session(timeout=self.target.connect_timeout))

    def _session(self) -> Any:
        """A session channel for one command: the spare, else a new one; the next spare starts opening
        now, so its round trip overlaps this command's instead of adding one."""
        transport = self._client().get_transport()
        if transport is None:
            raise EOFError("the connection closed")
        spare, self._spare = self._spare, None
        channel = spare.take(transport, self.target.connect_timeout) if spare is not None else None
        if channel is None:
            channel = transport.open_session(timeout=self.target.connect_timeout)
        self._spare = _Spare.opening(transport, self.target.connect_timeout)
        return channel

    def _step(self, what: str, fn: Callable[[], T]) -> T:
        """Run one step, reconnecting and retrying it when the connection fails."""

        def attempt() -> T:
            try:
                return fn()
            except (TransientError, LbctlError, FileNotFoundError, _Final):
                raise
            except _FILE_ERRORS as exc:
                raise RemoteFileError(
                    f"{what} on {self.where}: {exc.strerror or exc}",
                    hint=f"check that {self.route.target.user} may write there",
                ) from None
            except Exception as exc:
                if not _is_connection_error(exc):
                    raise
                self._drop()
                raise TransientError(f"{self.where}: {what}: {_describe(exc)}") from None

        try:
            return retry.call(retry.network(self.target.retries), attempt)
        except _Final as exc:
            raise exc.error from None

    # -- commands --------------------------------------------------------------------

    def run(self, argv: Sequence[str], *, check: bool = False, timeout: float = 60.0) -> RunResult:
        """Run argv on the host; re-run on a lost connection (commands lbctl runs are idempotent)."""
        if not argv:
            raise ValueError("empty argv")
        result = self._step(argv[0], lambda: self._exec(argv, b"", timeout))
        if check and result.code != 0:
            raise CommandFailed(list(argv), result.code, result.stdout, result.stderr)
        return result

    def _exec(self, argv: Sequence[str], stdin: bytes, timeout: float) -> RunResult:
        code, out, err = self._call(argv, stdin, timeout)
        return RunResult(tuple(argv), code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def read_ahead(self, *, files: Sequence[str] = (), requests: Sequence[tuple[str, str]] = ()) -> None:
        """Run these reads with the next command (the LB lock), if it succeeds; each answer is then
        served once, to the same read asked within `AHEAD_SECONDS`, unless lbctl wrote to the LB since."""
        self._reads_ahead = [_read_argv(f) for f in files]
        self._reads_ahead += [_socket_argv(sock, line, 5.0) for sock, line in requests if _SOCAT_SAFE_PATH.match(sock)]

    def _forget(self) -> None:
        """lbctl is writing to the LB: answers read before are no longer served."""
        self._answers.clear()

    def _call(self, argv: Sequence[str], stdin: bytes, timeout: float) -> tuple[int, bytes, bytes]:
        """Run argv with `stdin`; (exit code, stdout, stderr) as bytes. One round trip on a ready channel."""
        if not stdin:
            answer = self._answers.pop(tuple(argv), None)
            if answer is not None and time.monotonic() - answer[0] <= AHEAD_SECONDS:
                return answer[1:]
            ahead, self._reads_ahead = self._reads_ahead, []
            if ahead:
                return self._call_ahead(argv, ahead, timeout)
        return self._call_one(argv, stdin, timeout)

    def _call_ahead(self, argv: Sequence[str], ahead: list[list[str]], timeout: float) -> tuple[int, bytes, bytes]:
        first, *reads = (f"one {shlex.join(command)}" for command in [argv, *ahead])
        script = f"{_AHEAD}{first} || exit 0\n" + "".join(f"{read}\n" for read in reads)
        code, out, _ = self._call_one(["sh", "-c", script, "lbctl-ahead"], b"", timeout + 10 * len(ahead))
        frames = _frames(out) if code == 0 else []
        if not frames:  # no mktemp there, or a garbled answer: the command alone (lbctl's are idempotent)
            return self._call_one(argv, b"", timeout)
        read_at = time.monotonic()
        for command, frame in zip(ahead, frames[1:], strict=False):
            self._answers[tuple(command)] = (read_at, *frame)
        return frames[0]

    def _call_one(self, argv: Sequence[str], stdin: bytes, timeout: float) -> tuple[int, bytes, bytes]:
        command = _PATH_PREFIX + "exec " + shlex.join(argv)
        channel = self._session()
        try:
            _start(channel, command)
            _feed(channel, stdin, timeout, argv[0])
            channel.shutdown_write()
            out, err = _drain(channel, timeout, argv[0])
            code = channel.recv_exit_status()
        finally:
            channel.close()
        if code == -1:  # the channel closed without an exit status: the session went away (or refused the exec)
            raise EOFError("the remote command ended without an exit status")
        return code, out, err

    def _script(self, script: str, args: Sequence[str], what: str) -> RunResult:
        return self._step(what, lambda: self._exec(["sh", "-c", script, f"lbctl-{what}", *args], b"", 30.0))

    # -- files -----------------------------------------------------------------------

    def read_file(self, path: str) -> bytes | None:
        def read() -> bytes | None:
            code, out, err = self._call(_read_argv(path), b"", 60.0)
            if code == 44:
                return None
            if code != 0:
                said = err.decode("utf-8", "replace").strip()
                if "No such file" in said:  # removed between the test and the read
                    return None
                raise RemoteFileError(f"read {path} on {self.where}: {said or f'exit {code}'}")
            return out

        return self._step("read " + path, read)

    def write_staged(self, path: str, data: bytes) -> str:
        directory, name = posixpath.split(path)
        staged = posixpath.join(directory, f".{name}.lbctl-stage-{self._stage_token}")

        def upload() -> str:
            self._upload(staged, data, like=path, make_directory=directory or ".")
            return staged

        self._staged[staged] = (len(data), hashlib.sha256(data).digest())
        try:
            return self._step("upload to " + staged, upload)
        except BaseException:
            with contextlib.suppress(Exception):  # a partial file must not stay; else the next operation sweeps
                self._call(["sh", "-c", _REMOVE, "lbctl-remove", staged], b"", 30.0)
            raise

    def put_file(self, path: str, data: bytes, *, like: str) -> None:
        self._step("upload to " + path, lambda: self._upload(path, data, like=like))

    def _upload(self, dest: str, data: bytes, *, like: str, make_directory: str | None = None) -> None:
        """One command: stdin written whole to `dest` (a retry truncates it), its mode set, its sha256
        printed, which proves every byte landed as sent before anything validates or swaps it."""
        self._forget()
        argv = ["sh", "-c", _PUT, "lbctl-put", dest, like, make_directory or "", posixpath.dirname(dest) or "."]
        code, out, err = self._call(argv, data, 60.0 + len(data) / 100_000)
        said = err.decode("utf-8", "replace").strip()
        if code in (3, 4) or (code != 0 and "No such file" in said):
            raise RemoteFileError(f"cannot create {dest} on {self.where}: its directory is missing")
        if code != 0 and "Permission denied" in said:
            raise RemoteFileError(
                f"upload to {dest} on {self.where}: {said}", hint=f"check that {self.route.target.user} may write there"
            )
        if code != 0 or out.split(b" ", 1)[0].decode("ascii", "replace") != hashlib.sha256(data).hexdigest():
            self._if_disk_full(dest, len(data))  # `cat` says "No space left on device"; measured to be sure
            raise EOFError(f"staged {dest} does not hold the {len(data)} bytes sent (exit {code}: {said[-200:]})")

    def _if_disk_full(self, dest: str, size: int) -> None:
        """Raise `DiskFull` when the filesystem of `dest` has no room for `size` bytes."""
        try:
            with contextlib.suppress(Exception):  # the staged part takes room: measure without it
                self._call(["sh", "-c", _REMOVE, "lbctl-remove", dest], b"", 30.0)
            free = self._exec(["sh", "-c", _FREE_BYTES, "lbctl-df", posixpath.dirname(dest) or "."], b"", 30.0)
            available, block = (int(x) for x in free.stdout.split()[:2])
        except Exception:  # cannot tell: the write's own error is reported
            return
        if available * block < size + 4096:
            raise DiskFull(
                f"the LB's disk is full: {posixpath.dirname(dest)} on {self.where} has "
                f"{available * block} bytes free, the candidate needs {size}: nothing was changed",
                hint="free space on the LB host, then run the same command again",
            )

    def swap(self, staged: str, path: str, keep: str) -> None:
        _, digest = self._staged.get(staged, (-1, b""))
        self._forget()
        result = self._script(_SWAP, [staged, path, keep], "swap")
        if result.code == 3 and digest:
            live = self.read_file(path)
            if live is not None and hashlib.sha256(live).digest() == digest:
                return  # an earlier attempt renamed it and lost the answer: done, and keep is untouched
        if result.code != 0:
            raise OSError(f"swap on {self.where} failed (exit {result.code}): {result.output or 'staged file gone'}")

    def restore(self, keep: str, path: str) -> None:
        self._forget()
        result = self._script(_RESTORE, [keep, path], "restore")
        if result.code != 0:
            raise OSError(f"restore on {self.where} failed (exit {result.code}): {result.output or 'no output'}")

    def remove(self, path: str) -> None:
        self._forget()
        result = self._script(_REMOVE, [path], "remove")
        if result.code != 0:
            raise RemoteFileError(f"remove {path} on {self.where}: {result.output or f'exit {result.code}'}")

    # -- sockets and locks -------------------------------------------------------------

    def unix_request(self, socket_path: str, command: str, *, timeout: float = 5.0) -> str:
        if not _SOCAT_SAFE_PATH.match(socket_path):
            raise ConfigError(
                f"socket path {socket_path!r} has characters socat would parse",
                hint="use a socket path of letters, digits and ./_-@+= only",
            )
        # The command goes as an argument, not as stdin: sshd opens a channel's input only once the
        # command started (a round trip more). socat half-closes the socket when printf's output
        # ends: HAProxy's master CLI needs that EOF.
        argv = _socket_argv(socket_path, command, timeout)
        if tuple(argv) not in self._answers:
            self._forget()  # a line not read ahead may change the LB ("reload", "set weight")
        result = self._step("socat", lambda: self._exec(argv, b"", timeout + 5))
        if result.code == 127:
            raise ConfigError(
                f"socat is not installed on {self.where}", hint="install socat there (apt-get install socat)"
            )
        if result.code != 0:
            said = result.stderr.strip()[-300:]
            reason = next((r for r in SOCKET_UNAVAILABLE if r.lower() in said.lower()), None)
            if reason is not None:
                raise SocketUnavailable(f"{socket_path} on {self.where}: {said}", reason)
            raise TransientError(f"{socket_path} on {self.where}: {said}")
        return result.stdout

    @contextlib.contextmanager
    def lock(self, name: str, info: str) -> Iterator[None]:
        """A lock directory beside the config, never without its `info`; it survives a reconnect.

        One command (`_LOCK`): `info` is written into a directory of this operation's own, which is
        then renamed to the lock's name (atomic, and refused when the lock is held, whose holder and
        age by the host's clock come back instead). A retry that finds its own `info` there knows
        the lost answer was a success. Released by one remote command, so a cut connection cannot
        leave an empty lock behind.
        """
        directory = name + ".d"
        mine = f"{directory}.{self._stage_token}"
        for attempt in range(2):
            result = self._script(_LOCK, [directory, info, mine], "lock")
            if result.code == 75:
                age_text, _, holder = result.stdout.partition("\n")
                if holder.strip() == info:  # our own first attempt took it and lost the answer
                    break
                if attempt == 0 and _holder_is_dead_here(holder.strip()):
                    # Its holder was an lbctl on this machine that died: no one can be using it.
                    self._script(_UNLOCK, [directory, holder.strip()], "unlock")
                    self.took_over = describe_holder(holder)
                    continue
                raise self._locked(directory, holder, age_text)
            if result.code != 0:
                said = result.output
                if "No such file" in said:
                    said = "its directory is missing"
                raise RemoteFileError(f"cannot take the lock {directory} on {self.where}: {said}")
            break
        try:
            yield
        finally:
            self._forget()
            with contextlib.suppress(TransientError):
                self._script(_UNLOCK, [directory, info], "unlock")

    def lock_holder(self, name: str) -> tuple[str, int | None] | None:
        """(holder line, age in seconds by the host's clock) of the lock `name`, or None if free."""
        result = self._script(_HOLDER, [name + ".d"], "lock-holder")
        if result.code != 75:
            return None
        age_text, _, holder = result.stdout.partition("\n")
        age = int(age_text) if age_text.strip().lstrip("-").isdigit() else None
        return holder.strip(), age

    def break_lock(self, name: str, holder: str) -> bool:
        """Remove the lock `name` if `holder` still holds it; True if it is gone now."""
        self._script(_UNLOCK, [name + ".d", holder], "unlock")
        return self.lock_holder(name) is None

    def _locked(self, directory: str, holder: str, age_text: str) -> Locked:
        age = int(age_text) if age_text.strip().lstrip("-").isdigit() else None
        since = f", taken {age} s ago" if age is not None else ""
        stale = age is not None and age > STALE_LOCK_SECONDS
        if _holder_is_dead_here(holder):
            stale = True
        breaker = f"`lbctl unlock {self.target.name}`"
        if stale:
            hint = f"this lock looks stale (its holder is gone or it is too old); if so, break it: {breaker}"
        else:
            hint = f"wait for that operation to finish; if its holder is gone, break the lock: {breaker}"
        return Locked(f"locked on {self.where}: {describe_holder(holder)}{since}", hint=hint)


# -- helpers ---------------------------------------------------------------------------

_LINGER = 1.0  # seconds a command's output may go on after its exit status without an EOF
_FILE_ERRORS: tuple[type[OSError], ...] = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def _read_argv(path: str) -> list[str]:
    return ["sh", "-c", _READ, "lbctl-read", path]


def _socket_argv(socket_path: str, line: str, timeout: float) -> list[str]:
    return ["sh", "-c", _SOCAT, "lbctl-socat", f"{timeout:g}", socket_path, line.rstrip("\n")]


def _frames(out: bytes) -> list[tuple[int, bytes, bytes]]:
    """The (code, stdout, stderr) of each command `_AHEAD` ran; [] if the answer does not parse."""
    frames = []
    at = 0
    while at < len(out):
        end = out.find(b"\n", at)
        fields = out[at:end].split() if end >= 0 else []
        if len(fields) != 3 or not all(f.lstrip(b"-").isdigit() for f in fields):
            return []
        code, n_out, n_err = (int(f) for f in fields)
        body = out[end + 1 : end + 1 + n_out + n_err]
        if len(body) != n_out + n_err:
            return []
        frames.append((code, body[:n_out], body[n_out:]))
        at = end + 1 + n_out + n_err
    return frames


class _Spare:
    """A session channel being opened in a thread, for the next command (None if that failed)."""

    def __init__(self, transport: Any, thread: threading.Thread | None, box: list[Any]) -> None:
        self.transport, self.thread, self.box = transport, thread, box

    @classmethod
    def opened(cls, channel: Any) -> _Spare:
        return cls(channel.get_transport(), None, [channel])

    @classmethod
    def opening(cls, transport: Any, timeout: float) -> _Spare:
        box: list[Any] = []

        def open_one() -> None:
            with contextlib.suppress(Exception):  # the command that wanted it opens its own
                box.append(transport.open_session(timeout=timeout))

        thread = threading.Thread(target=open_one, name="lbctl-ssh-channel", daemon=True)
        thread.start()
        return cls(transport, thread, box)

    def take(self, transport: Any, timeout: float) -> Any:
        """The channel, if it opened on this connection and is still usable; else None."""
        if transport is not self.transport:
            return None
        if self.thread is not None:
            self.thread.join(timeout + 1)
        channel = self.box[0] if self.box else None
        if channel is None or channel.closed or not channel.active:
            return None
        return channel


def _start(channel: Any, command: str) -> None:
    """`channel.exec_command(command)` without waiting for the server's answer to it (a round trip):
    stdin follows at once. A refused request closes the channel, seen as a command without an exit
    status. (paramiko's own message, want_reply and all, sent as `Channel.exec_command` does.)"""
    from paramiko.common import cMSG_CHANNEL_REQUEST
    from paramiko.message import Message

    m = Message()
    m.add_byte(cMSG_CHANNEL_REQUEST)
    m.add_int(channel.remote_chanid)
    m.add_string("exec")
    m.add_boolean(True)
    m.add_string(command)
    channel._event_pending()
    channel.transport._send_user_message(m)


def _feed(channel: Any, data: bytes, timeout: float, what: str) -> None:
    """Send `data` as the command's stdin; stop early if the command ends first (it read no more)."""
    sent = 0
    deadline = time.monotonic() + timeout
    while sent < len(data):
        if channel.closed or channel.exit_status_ready():
            return
        if channel.send_ready():
            try:
                sent += channel.send(data[sent : sent + 32768])
            except OSError:
                if channel.exit_status_ready():  # it ended meanwhile: its exit status tells why
                    return
                raise
            continue
        if time.monotonic() > deadline:
            raise _Final(TransientError(f"{what} did not take its input within {timeout:.0f} s"))
        time.sleep(0.001)


def _drain(channel: Any, timeout: float, what: str) -> tuple[bytes, bytes]:
    """Read stdout and stderr together until their end (no deadlock on a full stderr).

    sshd may send the exit status before the last of a big output (a file read with `cat`): the end
    is the channel's EOF. A command whose background child keeps the output open (no EOF) ends
    `_LINGER` seconds after its exit status with nothing more coming.
    """
    out: list[bytes] = []
    err: list[bytes] = []
    deadline = time.monotonic() + timeout
    exited_at: float | None = None
    while True:
        got = False
        while channel.recv_ready():
            out.append(channel.recv(65536))
            got = True
        while channel.recv_stderr_ready():
            err.append(channel.recv_stderr(65536))
            got = True
        if got:
            exited_at = None
        idle = not channel.recv_ready() and not channel.recv_stderr_ready()
        if idle and (channel.eof_received or channel.closed):
            break
        if idle and channel.exit_status_ready():
            exited_at = exited_at or time.monotonic()
            if time.monotonic() - exited_at >= _LINGER:
                break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            # The command may still run; re-running it blindly is the caller's call, not ours.
            raise _Final(TransientError(f"{what} did not finish within {timeout:.0f} s"))
        if not got:
            select.select([channel], [], [], min(remaining, 0.1 if exited_at else 1.0))
    return b"".join(out), b"".join(err)


def _is_connection_error(exc: BaseException) -> bool:
    import paramiko

    if isinstance(exc, paramiko.AuthenticationException | paramiko.BadHostKeyException):
        return False
    if isinstance(exc, paramiko.SSHException | paramiko.ChannelException | EOFError | TimeoutError | socket.timeout):
        return True
    if isinstance(exc, OSError) and not isinstance(exc, _FILE_ERRORS):
        return True
    # paramiko's SFTP turns a dead channel into an OSError("Socket is closed") or a bare EOFError.
    return isinstance(exc, OSError) and "closed" in str(exc).lower()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, TransientError) else f"{type(exc).__name__}: {text}"


def _holder_is_dead_here(raw: str) -> bool:
    """True when the lock's holder ran on this machine and its process is gone."""
    import json

    try:
        info = json.loads(raw)
        host = str(info["holder"]).rpartition("@")[2]
        pid = int(info["pid"])
    except (ValueError, KeyError, TypeError):
        return False
    return holder_is_gone(host, pid)
