"""A plain unified diff: the fallback where a config cannot be parsed semantically.

Both texts are masked before they are compared (secrets sealed, so a changed secret is
still a changed line), and the diff shows them as `****`: a line that differs only in a
secret is marked "secret changed", never with the value (PRODUCT.md §7).
"""

from __future__ import annotations

import difflib

from lbctl.masking import SECRET_CHANGED, hide, mask_text, only_secrets_differ


def unified(old: bytes, new: bytes, old_name: str, new_name: str) -> str:
    a = mask_text(old.decode("utf-8", "replace"), sealed=True).splitlines(keepends=True)
    b = mask_text(new.decode("utf-8", "replace"), sealed=True).splitlines(keepends=True)
    lines = _mark_secret_changes(list(difflib.unified_diff(a, b, old_name, new_name)))
    text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
    return hide(text)


def _mark_secret_changes(lines: list[str]) -> list[str]:
    """`+` lines that differ from a `-` line of their hunk only in secrets say so."""
    removed: list[str] = []
    for n, line in enumerate(lines):
        if line.startswith("@@"):
            removed = []
        elif line.startswith("-") and not line.startswith("---"):
            removed.append(line[1:].rstrip("\n"))
        elif line.startswith("+") and not line.startswith("+++"):
            body = line[1:].rstrip("\n")
            if any(only_secrets_differ(was, body) for was in removed):
                lines[n] = f"+{body}    # {SECRET_CHANGED}" + ("\n" if line.endswith("\n") else "")
    return lines


def unified_files(old: dict[str, bytes], new: dict[str, bytes], old_label: str, new_label: str) -> str:
    """One unified diff per file of two trees (by relative path; the main file's path is "")."""
    parts = []
    for rel in sorted(set(old) | set(new)):
        suffix = f"/{rel}" if rel else ""
        parts.append(unified(old.get(rel, b""), new.get(rel, b""), old_label + suffix, new_label + suffix))
    return "".join(parts)
