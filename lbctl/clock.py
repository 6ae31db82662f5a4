"""The time as lbctl records it: UTC, and ISO 8601 to the millisecond in events and lock files."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(tz=UTC)


def timestamp() -> str:
    return now().isoformat(timespec="milliseconds")


def at_second(epoch: float) -> str:
    """`epoch` as a UTC time to the second, as messages about deadlines show it."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
