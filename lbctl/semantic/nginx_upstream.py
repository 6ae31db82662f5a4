"""nginx upstream details: `server` entries, balancing directives, and `*_pass` targets."""

from __future__ import annotations

from lbctl.errors import ParseError
from lbctl.semantic.model import Server

_BALANCERS = frozenset({"least_conn", "ip_hash", "hash", "random", "least_time", "sticky", "ntlm"})
_PASSES = frozenset({"proxy_pass", "grpc_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "memcached_pass"})
_FLAGS = frozenset({"backup", "down", "resolve", "drain"})


def parse_server(args: list[str], *, filename: str, line: int) -> Server:
    """An upstream `server ADDRESS [weight=N] [max_fails=N] [backup] [down] ...` entry."""
    if not args:
        raise ParseError("upstream 'server' needs an address", file=filename, line=line)
    address_text = args[0]
    options: dict[str, str] = {}
    for word in args[1:]:
        key, sep, value = word.partition("=")
        if not sep and key not in _FLAGS:
            raise ParseError(f"invalid parameter '{word}' in upstream server", file=filename, line=line)
        options[key] = value
    weight_text = options.pop("weight", "1")
    if not weight_text.isdigit() or int(weight_text) < 1:
        raise ParseError(f"invalid weight '{weight_text}' (nginx needs 1 or more)", file=filename, line=line)
    if options.get("max_fails") == "1":
        del options["max_fails"]  # the default
    if options.get("fail_timeout") == "10s":
        del options["fail_timeout"]  # the default
    backup = options.pop("backup", None) is not None
    down = options.pop("down", None) is not None
    host, port = split_host_port(address_text)
    return Server(
        name=address_text,
        address=host,
        port=port,
        weight=int(weight_text),
        backup=backup,
        disabled=down,
        check=False,
        options=tuple(sorted(options.items())),
        line=line,
    )


def split_host_port(text: str) -> tuple[str, str | None]:
    if text.startswith("unix:"):
        return text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, port
    return text, None


def balance_of(word: str, args: list[str]) -> str | None:
    """The balancing method an upstream directive selects, or None if it selects none."""
    if word in _BALANCERS:
        return " ".join((word, *args))
    return None


def route_target(word: str, args: list[str]) -> str | None:
    """The upstream name a `proxy_pass http://NAME/...` (or stream `proxy_pass NAME`) may refer to."""
    if word not in _PASSES or not args or "$" in args[0]:
        return None
    target = args[0]
    if "://" in target:
        target = target.split("://", 1)[1]
    target = target.split("/", 1)[0]
    if not target or target.startswith(("unix:", "[")) or ":" in target:
        return None
    return target
