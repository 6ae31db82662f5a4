"""One target's load balancer, as lbctl changes it and undoes it: the per-target contract.

A driver owns the kind (what this brand of LB needs) and the transport (how its host is
reached), built once for a whole operation, and says what the lifecycle does to the LB in
its own words. The shape is NAPALM's (open, load a candidate, compare, commit, rollback),
named after what `lbctl.engine.execute` does:

- `open()` / `close()`, or `with driver:`: one connection for the whole operation; a network
  that stays down is `Unreachable` (exit 6) after the target's retries.
- `running(rels)`: what the LB runs now, as a `Bundle` (its main config and the included
  files of `rels` that exist), or None when it runs nothing lbctl can read. `read_back(rels)`
  is the same, but never raises (None: unknown), for the failure paths.
- `placement(bundle, managed)`: how a candidate goes on this LB (`lbctl.drivers.placement.Placement`:
  stage, discard, swap, restore). `stage(bundle, managed)` makes that placement current and
  stages it: nothing the LB runs changes.
- `validate(staged)`: the LB's native check of the staged candidate (`ValidationFailed`).
- `snapshot()`: the LB's process state before a reload (`Kind.reload_marker`);
  `reload(marker)`: the LB loads what is live now, and the reload is confirmed against
  `marker` (`ReloadFailed` when it kept the old config; `Refused` when it refused before
  taking anything); `still_running(marker)`: True when no reload happened since `marker`.
- `commit(revert_in=None)`: swap the staged candidate in, reload and confirm. With
  `revert_in` seconds, a commit-confirm watchdog is armed on the LB host before the reload
  (`lbctl.drivers.watchdog`): it puts the previous config back unless `confirm()` comes in time.
- `confirm()`: disarm that watchdog (the change stays).
- `restore()`: the previous config back, reloaded and confirmed (a second restore is harmless).
- `traffic()`: per-server counters from the LB's own view of traffic (`Kind.traffic_snapshot`).

The engine calls the steps one by one (it times and records each); `commit` and `restore`
are the same steps composed, for callers that need no more.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from lbctl import retry
from lbctl.config import Target
from lbctl.errors import TransientError, Unreachable
from lbctl.kinds.base import Kind
from lbctl.transports.base import Transport

if TYPE_CHECKING:
    from lbctl.checks.counters import Snapshot
    from lbctl.drivers.placement import Placement
    from lbctl.store.bundle import Bundle


class Driver(ABC):
    """One target's LB for one operation (see the module's docstring for the contract)."""

    def __init__(self, target: Target, kind: Kind, transport: Transport) -> None:
        self.target = target
        self.kind = kind
        self.transport = transport
        self.placed: Placement | None = None  # the current candidate's placement
        self.staged = ""  # what `stage` returned for it
        self.bundle: Bundle | None = None  # the current candidate
        self.armed: tuple[str, float] | None = None  # (event id, deadline) of the watchdog `commit` armed

    # -- the connection ----------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return self.transport.where

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        _open(self.transport, self.target)

    def close(self) -> None:
        self.transport.close()

    # -- what the LB runs --------------------------------------------------------------------------

    def running(self, rels: Iterable[str] = ()) -> Bundle | None:
        """The live config, retried over a flaky network; `Unreachable` if it cannot be read."""
        return read_running(self.transport, self.target, rels)

    def read_back(self, rels: Iterable[str] = ()) -> Bundle | None:
        """What the LB's config holds now, or None if it cannot be read (never raises)."""
        from lbctl.store.bundle import read_live

        try:
            return read_live(self.transport, self.target, rels)
        except Exception:  # a failed read-back means "unknown", which callers handle
            return None

    # -- the change --------------------------------------------------------------------------------

    @abstractmethod
    def placement(self, bundle: Bundle, managed: Iterable[str] = ()) -> Placement:
        """How `bundle` goes on this LB; `managed` are the included paths lbctl put live before.
        The placement becomes the driver's current one (`validate`, `swap`, `commit` act on it)."""

    def stage(self, bundle: Bundle, managed: Iterable[str] = ()) -> str:
        """Put `bundle` beside what the LB runs (nothing live changes); returns what was staged."""
        place = self.placement(bundle, managed)
        self.staged = place.stage()
        return self.staged

    def discard(self) -> None:
        """Remove what `stage` wrote (the live config was never touched)."""
        if self.placed is not None:
            self.placed.discard()

    @abstractmethod
    def validate(self, staged: str | None = None) -> str:
        """The LB's native check of the staged candidate; its output, or `ValidationFailed`."""

    def snapshot(self) -> object:
        """The LB's process state before a reload (None when reloads are not confirmed)."""
        return self.kind.reload_marker(self.transport) if self.target.confirm_reload else None

    def swap(self) -> None:
        """Make the staged candidate the live config (keeping the previous one for `restore`)."""
        self._placed().swap()

    @abstractmethod
    def reload(self, marker: object) -> str:
        """The LB loads what is live; confirmed against `marker`. Returns a one-line detail."""

    def still_running(self, marker: object) -> bool:
        return self.kind.still_running(self.transport, marker)

    def put_back(self) -> None:
        """The previous config's files back in place (no reload)."""
        self._placed().restore()

    def commit(self, revert_in: float | None = None, *, meta: dict[str, Any] | None = None) -> str:
        """Swap, reload and confirm the staged candidate; `revert_in` arms the commit-confirm watchdog."""
        marker = self.snapshot()
        if revert_in:
            self.arm(revert_in, meta or {})
        self.swap()
        return self.reload(marker)

    def arm(self, seconds: float, meta: dict[str, Any]) -> float:
        """Start the commit-confirm watchdog for the staged candidate; returns its deadline."""
        from lbctl.drivers.watchdog import refusal
        from lbctl.errors import CannotArm

        raise CannotArm(refusal(self.target, False) or f"{self.target.name}: --confirm-within is not available here")

    def confirm(self) -> str:
        """Keep the change: the watchdog `commit` armed will not revert it."""
        return "nothing armed"

    def restore(self) -> str:
        """The previous config back, reloaded (unless the LB never reloaded) and confirmed."""
        marker = self.snapshot()
        self.put_back()
        return self.reload(marker)

    # -- traffic -----------------------------------------------------------------------------------

    def traffic(self) -> Snapshot:
        return self.kind.traffic_snapshot(self.transport)

    def _placed(self) -> Placement:
        if self.placed is None:
            raise RuntimeError("no candidate was staged on this driver")
        return self.placed


def _open(transport: Transport, target: Target) -> None:
    try:
        retry.call(retry.network(target.retries), transport.open)
    except TransientError as exc:
        raise Unreachable(
            f"{target.name}: could not reach {transport.where} after {target.retries} retries: {exc}",
            hint="nothing was changed on it; check the network and run the same command again",
        ) from None


@contextlib.contextmanager
def connected(transport: Transport, target: Target) -> Iterator[Transport]:
    """`transport` opened (retried; `Unreachable` when the network stays down) and closed after."""
    _open(transport, target)
    try:
        yield transport
    finally:
        transport.close()


def read_running(transport: Transport, target: Target, rels: Iterable[str] = ()) -> Bundle | None:
    """The live config: the main file and those of `rels` (included files) that exist."""
    from lbctl.store.bundle import read_live

    try:
        return retry.call(retry.network(target.retries), lambda: read_live(transport, target, rels))
    except TransientError as exc:
        raise Unreachable(f"{target.name}: could not read the live config: {exc}") from None
