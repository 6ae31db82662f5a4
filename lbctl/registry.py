"""Plugin families (kinds, transports, checks) by name, each module imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from lbctl.errors import ConfigError

# pydantic's configuration of every settings table (lbctl.config.schema, each plugin's settings):
# an unknown key is an error, and a key may be written by its alias (`validate`) or its name.
SETTINGS_CONFIG: dict[str, Any] = {"extra": "forbid", "populate_by_name": True}


def load(registry: Mapping[str, tuple[str, ...]], name: str, *, key: str) -> type[Any]:
    """The class registered as `name`; `ConfigError` naming `key` (e.g. targets.edge.kind) if none is."""
    try:
        module_name, class_name = registry[name][:2]
    except KeyError:
        available = ", ".join(sorted(registry))
        raise ConfigError(f"{key}: {name!r} is not available", hint=f"available: {available}") from None
    cls: type[Any] = getattr(importlib.import_module(module_name), class_name)
    return cls
