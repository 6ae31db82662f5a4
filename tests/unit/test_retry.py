"""retry.call: the first attempt runs bare, the retries follow the policy's backoff exactly."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from lbctl import retry
from lbctl.errors import TransientError, ValidationFailed

POLICY = retry.Policy("test", attempts=5, first_wait=1.0, max_wait=5.0, deadline=1000.0, jitter=0.0)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    seen: list[float] = []
    monkeypatch.setattr(retry, "_sleep", seen.append)
    return seen


def failing(times: int, result: str = "ok") -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise TransientError(f"attempt {len(calls)}")
        return result

    return calls, fn


def test_backoff_doubles_from_the_first_wait_and_is_capped(waits: list[float]) -> None:
    calls, fn = failing(4)
    assert retry.call(POLICY, fn) == "ok"
    assert len(calls) == 5 and waits == [1.0, 2.0, 4.0, 5.0]


def test_the_last_error_surfaces_after_every_attempt(waits: list[float]) -> None:
    calls, fn = failing(99)
    with pytest.raises(TransientError, match="attempt 5"):
        retry.call(POLICY, fn)
    assert len(calls) == 5


def test_other_errors_are_not_retried(waits: list[float]) -> None:
    def fn() -> None:
        raise ValidationFailed("no")

    with pytest.raises(ValidationFailed):
        retry.call(POLICY, fn)
    assert waits == []


def test_a_call_that_succeeds_at_once_never_loads_tenacity() -> None:
    code = "import sys; from lbctl import retry; retry.call(retry.POLL, lambda: 1); print('tenacity' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
