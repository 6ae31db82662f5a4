"""The cache of validated settings: the on-call path (`rollback`, `status`) starts without pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lbctl import checks
from lbctl.config.schema import (
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
)

# -- the cache of validated settings ---------------------------------------------------------
# One JSON file per store in the user's cache: the settings validated from the exact bytes of
# lbctl.toml by this exact source of this package. Any other bytes, or a changed lbctl, validate
# again. The settings name commands lbctl runs (`validate`, `reload`), so a cache file is used only
# when it and its directory belong to this user and nobody else may write them.


def cache_file(path: Path) -> Path | None:
    import hashlib
    import os

    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lbctl" / "settings"
    except RuntimeError:  # no home directory (an arbitrary uid in a container): no cache
        return None
    return base / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24] + ".json")


def _sources() -> list[Path]:
    """What validation depends on: this package, the plugin registries and their settings."""
    import lbctl

    root = Path(lbctl.__file__).parent
    plugins = [
        f"{family}/{name}.py" for family in ("checks", "kinds", "transports") for name in ("__init__", "settings")
    ]
    extra = ("registry.py", "shell.py", *plugins)
    return [*sorted(Path(__file__).parent.glob("*.py")), *(root / name for name in extra)]


def cache_key(path: Path, data: bytes) -> str:
    import hashlib
    import sys

    digest = hashlib.sha256(data)
    for source in _sources():
        digest.update(source.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def cached(path: Path, key: str) -> StoreConfig | None:
    import json
    import os

    file = cache_file(path)
    if file is None:
        return None
    try:
        for owned in (file, file.parent):
            st = owned.stat()
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return None
        stored = json.loads(file.read_bytes())
        return settings_from(stored["settings"]) if stored.get("key") == key else None
    except Exception:  # missing, unreadable or from another version: validate again
        return None


def remember(path: Path, key: str, config: StoreConfig) -> None:
    import json
    import os

    target = cache_file(path)
    if target is None:
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = target.with_name(f"{target.name}.{os.getpid()}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"key": key, "settings": as_dict(config)}, f)
        os.replace(temp, target)
    except OSError:
        pass  # a read-only home only costs the next run a validation


def settings_from(data: dict[str, Any]) -> StoreConfig:
    """Settings from `as_dict` output that pydantic validated before (no validation here)."""

    def target(values: dict[str, Any]) -> Target:
        return Target(
            **{
                **values,
                "checks": [checks.SETTINGS[c["type"]](**c) for c in values["checks"]],
                "policy": Policy(**values["policy"]),
                "safety": Safety(**values["safety"]),
                "routes": [Route(**r) for r in values.get("routes", [])],
            }
        )

    def group(values: dict[str, Any]) -> Group:
        members = {
            name: MemberOverride(
                **{
                    **m,
                    "checks": None if m["checks"] is None else [checks.SETTINGS[c["type"]](**c) for c in m["checks"]],
                }
            )
            for name, m in values.get("members", {}).items()
        }
        return Group(
            Policy(**values["policy"]),
            Safety(**values["safety"]),
            [Route(**r) for r in values.get("routes", [])],
            targets=list(values.get("targets", [])),
            members=members,
            rollout=Rollout(**values.get("rollout", {})),
        )

    return StoreConfig(
        store=StoreSync(**data["store"]),
        defaults=Defaults(**data["defaults"]),
        policy=Policy(**data["policy"]),
        safety=Safety(**data["safety"]),
        groups={k: group(g) for k, g in data["groups"].items()},
        targets={k: target(v) for k, v in data["targets"].items()},
        watch=WatchSettings(**data["watch"]),
        notify=[NotifySink(**n) for n in data["notify"]],
    )
