"""HAProxy's configuration language: turning lines into words, and server options.

The rules follow section 2.2 ("Quoting and escaping") of HAProxy's configuration
manual: words are separated by spaces or tabs; `\\` escapes the next character
(`\\n`, `\\r`, `\\t` and `\\xNN` stand for control characters); double quotes
protect spaces, `#` and single quotes but still honour backslash escapes; single
quotes protect everything; `#` outside quotes starts a comment. HAProxy has no
line continuations: a trailing backslash escapes nothing. Environment variables
and varnishtest macros (`${s1_addr}`) are kept as opaque text, never expanded.
"""

from __future__ import annotations

from lbctl.errors import ParseError

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")


def split_words(line: str, *, filename: str, lineno: int) -> list[str]:
    """The words of one line, unquoted and unescaped; `[]` for a blank or comment line."""
    if '"' not in line and "'" not in line and "\\" not in line:
        hash_at = line.find("#")
        return (line if hash_at < 0 else line[:hash_at]).split()
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quote = ""
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                current.append(c)
        elif c == "\\" and i + 1 < n:
            i = _escape(line, i, current)
            in_word = True
        elif quote == '"':
            if c == '"':
                quote = ""
            else:
                current.append(c)
        elif c in " \t\r\n":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        elif c == "#":
            break
        elif c in "\"'":
            quote, in_word = c, True
        else:
            current.append(c)
            in_word = True
        i += 1
    if quote:
        raise ParseError(f"unterminated {'double' if quote == chr(34) else 'single'} quote", file=filename, line=lineno)
    if in_word:
        words.append("".join(current))
    return words


def _escape(line: str, i: int, out: list[str]) -> int:
    """Append the character escaped at `line[i]` (a backslash); return the index of its last char."""
    nxt = line[i + 1]
    if nxt in _ESCAPES:
        out.append(_ESCAPES[nxt])
        return i + 1
    if nxt == "x" and i + 3 < len(line) and line[i + 2] in _HEX and line[i + 3] in _HEX:
        out.append(chr(int(line[i + 2 : i + 4], 16)))
        return i + 3
    out.append(nxt)
    return i + 1


# Server and default-server keywords that take no argument (manual section 5.2, 2.6 to 3.x).
SERVER_FLAGS = frozenset(
    [
        "agent-check",
        "allow-0rtt",
        "backup",
        "check",
        "check-send-proxy",
        "check-ssl",
        "check-via-socks4",
        "check-reuse-pool",
        "disabled",
        "enabled",
        "force-sslv3",
        "force-tlsv10",
        "force-tlsv11",
        "force-tlsv12",
        "force-tlsv13",
        "no-agent-check",
        "no-backup",
        "no-check",
        "no-check-ssl",
        "no-send-proxy",
        "no-send-proxy-v2",
        "no-send-proxy-v2-ssl",
        "no-send-proxy-v2-ssl-cn",
        "no-ssl",
        "no-ssl-reuse",
        "no-sslv3",
        "no-tfo",
        "no-tls-tickets",
        "no-tlsv10",
        "no-tlsv11",
        "no-tlsv12",
        "no-tlsv13",
        "no-verifyhost",
        "non-stick",
        "send-proxy",
        "send-proxy-v2",
        "send-proxy-v2-ssl",
        "send-proxy-v2-ssl-cn",
        "ssl",
        "ssl-reuse",
        "stick",
        "tfo",
        "tls-tickets",
        "no-check-reuse-pool",
        "renegotiate",
        "no-renegotiate",
        "strict-maxconn",
        "sni-auto",
        "no-sni-auto",
        "no-strict-maxconn",
    ]
)

_NEED_VALUE = frozenset({"weight", "maxconn", "inter", "rise", "fall", "port", "addr", "cookie", "track"})

# A flag `no-X` undoes `X` set earlier (typically by `default-server`); `enabled` undoes `disabled`.
_NEGATIONS = {"enabled": "disabled", **{f: f[3:] for f in SERVER_FLAGS if f.startswith("no-")}}


def server_options(args: list[str], *, filename: str, lineno: int) -> list[tuple[str, str]]:
    """Pair each server option with its value ("" for a flag), in the order written."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(args)
    while i < n:
        word = args[i]
        if word in SERVER_FLAGS:
            pairs.append((word, ""))
            i += 1
            continue
        if i + 1 >= n:
            if word in _NEED_VALUE:
                raise ParseError(f"server option '{word}' expects an argument", file=filename, line=lineno)
            pairs.append((word, ""))  # e.g. `set-proxy-v2-tlv-fmt(0xE2)`, whose format is optional
            break
        value = args[i + 1]
        i += 2
        if word == "source":  # source <addr> [usesrc <addr>] [interface <name>]
            while i + 1 < n and args[i] in ("usesrc", "interface"):
                value = f"{value} {args[i]} {args[i + 1]}"
                i += 2
        pairs.append((word, value))
    return pairs


def merge_options(base: dict[str, str], pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Apply `pairs` over `base` (from default-server): later wins, `no-X` removes `X`."""
    merged = dict(base)
    for key, value in pairs:
        undone = _NEGATIONS.get(key)
        if undone is not None:
            merged.pop(undone, None)
            if key != "enabled":
                continue
        merged[key] = value
    merged.pop("enabled", None)
    return merged


def split_address(text: str) -> tuple[str, str | None]:
    """`10.0.0.1:80` -> (`10.0.0.1`, `80`); `[::1]:80`; `unix@/p` and `fd@x` have no port."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") and len(rest) > 1 else None
    if "@" in text.split(":", 1)[0] and not text.startswith(("ipv4@", "ipv6@", "tcp@", "tcp4@", "tcp6@")):
        return text, None
    # For a bare IPv6 address too, HAProxy reads the part after the last colon as the port.
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, None
    return host, port or None
