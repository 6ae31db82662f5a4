"""`lbctl unlock TARGET [--force]`: break a lock whose operation is over, and say so in the journal.

A target has two locks (engine/execute.py): a flock in this store (released by the kernel when its
holder dies, so never stale) and one beside the live config on the LB host (a directory over
ssh, which outlives a killed lbctl). A lock whose holder is provably gone (an lbctl on this
machine whose process no longer exists) is broken; any other is refused without `--force`,
since its operation may still be running. Breaking goes through lbctl's own connection (the
target's port, identity and known_hosts), and the journal records who broke what.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lbctl.engine.record import unlocked
from lbctl.errors import Locked, TransientError, Unreachable
from lbctl.lock import LockInfo, flock_holder, lb_lock_path, lock_info
from lbctl.store.workspace import Workspace


@dataclass(frozen=True)
class UnlockResult:
    target: str
    broken: tuple[LockInfo, ...]
    message: str
    event: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "broken": [lock.to_json() for lock in self.broken],
            "message": self.message,
            "event": self.event,
        }


def unlock(ws: Workspace, name: str, *, force: bool = False) -> UnlockResult:
    from lbctl import retry
    from lbctl.engine import recovery
    from lbctl.store.journal import timestamp
    from lbctl.transports import transport_for

    target = ws.target(name)
    here = flock_holder(ws.lock_dir / f"{name}.lock", where="store")
    if here is not None:
        raise Locked(
            f"{name} is locked by a running lbctl on this machine: {here.describe()}",
            hint=f"let it finish, or stop it (`kill {here.pid}`); the kernel frees its lock when it ends",
        )
    started = timestamp()
    path = lb_lock_path(target)
    transport = transport_for(target)
    try:
        retry.call(retry.network(target.retries), transport.open)
        if recovery.pending(ws, name) is not None:  # the operation that left the lock, if it died here
            recovery.recover(ws, target, transport, locked=False)
        held = transport.lock_holder(path)
        if held is None:
            return UnlockResult(name, (), f"nothing holds {name}: no lock to break")
        lock = lock_info(
            held[0], where="lb", path=path + (".d" if target.transport == "ssh" else ""), age_seconds=held[1]
        )
        if not lock.dead and not force:
            raise Locked(
                f"{name} is locked on {transport.where} by an operation that may still run: {lock.describe()}",
                hint=f"if you are sure it is over (it was killed, its machine is gone): `lbctl unlock {name} --force`",
            )
        if not transport.break_lock(path, held[0]):
            raise Locked(
                f"the lock on {transport.where} could not be broken: a live lbctl holds it ({lock.describe()})",
                hint="stop that process first; a live lock on the local transport is released when it ends",
            )
    except TransientError as exc:
        raise Unreachable(f"{name}: could not reach {transport.where}: {exc}", hint="nothing was changed") from None
    finally:
        transport.close()
    message = f"broke the lock on {transport.where} held by {lock.describe()}" + ("" if lock.dead else " (--force)")
    return UnlockResult(name, (lock,), message, unlocked(ws, name, message, started=started))
