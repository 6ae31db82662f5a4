"""Which module may import which: the light modules stay light, and no import goes round in a circle."""

from __future__ import annotations

import subprocess
import sys


def _imported_by(statement: str) -> set[str]:
    """The lbctl modules a fresh interpreter holds after running `statement`."""
    code = f"import sys; {statement}; print(' '.join(m for m in sys.modules if m.startswith('lbctl')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_shell_commands_do_not_import_the_settings() -> None:
    # config validates commands with lbctl.shell: shell must not need config back (no cycle)
    assert "lbctl.config" not in _imported_by("import lbctl.shell")
