"""HAProxy's config, rewritten to run in a sandbox (see `lbctl.sandbox`).

Line by line, so that the binary reads the config as written everywhere else:
- `global`: no user, group, chroot, daemon, pid file, sockets, logs, CPU map, state file, or
  connection limits sized for the LB host's file limits; one thread;
- every `bind` of a frontend or listen section becomes one bind on the sandbox's address per
  port it had (`ssl` kept, with a generated certificate; PROXY protocol and the like dropped);
- every `server` (and each one a `server-template` names) points at its stub, keeping only
  what changes which server is chosen (weight, backup, disabled, cookie, maxconn...): health
  checks are off, so every server is taken as up, as the routing tests assume;
- `log` lines go; error files and the files maps and ACLs load come from the store when
  it has them (else the binary says which file it could not open);
- each frontend first takes the client's address from `X-Lbctl-Source` (`http-request
  set-src`), so rules on `src` see a case's `source`.
"""

from __future__ import annotations

import posixpath
import re

from lbctl.sandbox import Launch, Setup, binary
from lbctl.semantic.haproxy import SECTIONS
from lbctl.semantic.haproxy_syntax import server_options, split_address, split_words

SOURCE_HEADER = "X-Lbctl-Source"
_PROXIES = ("frontend", "listen", "backend", "defaults")
_SECTIONS = SECTIONS  # the parser's list: one list of HAProxy's section keywords
_GLOBAL_DROPPED = frozenset(
    [
        "user",
        "group",
        "uid",
        "gid",
        "chroot",
        "daemon",
        "pidfile",
        "stats",
        "log",
        "log-send-hostname",
        "master-worker",
        "cpu-map",
        "server-state-file",
        "server-state-base",
        "unix-bind",
        "nbproc",
        "localpeer",
        "ca-base",
        "crt-base",
        "log-tag",
        "nbthread",  # one thread: two sandboxes side by side use two cores without spinning on each other
        "thread-groups",
        "maxconn",  # sized for the LB host's file limits, not this machine's
        "ulimit-n",
        "fd-hard-limit",
    ]
)
_PROXY_DROPPED = frozenset(["log", "source", "external-check", "dispatch", "load-server-state-from-file"])
_SERVER_KEPT = frozenset(
    [
        "weight",
        "backup",
        "no-backup",
        "disabled",
        "enabled",
        "cookie",
        "maxconn",
        "minconn",
        "maxqueue",
        "id",
        "redir",
        "non-stick",
        "stick",
    ]
)
_FILE_REF = re.compile(r"(?:\bmap(?:_\w+)?\(|(?<!\S)-f\s+)(/[^,)\s]+)")


def rewrite(main: bytes, setup: Setup, *, filename: str) -> Launch:
    text = main.decode("utf-8", "replace")
    out: list[str] = []
    section, name = "", ""
    files: dict[str, str] = {}
    has_global = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        words = split_words(raw, filename=filename, lineno=lineno)
        if not words:
            out.append(raw)
            continue
        keyword = words[0]
        indent = raw[: len(raw) - len(raw.lstrip())] or "    "
        if keyword in _SECTIONS:  # as HAProxy reads it: a section keyword starts a section, indented or not
            section, name = keyword, (words[1] if len(words) > 1 else "")
            out.append(raw)
            if section == "global":
                out.append("    nbthread 1")
                has_global = True
            if section in ("frontend", "listen"):
                out.append(
                    f"    http-request set-src req.hdr({SOURCE_HEADER}) if {{ req.hdr({SOURCE_HEADER}) -m found }}"
                )
                out.append(f"    http-request del-header {SOURCE_HEADER}")
            continue
        if section == "global" and keyword in _GLOBAL_DROPPED:
            continue
        if section in _PROXIES and keyword in _PROXY_DROPPED:
            continue
        if section == "ring" and keyword == "server":
            continue
        if section in ("frontend", "listen") and keyword == "bind":
            out.extend(indent + line for line in _binds(words, setup, name))
            continue
        if section in ("backend", "listen") and keyword == "server" and len(words) >= 3:
            out.append(indent + _server(words[1], setup.stub(name, words[1]), words[3:], filename, lineno))
            continue
        if section in ("backend", "listen") and keyword == "server-template" and len(words) >= 4:
            for server in _template_names(words[1], words[2]):
                out.append(indent + _server(server, setup.stub(name, server), words[4:], filename, lineno))
            continue
        if section in _PROXIES and keyword == "default-server":
            out.append(indent + " ".join(["default-server", *_kept(words[1:], filename, lineno)]))
            continue
        if keyword == "errorfile" and len(words) >= 3:
            out.append(f"{indent}errorfile {words[1]} {_errorfile(words[1], words[2], setup)}")
            continue
        out.append(_with_files(raw, setup, files))
    if not has_global:
        out[:0] = ["global", "    nbthread 1"]
    setup.write("haproxy.cfg", ("\n".join(out) + "\n").encode())
    haproxy = binary("haproxy")
    return Launch([haproxy, "-db", "-f", str(setup.directory / "haproxy.cfg")], SOURCE_HEADER)


def _binds(words: list[str], setup: Setup, section: str) -> list[str]:
    """One sandbox bind per port the line listens on (`:80,:443` is two; `:8000-8010` its first)."""
    tls = "ssl" in words[2:]
    lines = []
    taken = {lst.port for lst in setup.listeners if lst.label == section}
    for part in (words[1] if len(words) > 1 else "").split(","):
        _, port_text = split_address(part)
        port = int(port_text.split("-")[0]) if port_text and port_text.split("-")[0].isdigit() else None
        if port in taken and port is not None:
            continue
        taken.add(port)
        host, sandbox_port = setup.listen(section, port, tls=tls)
        lines.append(f"bind {host}:{sandbox_port}" + (f" ssl crt {setup.certificate()}" if tls else ""))
    return lines


def _server(name: str, address: str, options: list[str], filename: str, lineno: int) -> str:
    return " ".join(["server", name, address, *_kept(options, filename, lineno)])


def _kept(options: list[str], filename: str, lineno: int) -> list[str]:
    kept: list[str] = []
    for key, value in server_options(options, filename=filename, lineno=lineno):
        if key in _SERVER_KEPT:
            kept.extend([key, value] if value else [key])
    return kept


def _template_names(prefix: str, count: str) -> list[str]:
    low, _, high = count.partition("-")
    first, last = (int(low), int(high)) if high else (1, int(low))
    return [f"{prefix}{i}" for i in range(first, last + 1)]


def _errorfile(status: str, path: str, setup: Setup) -> str:
    data = setup.find_file(path)
    if data is None:  # the page's content is not routing: a generated one serves the same status
        data = f"HTTP/1.0 {status} lbctl sandbox\r\nContent-Length: 0\r\n\r\n".encode()
    return str(setup.write(f"errors/{status}.http", data))


def _with_files(raw: str, setup: Setup, files: dict[str, str]) -> str:
    """The line with each map or ACL file it loads replaced by the store's copy, when there is one."""

    def swap(match: re.Match[str]) -> str:
        path = match.group(1)
        if path not in files:
            data = setup.find_file(path)
            if data is None:
                return match.group(0)  # the host's own file: the binary says if it is missing here
            files[path] = str(setup.write(f"files/{len(files)}-{posixpath.basename(path)}", data))
        return match.group(0).replace(path, files[path])

    return _FILE_REF.sub(swap, raw)
