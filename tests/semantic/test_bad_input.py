"""Input that once crashed the parsers (exit 70) gets a correct diff or a clear error naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbctl.errors import ParseError
from lbctl.semantic import diff_texts, parse_config, render_markdown, render_text, semantic_diff
from tests.conftest import LbctlRunner, write
from tests.semantic.corpus import EXPECTED_ERRORS, corpus_files, read, root_of

FILES = [(kind, rel) for kind, rel in corpus_files() if rel not in EXPECTED_ERRORS]


@pytest.mark.parametrize(("kind", "rel"), FILES, ids=[rel for _, rel in FILES])
def test_every_corpus_file_diffs_against_an_empty_config(kind: str, rel: str) -> None:
    model = parse_config(kind, read(rel), filename=rel, root=root_of(rel))
    empty = parse_config(kind, "", filename="empty")
    for diff in (semantic_diff(empty, model), semantic_diff(model, empty)):
        assert not diff.is_empty or not model.sections
        render_text(diff)
        render_markdown(diff)
        json.dumps(diff.to_json())


def test_quote_behavior_shows_its_empty_words() -> None:
    rel = "nginx-crossplane/quote-behavior/nginx.conf"
    diff = diff_texts("nginx", "", read(rel), filename=rel)
    texts = sorted(c.text for c in diff.changes)
    assert texts == [
        'main: \'\' \'\' left-empty right-empty"" inner""empty right-empty-single" added',
        'main: outer-quote left -quote right-"quote" inner"-"quote added',
    ]


def test_an_empty_map_key_change_is_a_change() -> None:
    old = "http { map $a $b { '' x; default y; } }"
    new = "http { map $a $b { '' z; default y; } }"
    diff = diff_texts("nginx", old, new, filename="nginx.conf")
    assert [c.text for c in diff.changes] == ["map map $a $b: '' x → z"]


@pytest.mark.parametrize(
    ("kind", "text", "line", "column"),
    [
        ("nginx", "events {}\nhttp { server { listen 80\0; } }\n", 2, 26),
        ("nginx", "\0events {}\n", 1, 1),
        ("nginx", "events {}\nhttp {}\n# trailing\0", 3, 11),
        ("haproxy", "global\n    maxconn 10\0\n", 2, 15),
        ("caddy", '{"apps": {"http": {"servers": {"a\0": {}}}}}', 1, 34),
    ],
)
def test_a_nul_byte_is_a_parse_error_with_its_line(kind: str, text: str, line: int, column: int) -> None:
    with pytest.raises(ParseError) as caught:
        parse_config(kind, text, filename="lb.conf")
    assert (caught.value.file, caught.value.line) == ("lb.conf", line)
    assert f"NUL byte at column {column}" in str(caught.value)


def test_a_nul_byte_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    write(tmp_path / "conf.d/a.conf", "server { listen 8\x0080; }\n")
    with pytest.raises(ParseError) as caught:
        parse_config("nginx", "events {}\nhttp { include conf.d/*.conf; }\n", filename="nginx.conf", root=tmp_path)
    assert (caught.value.file, caught.value.line) == ("conf.d/a.conf", 1)


def test_cli_diff_of_a_nul_byte_and_of_quote_behavior(lbctl: LbctlRunner, tmp_path: Path) -> None:
    plain = write(tmp_path / "plain.conf", "events {}\nhttp { server { listen 80; } }\n")
    nul = write(tmp_path / "nul.conf", "events {}\nhttp { server { listen 80\0; } }\n")
    result = lbctl("diff", "--kind", "nginx", str(plain), str(nul))
    assert result.code == 3, result.out + result.err
    assert f"{nul}:2: NUL byte" in result.err and "Traceback" not in result.err
    quotes = write(tmp_path / "quotes.conf", read("nginx-crossplane/quote-behavior/nginx.conf"))
    for fmt in ("text", "json", "markdown", "unified"):
        for a, b in ((plain, quotes), (quotes, plain)):
            result = lbctl("diff", "--kind", "nginx", str(a), str(b), "--format", fmt)
            assert result.code == 0, result.out + result.err
            assert "outer-quote" in result.out


def test_json_old_file_names_the_old_file(lbctl: LbctlRunner, tmp_path: Path) -> None:
    a = write(tmp_path / "a.cfg", "backend web\n    server s1 127.0.0.1:80\n")
    (tmp_path / "other").mkdir()
    b = write(tmp_path / "other/b.cfg", "backend web\n    server s1 127.0.0.1:81\n")
    data = json.loads(lbctl("diff", "--kind", "haproxy", str(a), str(b), "--format", "json").out)
    assert (data["old_file"], data["new_file"]) == (str(a), str(b))
    assert (data["old"], data["new"]) == (str(a), str(b))
