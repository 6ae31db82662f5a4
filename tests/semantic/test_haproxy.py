"""HAProxy parser: words, sections, servers with their defaults, rules, errors."""

from __future__ import annotations

import pytest

from lbctl.errors import ExitCode, ParseError
from lbctl.semantic import parse_config
from lbctl.semantic.haproxy_syntax import split_address, split_words
from lbctl.semantic.model import ConfigModel, Section


def parse(text: str) -> ConfigModel:
    return parse_config("haproxy", text, filename="haproxy.cfg")


def section(model: ConfigModel, type_: str, name: str = "") -> Section:
    found = model.section(type_, name)
    assert found is not None, [s.label for s in model.sections]
    return found


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("  server a 10.0.0.1:80 check # comment", ["server", "a", "10.0.0.1:80", "check"]),
        ("log-format %{+Q}o\\ %t\\ %s", ["log-format", "%{+Q}o %t %s"]),
        ('log-format "%{+Q}o %t %s"', ["log-format", "%{+Q}o %t %s"]),
        ("log-format '%{+Q}o %t %s'", ["log-format", "%{+Q}o %t %s"]),
        ("log-format \"%{+Q}o %t\"' %s'", ["log-format", "%{+Q}o %t %s"]),
        ("acl h hdr(x) 'a#b' \"c#d\" e\\#f", ["acl", "h", "hdr(x)", "a#b", "c#d", "e#f"]),
        ("x '\\n' \"\\n\" \\x41", ["x", "\\n", "\n", "A"]),
        ('x ""', ["x", ""]),
        ("   # only a comment", []),
        ("server s1 ${s1_addr}:${s1_port}", ["server", "s1", "${s1_addr}:${s1_port}"]),
    ],
)
def test_split_words_follows_the_manuals_quoting(line: str, words: list[str]) -> None:
    assert split_words(line, filename="f", lineno=1) == words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1:80", ("10.0.0.1", "80")),
        ("10.0.0.1", ("10.0.0.1", None)),
        ("[::1]:8080", ("::1", "8080")),
        ("unix@/run/x.sock", ("unix@/run/x.sock", None)),
        ("${s1_addr}:${s1_port}", ("${s1_addr}", "${s1_port}")),
        ("srv.example.com:443", ("srv.example.com", "443")),
    ],
)
def test_split_address(text: str, expected: tuple[str, str | None]) -> None:
    assert split_address(text) == expected


def test_every_section_type_is_recognised() -> None:
    text = """
global
    daemon
defaults base
    mode http
frontend www
    bind :80
backend app from base
    server a 10.0.0.1:80
listen stats
    bind :8404
userlist admins
    user bob password $6$hash
peers mypeers
    peer p1 127.0.0.1:10000
resolvers dns
    nameserver ns1 127.0.0.1:53
mailers mta
    mailer smtp1 127.0.0.1:25
program exporter
    command /usr/bin/exporter
http-errors site
    errorfile 503 /etc/haproxy/503.http
ring buf
    size 32764
cache c
    total-max-size 4
log-forward lf
    dgram-bind 127.0.0.1:1514
crt-store
    load crt a.pem
traces
    trace h1 sink stderr
log-profile prof
    on accept format "%ci"
"""
    types = [s.type for s in parse(text).sections]
    assert types == [
        "global", "defaults", "frontend", "backend", "listen", "userlist", "peers", "resolvers", "mailers",
        "program", "http-errors", "ring", "cache", "log-forward", "crt-store", "traces", "log-profile",
    ]  # fmt: skip


def test_servers_take_default_server_and_inherited_defaults() -> None:
    model = parse("""
defaults
    balance leastconn
    default-server weight 50 check inter 2s
backend app
    default-server backup
    server a 10.0.0.1:80 no-backup
    server b 10.0.0.2:80 weight 10 no-check
    server c 10.0.0.3:80 disabled
""")
    app = section(model, "backend", "app")
    a, b, c = app.servers
    assert (a.weight, a.backup, a.check, dict(a.options)) == (50, False, True, {"inter": "2s"})
    assert (b.weight, b.backup, b.check) == (10, True, False)
    assert c.disabled and c.backup
    assert app.balance == "leastconn"


def test_named_defaults_and_from() -> None:
    model = parse("""
defaults one
    balance source
defaults two
    balance first
backend a from one
    server s 1.1.1.1:80
backend b
    server s 1.1.1.1:80
""")
    assert section(model, "backend", "a").balance == "source"
    assert section(model, "backend", "b").balance == "first"


def test_rules_are_ordered_chains_and_acls_are_settings() -> None:
    model = parse("""
frontend www
    acl is_static path_beg /static
    http-request deny if { src 10.0.0.0/8 }
    use_backend static if is_static
    http-request set-header X-A 1
    tcp-request content accept if HTTP
    default_backend web
""")
    www = section(model, "frontend", "www")
    assert [(r.chain, r.text) for r in www.rules] == [
        ("http-request", "http-request deny if { src 10.0.0.0/8 }"),
        ("use_backend", "use_backend static if is_static"),
        ("http-request", "http-request set-header X-A 1"),
        ("tcp-request content", "tcp-request content accept if HTTP"),
    ]
    assert ("acl is_static", "path_beg /static") in [(s.key, s.value) for s in www.settings]
    assert [r.target for r in www.routes] == ["static", "web"]


def test_server_template_expands() -> None:
    app = section(parse("backend app\n    server-template web 1-3 10.0.0.1:80 check\n"), "backend", "app")
    assert [s.name for s in app.servers] == ["web1", "web2", "web3"]


def test_conditional_blocks_label_what_they_guard() -> None:
    model = parse("global\n.if feature(THREAD)\n    nbthread 4\n.else\n    nbthread 1\n.endif\n")
    keys = [s.key for s in section(model, "global").settings]
    assert keys == ["[if feature(THREAD)] nbthread", "[if feature(THREAD) else] nbthread"]


def test_secrets_are_sealed_in_the_model() -> None:
    model = parse("userlist u\n    user bob insecure-password hunter2\nlisten s\n    stats auth admin:s3cret\n")
    assert "hunter2" not in repr(model)
    assert "s3cret" not in repr(model)


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("global\n    log 'unterminated\n", 2, "unterminated single quote"),
        ("mode http\n", 1, "out of section"),
        ("backend\n", 1, "needs a name"),
        ("backend b\n    server s1 10.0.0.1:80 weight x\n", 2, "invalid server weight"),
        ("backend b\n    server s1 10.0.0.1:80 weight 300\n", 2, "above 256"),
        ("backend b\n    server s1\n", 2, "needs a name and an address"),
        ("frontend f\n    use_backend\n", 2, "needs a backend name"),
        ("global\n.if defined(X)\n", 2, "not closed"),
        ("global\n.endif\n", 2, "without a matching"),
        ("backend b from nowhere\n", 1, "not found"),
    ],
)
def test_malformed_input_is_a_parse_error_naming_the_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(text)
    assert caught.value.line == line
    assert caught.value.file == "haproxy.cfg"
    assert needle in str(caught.value)
    assert caught.value.exit_code == ExitCode.VALIDATION


def test_balance_algorithms_read_the_model_with_its_defaults_and_stickiness() -> None:
    from lbctl.semantic.haproxy import balance_algorithms

    model = parse(
        "defaults base\n    balance source\n"
        "defaults plain\n"
        "backend rr\n    server a 10.0.0.1:80\n"
        "backend hashed from base\n    balance url_param userid check_post\n    server a 10.0.0.1:80\n"
        "backend inherited from base\n    server a 10.0.0.1:80\n"
        "listen pinned\n    bind :80\n    .if defined(STICK)\n    stick on src\n    .endif\n"
        "    server a 10.0.0.1:80\n"
        "  backend cookied\n    balance leastconn\n    cookie SRV insert\n    server a 10.0.0.1:80\n"
        "crt-store certs\n    crt-base /etc/ssl\n"
    )
    assert balance_algorithms(model) == {
        "rr": "roundrobin",  # the last defaults says nothing: HAProxy starts each defaults afresh
        "hashed": "url_param",
        "inherited": "source",
        "pinned": "sticky",
        "cookied": "sticky",
    }
