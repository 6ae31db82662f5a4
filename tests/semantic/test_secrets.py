"""No secret from a config leaves lbctl unmasked: every diff format, messages and errors.

Property tests: random secrets in every secret position of HAProxy, nginx and Caddy
configs (see secret_configs.py) never show in `lbctl diff` as text, JSON, Markdown or
unified, nor in error output; a change of a secret reads "secret changed".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbctl.masking import MASK, hide, mask_message, mask_text, seal_words
from tests.conftest import LbctlRunner, write
from tests.semantic.secret_configs import SECRET, TEMPLATES, fill, leaked

FORMATS = ("text", "json", "markdown", "unified")
KIND = {"haproxy": "haproxy", "nginx": "nginx", "caddy-json": "caddy", "caddyfile": "caddy"}
SUFFIX = {"haproxy": "cfg", "nginx": "conf", "caddy-json": "json", "caddyfile": "Caddyfile"}
SECRETS = st.lists(SECRET, min_size=2, max_size=4, unique=True)
# Two sets of secrets, none a prefix of another: the old and the new side of a diff.
PAIRS = st.lists(SECRET, min_size=4, max_size=6, unique_by=lambda s: s[:12]).map(lambda s: (s[:2], s[2:]))
FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def _diff_every_format(lbctl: LbctlRunner, tmp: Path, name: str, old: list[str], new: list[str]) -> None:
    template = TEMPLATES[name]
    a = write(tmp / f"old.{SUFFIX[name]}", fill(template, old))
    b = write(tmp / f"new.{SUFFIX[name]}", fill(template, new))
    for fmt in FORMATS:
        result = lbctl("diff", "--kind", KIND[name], str(a), str(b), "--format", fmt)
        assert result.code == 0, result.err
        assert not leaked(result.out + result.err, old + new), (fmt, result.out)
        assert MASK in result.out
        assert "secret changed" in result.out, (fmt, result.out)
    # A new secret position (the old side has none): shown masked, not in clear.
    empty = write(tmp / f"empty.{SUFFIX[name]}", "{}" if name == "caddy-json" else "")
    result = lbctl("diff", "--kind", KIND[name], str(empty), str(b), "--format", "unified")
    assert not leaked(result.out + result.err, new)


@pytest.mark.parametrize("name", ["haproxy", "nginx", "caddy-json"])
@settings(max_examples=12, deadline=None, suppress_health_check=FIXTURES)
@given(pair=PAIRS)
def test_no_diff_format_shows_a_secret(
    lbctl: LbctlRunner, tmp_path: Path, name: str, pair: tuple[list[str], list[str]]
) -> None:
    _diff_every_format(lbctl, tmp_path, name, *pair)


@settings(max_examples=3, deadline=None, suppress_health_check=FIXTURES)
@given(pair=PAIRS)
def test_no_diff_of_a_caddyfile_shows_a_secret(
    lbctl: LbctlRunner, tmp_path: Path, pair: tuple[list[str], list[str]]
) -> None:
    _diff_every_format(lbctl, tmp_path, "caddyfile", *pair)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@settings(max_examples=25, deadline=None)
@given(secrets=SECRETS)
def test_a_message_quoting_a_config_shows_no_secret(name: str, secrets: list[str]) -> None:
    """A validator's output or an error may quote any line of a config: the text masker finds them all."""
    text = fill(TEMPLATES[name], secrets)
    for shown in (mask_text(text), hide(text), mask_message(text)):
        assert not leaked(shown, secrets), shown
    # The same lines inside a unified diff, prefixed with + and -.
    prefixed = "\n".join(f"+{line}" for line in text.splitlines())
    assert not leaked(mask_message(prefixed), secrets)


@settings(max_examples=10, deadline=None, suppress_health_check=FIXTURES)
@given(secrets=SECRETS)
def test_parse_errors_show_no_secret(lbctl: LbctlRunner, tmp_path: Path, secrets: list[str]) -> None:
    good = write(tmp_path / "good.cfg", fill(TEMPLATES["haproxy"], secrets))
    for n, broken in enumerate(
        [
            # an unterminated quote on the secret's own line
            fill(TEMPLATES["haproxy"], secrets).replace('"Basic ', '"Basic \\"', 1) + '    acl x "\n',
            # a keyword out of any section, after secrets
            f"bogus {secrets[1]}\n" + fill(TEMPLATES["haproxy"], secrets),
            # a value the parser rejects and quotes: the same secret, out of its place
            fill(TEMPLATES["haproxy"], secrets) + f"backend b2\n    server s2 127.0.0.1:80 weight {secrets[1]}1\n",
        ]
    ):
        bad = write(tmp_path / f"bad{n}.cfg", broken)
        for fmt in FORMATS:
            result = lbctl("diff", "--kind", "haproxy", str(good), str(bad), "--format", fmt)
            assert result.code == 3, result.out + result.err
            assert str(bad) in result.err and "Traceback" not in result.err
            assert not leaked(result.out + result.err, secrets), result.err


def test_a_secret_quoted_out_of_context_in_an_error_is_masked(lbctl: LbctlRunner, tmp_path: Path) -> None:
    """The parse saw the secret in its place; an error that repeats it elsewhere still hides it."""
    secret = "QXZJKVWqxzjkvw2357"
    a = write(tmp_path / "a.cfg", f"frontend f\n    http-request set-header X-Api-Key {secret}\n")
    b = write(
        tmp_path / "b.cfg",
        f"frontend f\n    http-request set-header X-Api-Key {secret}\n"
        f"backend b\n    server s 10.0.0.1:80 weight {secret}\n",
    )
    result = lbctl("diff", "--kind", "haproxy", str(a), str(b))
    assert result.code == 3 and "b.cfg:4: invalid server weight '****'" in result.err, result.err
    assert secret not in result.err, result.err
    debug = lbctl("diff", "--kind", "haproxy", str(a), str(b), "--debug")
    assert "Traceback" in debug.err and secret not in debug.err, debug.err


@pytest.mark.parametrize(
    ("words", "shown"),
    [
        (["http-request", "set-header", "Authorization", "Basic qwerty def", "if", "x"], [3]),
        (["proxy_set_header", "X-Api-Key", "qwerty"], [2]),
        (["add_header", "X-Token", "qwerty", "always"], [2]),
        (["more_set_headers", "-s", "200", "X-Auth: qwerty"], [3]),
        (["user", "admin", "password", "$6$qwerty"], [3]),
        (["stats", "auth", "admin:qwerty"], [2]),
        (["secure_link_secret", "qwerty"], [1]),
        (["header", "@m", "Authorization", "Bearer qwerty"], [3]),
        (["header_up", "Cookie", "a=b"], [2]),
    ],
)
def test_the_parsers_seal_what_the_catalogue_names(words: list[str], shown: list[int]) -> None:
    sealed = seal_words(words)
    changed = [i for i, (a, b) in enumerate(zip(words, sealed, strict=True)) if a != b]
    assert changed == shown
    # "qwerty" has letters no hex seal holds, so a seal can never contain it by chance
    assert "qwerty" not in " ".join(sealed)


def test_ordinary_statements_are_left_alone() -> None:
    text = (
        "frontend www\n    bind :80\n    http-request set-header X-Forwarded-Proto https\n"
        "    default_backend web\nbackend web\n    server s1 10.0.0.1:80 check\n"
        "location / { proxy_set_header Host $host; proxy_pass http://app; }\n"
        "    capture request header Authorization len 64\n"
        "    http-check send meth GET uri /health hdr Host example.com\n"
    )
    assert mask_message(text) == text


@settings(max_examples=10, deadline=None)
@given(secrets=SECRETS)
def test_a_validator_quoting_a_parsed_secret_shows_none(secrets: list[str]) -> None:
    """nginx -t or HAProxy name a bad value without its context: once parsed, the value is known."""
    from lbctl.semantic import parse_config

    text = fill(TEMPLATES["nginx"], secrets)
    parse_config("nginx", text, filename="nginx.conf")
    value = f"{secrets[2 % len(secrets)]}2"  # what `proxy_set_header X-Api-Key` was given
    output = f'nginx: [emerg] invalid value "{value}" in /etc/nginx/nginx.conf:8\nfailed sample <{value}]>'
    assert not leaked(mask_message(output), secrets)
    assert "/etc/nginx/nginx.conf:8" in mask_message(output)


@pytest.mark.parametrize(
    "line",
    [
        '+\theader Authorization "Bearer abc123"',
        "-  @api header X-Api-Key abc123",
        "+    http-request set-header X-Api-Key abc123",
        "-proxy_set_header Authorization 'Basic abc123';",
        '+  "password": "abc123",',
    ],
)
def test_a_line_of_a_diff_is_masked(line: str) -> None:
    assert "abc123" not in mask_text(line) and MASK in mask_text(line)


def test_a_secret_that_changes_with_something_else_says_both() -> None:
    from lbctl.semantic import diff_texts

    old = "frontend f\n    stats auth admin:s3cretA1\n    http-request set-header X-Api-Key k3yA1 if { path /a }\n"
    new = "frontend f\n    stats auth root:s3cretB2\n    http-request set-header X-Api-Key k3yB2 if { path /b }\n"
    texts = [c.text for c in diff_texts("haproxy", old, new, filename="h.cfg").changes]
    assert texts == [
        "frontend f: secret changed: stats auth admin:**** → root:****",
        "frontend f: rule 1 changed (secret changed): http-request set-header X-Api-Key **** if { path /a } → "
        "http-request set-header X-Api-Key **** if { path /b }",
    ]
    same = diff_texts("haproxy", old, old.replace("/a", "/c"), filename="h.cfg").changes
    assert [c.text for c in same] == [
        "frontend f: rule 1 changed: http-request set-header X-Api-Key **** if { path /a } → "
        "http-request set-header X-Api-Key **** if { path /c }"
    ]
