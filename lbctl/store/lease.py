"""A lock the whole team sees: an advisory lease on the store's remote, `refs/lbctl/locks/TARGET`.

The lock on the LB host stays the hard mutex; the lease tells every clone (and CI) who is
changing a target before they even connect to it. A lease is a commit (empty tree) whose
message is JSON: holder, operation, host, expiry. It is taken and renewed with a
compare-and-swap push (`--force-with-lease=REF:EXPECTED`: the remote updates the ref only if
it still holds what this clone last saw), renewed by a thread while held, and deleted the
same way when the operation ends. An expired lease (its holder died) may be taken over.
`break_lease` (for `lbctl unlock`) deletes one whoever holds it, and records that in the journal.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from lbctl.clock import now
from lbctl.errors import Locked, Refused, Unreachable
from lbctl.store.gitio import ident

if TYPE_CHECKING:
    from lbctl.store.sync import Remote
    from lbctl.store.workspace import Workspace

LOCKS = "refs/lbctl/locks/"
TTL_SECONDS = 60.0  # a lease lasts this long unless renewed
RENEW_EVERY = 20.0


@dataclass(frozen=True)
class Lease:
    target: str
    holder: str  # git identity: "Name <email>"
    operation: str
    host: str
    expires: str  # ISO 8601
    sha: str = ""

    @property
    def expired(self) -> bool:
        try:
            return datetime.fromisoformat(self.expires) <= now()
        except ValueError:
            return True

    def describe(self) -> str:
        return f"{self.operation} of {self.target} by {self.holder} on {self.host} (lease until {self.expires})"


def ref_for(target: str) -> str:
    return LOCKS + target


def tracked(ws: Workspace, target: str) -> Lease | None:
    """The lease this clone last fetched for `target` (what `status` shows); no git process."""
    from lbctl.store.sync import remote_of

    remote = remote_of(ws)
    if remote is None:
        return None
    sha = ws.store.ref(remote.tracking(ref_for(target)))
    return _read(ws, target, sha) if sha else None


def _read(ws: Workspace, target: str, sha: str) -> Lease:
    info = ws.store.plumbing.commit(sha)
    if info is None:  # not fetched: someone holds it, who is not known here
        expires = (now() + timedelta(seconds=TTL_SECONDS)).isoformat(timespec="seconds")
        return Lease(target, "another clone", "?", "?", expires, sha)
    try:
        data = json.loads(info.message)
        return Lease(target, data["holder"], data["operation"], data["host"], data["expires"], sha)
    except (ValueError, KeyError, TypeError):
        return Lease(target, "an unreadable lease", "?", "?", "1970-01-01T00:00:00+00:00", sha)


def _remote_value(ws: Workspace, remote: Remote, target: str) -> str | None:
    """What the remote holds for the lease now (one `ls-remote`, and a fetch if it is new here)."""
    from lbctl.store.sync import run_git

    ref = ref_for(target)
    out = run_git(ws.store, "ls-remote", remote.name, ref, timeout=remote.timeout)
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name.strip() == ref:
            sha = sha.strip()
            if ws.store.plumbing.commit(sha) is None:
                run_git(
                    ws.store, "fetch", "--quiet", remote.name, f"+{ref}:{remote.tracking(ref)}", timeout=remote.timeout
                )
            return sha
    return None


def _write(ws: Workspace, target: str, operation: str, parent: str | None) -> str:
    name, email = ws.store.identity()
    expires = (now() + timedelta(seconds=TTL_SECONDS)).isoformat(timespec="seconds")
    body = json.dumps(
        {"holder": f"{name} <{email}>", "operation": operation, "host": socket.gethostname(), "expires": expires}
    )
    plumbing = ws.store.plumbing
    return plumbing.write_commit(
        plumbing.write_tree(None, {}), parent, ident(name, email, now().timestamp()), body + "\n"
    )


def _swap(ws: Workspace, remote: Remote, target: str, new: str | None, expected: str | None) -> None:
    """Compare-and-swap the remote's lease ref from `expected` to `new` (None: delete it)."""
    from lbctl.store.sync import run_git

    ref = ref_for(target)
    run_git(
        ws.store,
        "push",
        "--quiet",
        f"--force-with-lease={ref}:{expected or ''}",
        remote.name,
        f"{new or ''}:{ref}",
        timeout=remote.timeout,
    )
    if new is None:
        ws.store.plumbing.git("update-ref", "-d", remote.tracking(ref))
    else:
        ws.store.plumbing.git("update-ref", remote.tracking(ref), new)


@contextlib.contextmanager
def held(ws: Workspace, target: str, operation: str, *, required: bool = True) -> Iterator[Holding | None]:
    """Hold the team-wide lease on `target` for the block, or raise `Locked` (exit 5) naming its holder.

    No remote (or `sync = "off"`): nothing to take. Remote unreachable: with `required=False`
    (a rollback, which never needs the remote) the block runs without a lease."""
    from lbctl.store.sync import RemoteError, remote_of, require_up

    remote = remote_of(ws)
    if remote is None:
        yield None
        return
    # What the clone fetched a moment ago (every caller syncs first) is the first guess for the
    # compare-and-swap: one round trip when it is right; when it is not, the remote says what it holds.
    current = ws.store.ref(remote.tracking(ref_for(target)))
    try:
        require_up(ws)
        for attempt in range(2):
            lease = _read(ws, target, current) if current else None
            if lease is not None and not lease.expired:
                raise Locked(
                    f"locked on {remote.name}: {lease.describe()}",
                    hint="wait for it to finish; `lbctl status` shows the holder; `lbctl unlock` breaks a stale lease",
                )
            mine = _write(ws, target, operation, current)
            try:
                _swap(ws, remote, target, mine, current)
                break
            except RemoteError as exc:
                if not exc.rejected or attempt:
                    raise
                current = _remote_value(ws, remote, target)  # it moved since the fetch: look again
    except RemoteError as exc:
        if exc.rejected:  # someone took it between our look and our push
            with contextlib.suppress(RemoteError):
                taken = _remote_value(ws, remote, target)
                if taken:
                    who = _read(ws, target, taken).describe()
                    raise Locked(f"locked on {remote.name}: {who}", hint="wait for it to finish") from None
            raise Locked(f"locked on {remote.name}: another clone took the lease on {target} first") from None
        if required:
            raise Refused(
                f"cannot reach {remote.name} to take the team lease on {target}: {exc}; nothing was pushed",
                hint=f"retry when {remote.name} answers, or pass --force to go ahead without the lease",
            ) from None
        yield None
        return
    renewer = _Renewer(ws, remote, target, operation, mine)
    renewer.start()
    holding = Holding(_read(ws, target, mine), renewer)
    try:
        yield holding
    finally:
        renewer.stop()
        if not holding.released:
            with contextlib.suppress(RemoteError):
                _swap(ws, remote, target, None, renewer.sha)


class Holding:
    """A lease held by this process: `handoff()` stops its renewal and gives (ref, sha), for the
    journal's push to delete it on the way (`lbctl.store.sync.publish`); `released` then says it went."""

    def __init__(self, lease: Lease, renewer: _Renewer) -> None:
        self.lease = lease
        self._renewer = renewer
        self.released = False

    def handoff(self) -> tuple[str, str]:
        self._renewer.stop()
        return ref_for(self.lease.target), self._renewer.sha


class _Renewer(threading.Thread):
    """Pushes a fresh expiry every RENEW_EVERY seconds while the lease is held."""

    def __init__(self, ws: Workspace, remote: Remote, target: str, operation: str, sha: str) -> None:
        super().__init__(name=f"lbctl-lease-{target}", daemon=True)
        self.ws, self.remote, self.target, self.operation, self.sha = ws, remote, target, operation, sha
        self._done = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        from lbctl.store.sync import RemoteError

        while not self._done.wait(RENEW_EVERY):
            with self._lock:
                if self._done.is_set():
                    return
                try:
                    renewed = _write(self.ws, self.target, self.operation, self.sha)
                    _swap(self.ws, self.remote, self.target, renewed, self.sha)
                    self.sha = renewed
                except RemoteError:
                    continue  # renewal is best effort: the LB-side lock is the hard mutex

    def stop(self) -> None:
        self._done.set()
        with self._lock:
            pass


def break_lease(ws: Workspace, target: str) -> Lease | None:
    """Delete the lease on `target` whoever holds it, and record that in the journal.

    Returns the lease that was broken, or None when there was none (or no remote)."""
    from lbctl.store.journal import Event, new_event_id, timestamp
    from lbctl.store.sync import RemoteError, publish_after, remote_of

    ws.target(target)
    remote = remote_of(ws)
    if remote is None:
        return None
    try:
        current = _remote_value(ws, remote, target)
        if current is None:
            return None
        lease = _read(ws, target, current)
        _swap(ws, remote, target, None, current)
    except RemoteError as exc:
        if exc.rejected:
            raise Locked(
                f"the lease on {target} changed on {remote.name} while lbctl was breaking it",
                hint="look at `lbctl status` again: its holder may be alive and renewing it",
            ) from None
        raise Unreachable(
            f"cannot reach {remote.name} to break the lease on {target}: {exc}",
            hint=f"retry when {remote.name} answers",
        ) from None
    name, email = ws.store.identity()
    state = ws.journal.state(target)
    stamp = timestamp()
    event = Event(
        id=new_event_id(),
        op="unlock",
        target=target,
        who=f"{name} <{email}>",
        started=stamp,
        finished=stamp,
        from_rev=state.live,
        to_rev=state.live,
        verdict="lease-broken",
        message=f"broke the lease: {lease.describe()}",
    )
    from lbctl.engine.record import record

    record(ws.journal, event, state)
    publish_after(ws, op="unlock", target=target)
    return lease
