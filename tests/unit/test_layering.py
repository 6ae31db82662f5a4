"""Which module may import which: the light modules stay light, and no import goes round in a circle."""

from __future__ import annotations

import subprocess
import sys


def _imported_by(statement: str) -> set[str]:
    """The modules (lbctl's, and pydantic) a fresh interpreter holds after running `statement`."""
    code = (
        f"import sys\ntry:\n    {statement}\nexcept SystemExit:\n    pass\n"
        "print(' '.join(m for m in sys.modules if m.startswith('lbctl') or m == 'pydantic'), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    return set(out.split())


def test_shell_commands_do_not_import_the_settings() -> None:
    # config validates commands with lbctl.shell: shell must not need config back (no cycle)
    assert "lbctl.config" not in _imported_by("import lbctl.shell")


def test_the_settings_import_no_plugin_and_no_pydantic() -> None:
    loaded = _imported_by("import lbctl.config")
    plugins = {m for m in loaded if m.count(".") == 2 and m.split(".")[1] in ("kinds", "transports", "checks")}
    # only the plugins' settings, which the schema collects
    assert plugins == {"lbctl.checks.settings", "lbctl.kinds.settings", "lbctl.transports.settings"}
    assert "pydantic" not in loaded


def test_help_imports_neither_settings_nor_registries() -> None:
    loaded = _imported_by("sys.argv = ['lbctl', '--help']; from lbctl.cli import main; main()")
    assert loaded == {"lbctl", "lbctl.errors", "lbctl.cli"}


def test_kind_transport_and_check_names_come_from_the_registries() -> None:
    # a kind, a transport and a check type registered in the one place reach every list of names
    code = (
        "from lbctl import checks, kinds, transports\n"
        "kinds.REGISTRY['envoy'] = ('x', 'Y'); transports.REGISTRY['k8s'] = ('x', 'Y')\n"
        "from lbctl import config, semantic\n"
        "from lbctl.config import schema\n"
        "import typing\n"
        "print(config.KINDS[-1], config.TRANSPORTS[-1], semantic.KINDS[-1], config.CHECKS == tuple(checks.REGISTRY))\n"
        "print(*typing.get_args(schema.KindName), *typing.get_args(schema.TransportName))\n"  # what pydantic checks
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[0].split() == ["envoy", "k8s", "envoy", "True"]
    assert out.split("\n")[1].split() == ["haproxy", "nginx", "caddy", "envoy", "local", "ssh", "http", "k8s"]
