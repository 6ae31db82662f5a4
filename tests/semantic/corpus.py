"""The shared corpus of real configs, and cosmetic rewrites of them that must not count as changes."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

# Beside the checkout (../shared/corpus); LBCTL_CORPUS names it when the checkout lives elsewhere.
CORPUS = Path(os.environ.get("LBCTL_CORPUS") or Path(__file__).parents[2] / ".." / "shared" / "corpus")

# Broken on purpose, with the line crossplane names. The last three are files crossplane's own
# tests say must never be included ("# this file should never be included"): garbage by design.
EXPECTED_ERRORS = {
    "nginx-crossplane/bad-args/nginx.conf": 1,
    "nginx-crossplane/missing-semicolon/broken-above.conf": 4,
    "nginx-crossplane/missing-semicolon/broken-below.conf": 7,
    "nginx-crossplane/includes-regular/conf.d/bar.conf": 2,
    "nginx-crossplane/includes-regular/conf.d/foo.conf": 2,
    "nginx-crossplane/includes-globbed/servers/locations/not-included.conf": 2,
}
# Broken on purpose, but crossplane only notices in strict mode, which also rejects valid configs
# (Lua blocks, map entries, directives newer than its table): left to `nginx -t`.
UNDETECTED = {"nginx-crossplane/spelling-mistake/nginx.conf"}


def corpus_files() -> list[tuple[str, str]]:
    """(kind, path relative to the corpus) for every file of the corpus."""
    files = []
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file() and path.name != "README.md":
            rel = path.relative_to(CORPUS).as_posix()
            files.append(("haproxy" if rel.startswith("haproxy/") else "nginx", rel))
    return files


def read(rel: str) -> str:
    return (CORPUS / rel).read_text(encoding="utf-8", errors="surrogateescape")


def root_of(rel: str) -> Path | None:
    """nginx-crossplane cases resolve includes in their own folder; nginx-tests' includes were never cut."""
    parts = rel.split("/")
    return CORPUS / parts[0] / parts[1] if parts[0] == "nginx-crossplane" else None


_INDENTS = ["", " ", "    ", "\t", "\t  ", "        "]
_SEPARATORS = [" ", "  ", "\t", " \t "]


def reformat_haproxy(text: str, rng: random.Random) -> str:
    """Re-indent, re-space, and sprinkle comments and blank lines: nothing HAProxy would read differently."""
    out = ["# rewritten: only the layout differs"]
    for line in text.splitlines():
        plain = not re.search(r"[\"'\\#]", line)
        words = line.split()
        if plain and words:
            line = rng.choice(_INDENTS) + rng.choice(_SEPARATORS).join(words)
            if rng.random() < 0.2:
                line += rng.choice(["  # note", "\t#", " ## x 'y"])
        elif words and rng.random() < 0.5:
            line = rng.choice(_INDENTS) + line.lstrip()
        if rng.random() < 0.1:
            out.append(rng.choice(["", "# cosmetic comment", "   ", "\t# 'quoted' \"comment\""]))
        out.append(line)
    if rng.random() < 0.5:
        out.append("")
    return "\n".join(out) + ("\n" if rng.random() < 0.5 else "")


def reformat_nginx(rel: str, rng: random.Random) -> str:
    """crossplane's own printer at another indentation, with comments inserted between statements."""
    import crossplane

    payload = crossplane.parse(str(CORPUS / rel), single=True, check_ctx=False, comments=False)
    parsed = payload["config"][0]["parsed"]

    def sprinkle(block: list[dict[str, object]]) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for stmt in block:
            if rng.random() < 0.15:
                out.append({"directive": "#", "args": [], "line": 0, "comment": " cosmetic"})
            child = stmt.get("block")
            out.append({**stmt, "block": sprinkle(child)} if isinstance(child, list) else stmt)
        return out

    text: str = crossplane.build(sprinkle(parsed), indent=rng.choice([1, 2, 3, 8]), tabs=rng.random() < 0.3)
    return text
