"""The time as lbctl records it: UTC, and ISO 8601 to the millisecond in events and lock files."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(tz=UTC)


def timestamp() -> str:
    return now().isoformat(timespec="milliseconds")
