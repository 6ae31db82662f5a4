"""A store opened for an operation: its git repo, its `lbctl.toml` and its journal."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from lbctl import config as config_mod
from lbctl.config import StoreConfig, Target
from lbctl.errors import UsageError
from lbctl.store.journal import Journal
from lbctl.store.repo import Store, find_root


@dataclass
class Workspace:
    store: Store
    config: StoreConfig
    journal: Journal

    @property
    def root(self) -> Path:
        return self.store.root

    def target(self, name: str) -> Target:
        try:
            return self.config.targets[name]
        except KeyError:
            known = sorted(self.config.targets)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"targets: {', '.join(known) or '(none)'}"
            raise UsageError(f"unknown target {name!r} in {self.root / config_mod.CONFIG_NAME}", hint=hint) from None

    def targets(self, name: str | None) -> list[Target]:
        return [self.target(name)] if name else list(self.config.targets.values())

    @property
    def lock_dir(self) -> Path:
        return self.store.git_dir / "lbctl" / "locks"

    @property
    def inflight_dir(self) -> Path:
        return self.store.git_dir / "lbctl" / "inflight"


EVERY_TARGET = "*"  # for `connect`: not a valid target name
_AHEAD_AT_MOST = 8  # connections started at once for EVERY_TARGET


def open_workspace(store_opt: str | None, *, connect: str | None = None, require_sources: bool = True) -> Workspace:
    """Open the store; with `connect` (a target, or EVERY_TARGET), transports start connecting meanwhile.

    `require_sources=False`: targets' source files may not exist yet (`lbctl pull` creates them)."""
    root = find_root(store_opt)
    config = config_mod.load(root / config_mod.CONFIG_NAME, require_sources=require_sources)
    if connect is not None:
        from lbctl.transports import connect_ahead

        names = list(config.targets)[:_AHEAD_AT_MOST] if connect == EVERY_TARGET else [connect]
        for name in names:
            if name in config.targets:
                connect_ahead(config.targets[name])
    store = Store(root)
    return Workspace(store=store, config=config, journal=Journal(store))
