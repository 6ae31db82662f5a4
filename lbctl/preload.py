"""Import what a later stage needs while an earlier one waits on the load balancer.

Imports are CPU work; a thread started just before lbctl waits on a remote command (the
LB validating the candidate) does them in time that was idle anyway, instead of on the
way to the swap and the reload. Failures are ignored here: the stage that needs the
module imports it itself and reports the error.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable


def in_background(modules: Iterable[str]) -> threading.Thread:
    names = list(modules)

    def work() -> None:
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # reported by the stage that really needs it
                continue

    thread = threading.Thread(target=work, name="lbctl-preload", daemon=True)
    thread.start()
    return thread
