"""A plain unified diff: the fallback where a config cannot be parsed semantically."""

from __future__ import annotations

import difflib
import re

# Values that must never be shown, even in the plain fallback diff (PRODUCT.md §7).
_SECRET = re.compile(
    r"(?i)\b(password|insecure-password|stats\s+auth|secure_link_secret|secret|token|authorization:?)(\s+)(\S+)"
)


def mask_secrets(text: str) -> str:
    return _SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}****", text)


def unified(old: bytes, new: bytes, old_name: str, new_name: str) -> str:
    a = old.decode("utf-8", "replace").splitlines(keepends=True)
    b = new.decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(a, b, old_name, new_name)
    text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
    return mask_secrets(text)


def unified_files(old: dict[str, bytes], new: dict[str, bytes], old_label: str, new_label: str) -> str:
    """One unified diff per file of two trees (by relative path; the main file's path is "")."""
    parts = []
    for rel in sorted(set(old) | set(new)):
        suffix = f"/{rel}" if rel else ""
        parts.append(unified(old.get(rel, b""), new.get(rel, b""), old_label + suffix, new_label + suffix))
    return "".join(parts)
