"""What a change means, for the deploy plan, `lbctl diff` and events.

A plain unified diff for now; the semantic differ (issue 4) plugs in here.
"""

from __future__ import annotations

import difflib


def describe_change(kind: str, old: bytes, new: bytes, filename: str) -> str:
    """A readable description of the change from `old` to `new` ("" when identical)."""
    if old == new:
        return ""
    return unified(old, new, f"live/{filename.lstrip('/')}", f"candidate/{filename.lstrip('/')}")


def unified(old: bytes, new: bytes, old_name: str, new_name: str) -> str:
    a = old.decode("utf-8", "replace").splitlines(keepends=True)
    b = new.decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(a, b, old_name, new_name)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
