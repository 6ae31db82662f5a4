"""Commands from `lbctl.toml` (`validate`, `reload`, `command` checks), run as written.

The string a user writes is shell syntax: pipes, `&&`, redirections and `VAR=value`
assignments must work as they do in a terminal, so it runs as `/bin/sh -c STRING` on the
LB host. lbctl's own values go in through placeholders, each replaced by its value already
quoted for the shell (`shlex.quote`): a path with spaces, quotes or `$(...)` in it is one
word and is never parsed as shell code. So a placeholder is written bare in a command
(`haproxy -c -f {path}`), never inside quotes of its own.

Placeholders: `{path}` (the file the command is about: the staged candidate for
`validate`, the live file for `reload` and checks), `{master_socket}`, `{stats_socket}`,
`{prefix}` and `{target}`. Any other text in braces (`${HOME}`, awk's `{print $1}`) is
left to the shell.
"""

from __future__ import annotations

import re
import shlex
from typing import Protocol

from lbctl.errors import ConfigError

SHELL = "/bin/sh"
PLACEHOLDERS = ("path", "master_socket", "stats_socket", "prefix", "target")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_QUOTED_PLACEHOLDER = re.compile(r"""(['"])\{(""" + "|".join(PLACEHOLDERS) + r""")\}\1""")


class Placed(Protocol):
    """What the placeholders read from a target (`lbctl.config.Target` is one): no import of config here."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str | None: ...
    @property
    def master_socket(self) -> str | None: ...
    @property
    def stats_socket(self) -> str | None: ...
    @property
    def prefix(self) -> str | None: ...


def values_for(target: Placed, *, path: str | None = None) -> dict[str, str | None]:
    """What each placeholder stands for on `target` (`path` defaults to the live file)."""
    return {
        "path": path if path is not None else target.path,
        "master_socket": target.master_socket,
        "stats_socket": target.stats_socket,
        "prefix": target.prefix,
        "target": target.name,
    }


def shell_line(template: str, values: dict[str, str | None], *, key: str) -> str:
    """`template` with each placeholder replaced by its value, quoted for the shell.

    `key` names the setting (`targets.edge.reload`) in the error for a placeholder whose
    value the target does not have.
    """

    def quoted(found: re.Match[str]) -> str:
        value = values.get(found.group(1))
        if value is None:
            raise ConfigError(
                f"{key} uses {{{found.group(1)}}}, but the target has no `{found.group(1)}`",
                hint=f"set {found.group(1)} on the target, or write the value into the command",
            )
        return shlex.quote(value)

    return _PLACEHOLDER.sub(quoted, template)


def shell_argv(template: str, values: dict[str, str | None], *, key: str) -> list[str]:
    """The argv that runs `template` through the shell on the LB host."""
    return [SHELL, "-c", shell_line(template, values, key=key)]


def missing_placeholders(template: str, values: dict[str, str | None]) -> list[str]:
    """The placeholders `template` uses that have no value (`{stats_socket}` without a stats socket)."""
    return sorted({name for name in _PLACEHOLDER.findall(template) if values.get(name) is None})


def quoted_placeholder(template: str) -> str | None:
    """A placeholder the template puts in quotes itself (`'{path}'`), which lbctl's own quoting breaks."""
    found = _QUOTED_PLACEHOLDER.search(template)
    return found.group(0) if found else None


def shell_syntax(value: str | None) -> str | None:
    """`value` if it is a command `/bin/sh -c` can run as lbctl means it: balanced quotes, placeholders bare.

    A validator of `lbctl.toml`'s settings (`validate`, `reload`, `command` checks): the
    `ValueError` becomes a `ConfigError` naming the key.
    """
    if value is not None:
        try:
            shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"cannot be split into arguments ({exc}): check its quotes") from None
        quoted = quoted_placeholder(value)
        if quoted:
            raise ValueError(
                f"writes {quoted} in quotes: lbctl quotes placeholders itself, so write {quoted[1:-1]} bare"
            )
    return value
