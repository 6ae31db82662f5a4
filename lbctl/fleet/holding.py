"""Every member's locks, taken before anything is touched and held until the rollout ends.

For each member: the team lease (when the store has a remote), the store-side flock, a connection
to its LB host and the LB-side lock, exactly as a single-target operation takes them. The
single-target lifecycle then runs under them (`apply_change(held_by=...)`). A member whose lock
cannot be taken is kept as a refusal, so preflight can say who holds what; nothing is changed.
"""

from __future__ import annotations

import contextlib
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
) -> Iterator[Holding]:
    """Take every member's locks (all at once, up to `read_width`); release them all on the way out.

    `shared`: also take the team lease and push after the block, as a single-target change does.
    """
    holding = Holding(token=holder_info(op, "@" + ",".join(m.name for m in members)))
    with contextlib.ExitStack() as outer:

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
                outer.enter_context(stack)

        with ThreadPoolExecutor(max_workers=read_width(parallel, len(members))) as pool:
            for future in [pool.submit(take, m) for m in members]:
                future.result()
        yield holding


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

        with holding.remote:
            stack.enter_context(around(mws, member.name, op, lambda stage, msg: report(member.name, stage, msg)))
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
