"""Every retry in lbctl, as named policies (tenacity).

Only `TransientError` is retried: authentication failures, host-key problems,
validation errors and failed commands are not transient and surface at once.
Callers pick a policy by name; nothing else in lbctl loops on failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from lbctl.errors import TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    name: str
    attempts: int  # total tries, first one included
    first_wait: float  # seconds before the first retry
    max_wait: float  # cap of one wait
    deadline: float  # overall seconds, whatever `attempts` says
    jitter: float  # up to this many seconds added at random to each wait


# The master CLI refuses or resets connections for ~50-80 ms while HAProxy re-executes.
MASTER_SOCKET = Policy("master-socket", attempts=500, first_wait=0.01, max_wait=0.02, deadline=10.0, jitter=0.005)
# Connecting to and talking with a LB host over a network that may drop.
NETWORK = Policy("network", attempts=4, first_wait=0.2, max_wait=4.0, deadline=30.0, jitter=0.2)
# Waiting for something to appear (a new worker, a listening port).
# A steady 20 ms: a doubling wait overshoots a reload that takes ~100 ms by up to 80 ms.
POLL = Policy("poll", attempts=500, first_wait=0.02, max_wait=0.02, deadline=10.0, jitter=0.0)


def network(retries: int) -> Policy:
    """The NETWORK policy with a target's own `retries` (retries + 1 attempts)."""
    return Policy(NETWORK.name, retries + 1, NETWORK.first_wait, NETWORK.max_wait, NETWORK.deadline, NETWORK.jitter)


# What `call` loads on a first failure (see lbctl.preload).
IMPLEMENTATION = "tenacity"
# Tests replace this to see the waits without waiting.
_sleep: Callable[[float], None] = time.sleep


def call(policy: Policy, fn: Callable[[], T]) -> T:
    """Run `fn`, retrying `TransientError` under `policy`; re-raises the last error.

    The first attempt runs bare: tenacity (and its ~10 ms of imports) is loaded only when
    that fails, and goes on with the same backoff from the second attempt.
    """
    started = time.monotonic()
    try:
        return fn()
    except TransientError:
        if policy.attempts <= 1 or time.monotonic() - started >= policy.deadline:
            raise
    import random

    import tenacity

    _sleep(min(policy.first_wait, policy.max_wait) + random.uniform(0, policy.jitter))
    remaining = max(0.0, policy.deadline - (time.monotonic() - started))
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        stop=tenacity.stop_after_attempt(policy.attempts - 1) | tenacity.stop_after_delay(remaining),
        # The waits after attempts 2, 3, ... of the whole call: first_wait * 2, * 4, ...
        wait=tenacity.wait_exponential(multiplier=policy.first_wait * 2, max=policy.max_wait)
        + tenacity.wait_random(0, policy.jitter),
        sleep=_sleep,
        reraise=True,
    )
    return retrying(fn)
