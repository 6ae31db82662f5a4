"""Reading `lbctl.toml`: TOML, then pydantic's validation, each error naming the key, the file and the line."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbctl.checks import settings as check_settings
from lbctl.config import cache, schema
from lbctl.config.schema import CHECKS, KINDS, TARGET_NAME, TRANSPORTS, Defaults, StoreConfig, Target
from lbctl.errors import ConfigError
from lbctl.kinds import settings as kind_settings
from lbctl.transports import settings as transport_settings

if TYPE_CHECKING:
    from pydantic import TypeAdapter, ValidationError


def load(path: Path, *, require_sources: bool = True) -> StoreConfig:
    """Read and validate `lbctl.toml`; `ConfigError` (exit 2) names key, file and line.

    `require_sources=False` lets sources be missing (`lbctl pull` creates them).
    """
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError("no lbctl.toml here", file=str(path), hint="run `lbctl init` to create a store") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", file=str(path)) from None
    key = cache.cache_key(path, data)
    config = cache.cached(path, key)
    if config is None:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", file=str(path), line=_toml_error_line(str(exc))) from None
        config = validate(raw, text=text, path=path)
        cache.remember(path, key, config)
    _check_names_and_sources(config, text=text, path=path, require_sources=require_sources)
    return config


def target_from(values: dict[str, Any]) -> Target:
    """One validated target from plain values (as a `[targets.NAME]` table plus `name`)."""
    from pydantic import TypeAdapter

    _validator()
    return TypeAdapter(Target).validate_python(values)


def _validator() -> TypeAdapter[StoreConfig]:
    """pydantic's validator for `StoreConfig`, built on first use.

    The dataclasses' string annotations name `Field` and `AfterValidator`; pydantic resolves
    them in the namespaces of the modules that declare them (the schema, each plugin's settings),
    where they are put now rather than at import time.
    """
    global _VALIDATOR
    if _VALIDATOR is None:
        from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter

        names = {"AfterValidator": AfterValidator, "BeforeValidator": BeforeValidator, "Field": Field}
        for module in (schema, check_settings, kind_settings, transport_settings):  # where settings are declared
            vars(module).update(names)
        _VALIDATOR = TypeAdapter(StoreConfig)
    return _VALIDATOR


_VALIDATOR: TypeAdapter[StoreConfig] | None = None


def validate(raw: dict[str, Any], *, text: str, path: Path) -> StoreConfig:
    """Validate decoded TOML (`[defaults]` merged into each target); `ConfigError` names key, file and line."""
    from pydantic import ValidationError

    data = dict(raw)
    defaults_raw = data.get("defaults", {})
    targets_raw = data.get("targets", {})
    merged: dict[str, Any] = {}
    if isinstance(targets_raw, dict) and isinstance(defaults_raw, dict):
        known = {f.name for f in dataclasses.fields(Defaults)}
        for name, body in targets_raw.items():
            if isinstance(body, dict):
                known_defaults = {k: v for k, v in defaults_raw.items() if k in known}
                merged[name] = {**known_defaults, **body, "name": name}
            else:
                merged[name] = body
        data["targets"] = merged
    try:
        return _validator().validate_python(data)
    except ValidationError as exc:
        raise _config_error(exc, text=text, path=path) from None


def _check_names_and_sources(config: StoreConfig, *, text: str, path: Path, require_sources: bool = True) -> None:
    root = path.parent
    for name, group in config.groups.items():
        if group.targets or group.members:  # a fleet (`deploy @NAME`): every name resolves to a target
            from lbctl.config.groups import member_names
            from lbctl.errors import UsageError

            try:
                member_names(config, name)
            except UsageError as exc:
                raise ConfigError(exc.message, file=str(path), line=_locate(text, ("groups", name))) from None
    for name, target in config.targets.items():
        if not TARGET_NAME.match(name):
            raise ConfigError(
                f"target name {name!r} may only hold letters, digits, '.', '_' and '-'",
                file=str(path),
                line=_locate(text, ("targets", name)),
            )
        if require_sources and not (root / target.source).is_file():
            raise ConfigError(
                f"targets.{name}.source: file {target.source!r} does not exist in the store",
                file=str(path),
                line=_locate(text, ("targets", name, "source")),
                hint=f"create {target.source}, record what the LB runs with `lbctl pull {name}`, "
                "or fix the path (relative to lbctl.toml)",
            )


def _config_error(exc: ValidationError, *, text: str, path: Path) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    # pydantic puts the discriminated-union tag (e.g. "http") into the location: drop it.
    shown = tuple(p for p in loc if p not in CHECKS)
    key = ".".join(shown) or "(top level)"
    kind = err["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        message = f"unknown key `{key}`"
        hint = "check the spelling against docs/reference.md"
    elif kind == "missing":
        message = f"missing key `{key}`"
        hint = None
    elif kind in ("literal_error", "union_tag_invalid"):
        message = f"`{key}`: {err['msg']}"
        hint = f"kinds: {', '.join(KINDS)}; transports: {', '.join(TRANSPORTS)}"
    else:
        message = f"`{key}`: {err['msg']}"
        hint = None
    return ConfigError(message, file=str(path), line=_locate(text, shown), hint=hint)


def _locate(text: str, loc: Sequence[str]) -> int | None:
    """Best-effort line of a key path such as ("targets", "edge1", "kind") in TOML text.

    Understands `[a.b]` / `[[a.b.c]]` headers and `key = value` lines, which is how
    lbctl.toml files are written; returns the header's line when the key itself is absent.
    """
    parts = [p for p in loc if not p.isdigit()]
    best: int | None = None
    table: list[str] = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", line)
        if header:
            table = [p.strip().strip('"') for p in header.group(1).split(".")]
            if table == parts[: len(table)] and table:
                best = number if best is None or len(table) >= len(parts) - 1 else best
            continue
        key = re.match(r'^"?([A-Za-z0-9_.-]+)"?\s*=', line)
        if key and table + key.group(1).split(".") == parts:
            return number
    return best


def _toml_error_line(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None
