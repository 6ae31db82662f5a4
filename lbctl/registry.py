"""Plugin families (kinds, transports, checks) by name, each module imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from lbctl.errors import ConfigError


def load(registry: Mapping[str, tuple[str, str]], name: str, *, key: str) -> type[Any]:
    """The class registered as `name`; `ConfigError` naming `key` (e.g. targets.edge.kind) if none is."""
    try:
        module_name, class_name = registry[name]
    except KeyError:
        available = ", ".join(sorted(registry))
        raise ConfigError(f"{key}: {name!r} is not available", hint=f"available: {available}") from None
    cls: type[Any] = getattr(importlib.import_module(module_name), class_name)
    return cls
