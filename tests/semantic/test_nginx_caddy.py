"""nginx (crossplane) and Caddy (JSON, or Caddyfile through `caddy adapt`) parsers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lbctl.errors import ParseError
from lbctl.semantic import diff_texts, parse_config

NGINX = """
events {}
http {
    upstream app {
        least_conn;
        server 10.0.0.1:80 weight=5 max_fails=3;
        server 10.0.0.2:80 backup;
        server unix:/run/app.sock down;
    }
    server {
        listen 80;
        server_name example.com;
        location /api { proxy_pass http://app; }
        include conf.d/*.conf;
    }
}
"""


def test_nginx_upstreams_servers_and_locations(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "extra.conf").write_text("location /extra { return 204; }\n")
    model = parse_config("nginx", NGINX, filename="nginx.conf", root=tmp_path)
    app = model.section("upstream", "app")
    assert app is not None and app.balance == "least_conn"
    assert [(s.name, s.weight, s.backup, s.disabled) for s in app.servers] == [
        ("10.0.0.1:80", 5, False, False),
        ("10.0.0.2:80", 1, True, False),
        ("unix:/run/app.sock", 1, False, True),
    ]
    assert dict(app.servers[0].options) == {"max_fails": "3"}
    labels = [s.label for s in model.sections]
    assert "location example.com (80) › /api" in labels
    assert "location example.com (80) › /extra" in labels  # resolved from the store
    assert not model.notes


def test_nginx_includes_without_a_root_stay_unresolved() -> None:
    model = parse_config("nginx", NGINX, filename="nginx.conf")
    assert [n.code for n in model.notes] == ["unresolved-include"]


def test_nginx_included_file_change_is_a_change(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "extra.conf").write_text("location /extra { return 204; }\n")
    old = parse_config("nginx", NGINX, filename="nginx.conf", root=tmp_path)
    (tmp_path / "conf.d" / "extra.conf").write_text("location /extra { return 404; }\n")
    new = parse_config("nginx", NGINX, filename="nginx.conf", root=tmp_path)
    assert old != new


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("http {\n  server {\n    listen 80\n  }\n}\n", 3, 'not terminated by ";"'),
        ("user;\n", 1, "invalid number of arguments"),
        ("http {\n  upstream u { server 10.0.0.1 weight=0; }\n}\n", 2, "invalid weight"),
        ("http {\n  server {\n", 2, "unexpected end of file"),
    ],
)
def test_nginx_malformed_input(text: str, line: int, needle: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_config("nginx", text, filename="nginx.conf")
    assert (caught.value.file, caught.value.line) == ("nginx.conf", line)
    assert needle in str(caught.value)


def test_nginx_include_cycle_is_a_parse_error(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("include a.conf;\n")
    with pytest.raises(ParseError, match="includes itself"):
        parse_config("nginx", "include a.conf;\n", filename="nginx.conf", root=tmp_path)


CADDY = {
    "apps": {
        "http": {
            "servers": {
                "srv0": {
                    "listen": [":443"],
                    "routes": [
                        {
                            "match": [{"host": ["example.com"]}],
                            "handle": [
                                {
                                    "handler": "reverse_proxy",
                                    "load_balancing": {"selection_policy": {"policy": "round_robin"}},
                                    "upstreams": [{"dial": "10.0.0.1:80"}, {"dial": "10.0.0.2:80"}],
                                }
                            ],
                        }
                    ],
                }
            }
        }
    }
}


def test_caddy_json_reverse_proxy_pool() -> None:
    model = parse_config("caddy", json.dumps(CADDY), filename="caddy.json")
    (pool,) = model.pools()
    assert pool.label == "reverse_proxy srv0 › host example.com"
    assert pool.balance == "round_robin"
    assert [s.endpoint for s in pool.servers] == ["10.0.0.1:80", "10.0.0.2:80"]


def test_caddy_json_reformatted_is_no_change_and_upstream_removal_is() -> None:
    old = json.dumps(CADDY)
    assert diff_texts("caddy", old, json.dumps(CADDY, indent=4), filename="caddy.json").is_empty
    smaller = json.loads(old)
    smaller["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"][0]["upstreams"].pop()
    (change,) = diff_texts("caddy", old, json.dumps(smaller), filename="caddy.json").changes
    assert change.text == "reverse_proxy srv0 › host example.com: server 10.0.0.2:80 removed (weight 1)"


def test_caddy_bad_json_names_the_line() -> None:
    with pytest.raises(ParseError) as caught:
        parse_config("caddy", '{\n  "apps": ,\n}', filename="caddy.json")
    assert caught.value.line == 2


def test_caddyfile_is_adapted_and_errors_name_the_line() -> None:
    text = "example.com {\n\treverse_proxy 10.0.0.1:80 10.0.0.2:80 {\n\t\tlb_policy first\n\t}\n}\n"
    model = parse_config("caddy", text, filename="Caddyfile")
    (pool,) = model.pools()
    assert pool.balance == "first"
    with pytest.raises(ParseError) as caught:
        parse_config("caddy", "example.com {\n\tbogus 1\n}\n", filename="Caddyfile")
    assert (caught.value.file, caught.value.line) == ("Caddyfile", 2)


def test_caddyfile_without_caddy_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ParseError, match="needs the `caddy` binary"):
        parse_config("caddy", "example.com {\n\treverse_proxy a:80\n}\n", filename="Caddyfile")
