"""Every member's locks, taken before anything is touched and held until the rollout ends.

For each member: the team lease (when the store has a remote), the store-side flock, a connection
to its LB host and the LB-side lock, exactly as a single-target operation takes them. The
single-target lifecycle then runs under them (`apply_change(held_by=...)`). A member whose lock
cannot be taken is kept as a refusal, so preflight can say who holds what; nothing is changed.
Members are taken and released in parallel (each release is a round trip to its LB host); what
goes through the store's remote (the team lease taken, the push after) stays one member at a time.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lbctl.errors import LbctlError
from lbctl.fleet import read_width
from lbctl.fleet.group import Member, member_workspace
from lbctl.lock import hold_flock, holder_info

if TYPE_CHECKING:
    from lbctl.store.workspace import Workspace
    from lbctl.transports.base import Transport


@dataclass
class Holding:
    """The locks of a group's members held by this process (`token` is the holder line written in them)."""

    token: str
    transports: dict[str, Transport] = field(default_factory=dict)  # member name -> its open connection
    refused: dict[str, LbctlError] = field(default_factory=dict)  # member name -> why it could not be held
    lock: threading.Lock = field(default_factory=threading.Lock)
    remote: threading.Lock = field(default_factory=threading.Lock)  # the store's remote, one member at a time


@contextlib.contextmanager
def hold(
    ws: Workspace,
    members: list[Member],
    op: str,
    *,
    parallel: int,
    shared: bool,
    report: Callable[[str, str, str], None],
    then: Callable[[Member, Holding], None] | None = None,
) -> Iterator[Holding]:
    """Take every member's locks (all at once, up to `read_width`); release them all on the way out.

    `shared`: also take the team lease and push after the block, as a single-target change does.
    `then`: what to do with a member as soon as its own locks are held, while others are still being
    taken; it must change nothing on the member (the block decides, once every member is held or refused).
    """
    holding = Holding(token=holder_info(op, "@" + ",".join(m.name for m in members)))
    width = read_width(parallel, len(members))
    taken: list[contextlib.ExitStack] = []  # each held member's locks, released together on the way out

    def take(member: Member) -> None:
        stack = contextlib.ExitStack()
        try:
            _take(ws, member, op, holding, stack, shared=shared, report=report)
        except LbctlError as exc:
            stack.close()
            with holding.lock:
                holding.refused[member.name] = exc
            return
        except BaseException:
            stack.close()
            raise
        with holding.lock:
            taken.append(stack)
        if then is not None:
            then(member, holding)

    try:
        with ThreadPoolExecutor(max_workers=width) as pool:
            for future in [pool.submit(take, m) for m in members]:
                future.result()
        yield holding
    except BaseException as exc:
        _release(taken, width, exc)
        raise
    else:
        _release(taken, width, None)


def _release(stacks: list[contextlib.ExitStack], width: int, exc: BaseException | None) -> None:
    """Every held member's locks released at once (each told of `exc`, as one ExitStack would tell
    them); the first error a release raised is raised after all of them ran."""
    if not stacks:
        return
    kind = type(exc) if exc is not None else None
    trace = exc.__traceback__ if exc is not None else None
    with ThreadPoolExecutor(max_workers=max(1, min(width, len(stacks)))) as pool:
        futures = [pool.submit(stack.__exit__, kind, exc, trace) for stack in stacks]
    errors = [error for future in futures if (error := future.exception()) is not None]
    if errors and exc is None:
        raise errors[0]


def _take(
    ws: Workspace,
    member: Member,
    op: str,
    holding: Holding,
    stack: contextlib.ExitStack,
    *,
    shared: bool,
    report: Callable[[str, str, str], None],
) -> None:
    from lbctl.drivers.base import connected
    from lbctl.engine.execute import lb_lock
    from lbctl.kinds import kind_for
    from lbctl.transports import transport_for

    target = member.target
    mws = member_workspace(ws, member)
    if shared:  # one member at a time: each fetches and pushes the same store
        from lbctl.commands.deploy import shared as around

        said = around(mws, member.name, op, lambda stage, msg: report(member.name, stage, msg))
        stack.enter_context(_one_at_a_time(holding.remote, said))
    stack.enter_context(hold_flock(ws.lock_dir / f"{member.name}.lock", holding.token))
    transport = stack.enter_context(connected(transport_for(target), target))
    stack.enter_context(lb_lock(ws, transport, target, op, kind_for(target)))
    taken = getattr(transport, "took_over", None)
    if taken:  # the LB lock of an lbctl that died on this machine: said and recorded once, here
        from lbctl.engine.record import unlocked

        report(member.name, "lock", f"took over the lock on {transport.where} of {taken}, whose process is gone")
        unlocked(ws, member.name, f"{op} took over the lock on {transport.where} of {taken}, whose process is gone")
        transport.took_over = None  # type: ignore[attr-defined]
    with holding.lock:
        holding.transports[member.name] = transport


@contextlib.contextmanager
def _one_at_a_time(lock: threading.Lock, around: contextlib.AbstractContextManager[None]) -> Iterator[None]:
    """`around` entered and left under `lock`: the store's remote sees one member at a time, both
    when its lease is taken and when the push after it runs (members are released in parallel)."""
    inner = contextlib.ExitStack()
    with lock:
        inner.enter_context(around)
    try:
        yield
    except BaseException:
        with lock:
            if not inner.__exit__(*sys.exc_info()):
                raise
    else:
        with lock:
            inner.close()
