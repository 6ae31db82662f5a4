"""Each routing test gets a temp folder of its own for the sandboxes it starts.

Sandboxes live in `tempfile.mkdtemp(prefix="lbctl-sandbox-")` and their processes inherit TMPDIR:
with a private folder, a test sees only its own sandboxes' folders and processes, never those of a
test running beside it in another worker.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_tempdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="lbt-"))  # short: sockets inside must fit in 108 bytes
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
