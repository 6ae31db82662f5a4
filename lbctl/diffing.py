"""A plain unified diff: the fallback where a config cannot be parsed semantically."""

from __future__ import annotations

import difflib


def unified(old: bytes, new: bytes, old_name: str, new_name: str) -> str:
    a = old.decode("utf-8", "replace").splitlines(keepends=True)
    b = new.decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(a, b, old_name, new_name)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
