"""`lbctl.toml`: the store's description of its targets, validated with pydantic.

Every error names the key, the file and, where the TOML text shows it, the line.

- `schema`: the settings, frozen stdlib dataclasses whose string annotations carry pydantic's
  constraints (`Annotated[float, Field(gt=0)]`), which only pydantic reads; each check type
  declares its own settings next to it (`lbctl.checks.settings`), collected through the registry;
- `loader`: reading `lbctl.toml` and validating it, errors with key, file and line;
- `cache`: pydantic itself (~0.2 s of imports) is loaded only when a store's `lbctl.toml` changed
  since it was last validated: the validated settings are kept in the user's cache, keyed by the
  file's bytes and this package's source, so the on-call path (`rollback`, `status`) starts without it.
"""

from __future__ import annotations

from lbctl.checks.settings import BalanceCheck, CommandCheck, HttpCheck, TcpCheck
from lbctl.config.loader import load, target_from, validate
from lbctl.config.schema import (
    CHECKS,
    CONFIG_NAME,
    KINDS,
    NOTIFY_EVENTS,
    TARGET_NAME,
    TRANSPORTS,
    Check,
    Defaults,
    Group,
    MemberOverride,
    NotifySink,
    Policy,
    Rollout,
    Route,
    Safety,
    StoreConfig,
    StoreSync,
    Target,
    WatchSettings,
    as_dict,
    duration,
)

__all__ = [
    "CHECKS",
    "CONFIG_NAME",
    "KINDS",
    "NOTIFY_EVENTS",
    "TARGET_NAME",
    "TRANSPORTS",
    "BalanceCheck",
    "Check",
    "CommandCheck",
    "Defaults",
    "Group",
    "HttpCheck",
    "MemberOverride",
    "NotifySink",
    "Policy",
    "Rollout",
    "Route",
    "Safety",
    "StoreConfig",
    "StoreSync",
    "Target",
    "TcpCheck",
    "WatchSettings",
    "as_dict",
    "duration",
    "load",
    "target_from",
    "validate",
]
