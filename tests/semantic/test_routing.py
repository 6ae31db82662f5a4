"""The routing model (pure logic): where each class of request goes, what a change moves, its figures."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from lbctl.config import Safety
from lbctl.engine.gates import routing_radius
from lbctl.errors import ParseError
from lbctl.semantic import ConfigModel, parse_config, semantic_diff
from lbctl.semantic.routing import Request, compare, regex_sample, tables
from lbctl.semantic.routing_figures import with_counters
from tests.semantic.corpus import EXPECTED_ERRORS, corpus_files, read, root_of

BACKENDS = """
backend web
    server web1 10.0.0.1:80 weight 100
    server web2 10.0.0.2:80 weight 100
    server web3 10.0.0.3:80 weight 100
backend legacy
    server old1 10.0.1.1:80
backend api
    server a1 10.0.2.1:80
backend api_v2
    server v1 10.0.3.1:80
backend admin
    server c1 10.0.4.1:80
"""
FRONTEND = """
frontend www
    bind :80
    acl is_api path_beg /api
    use_backend api_v2 if { path_beg /api/v2 }
    use_backend api if is_api
    use_backend admin if { hdr(host) -i admin.example.com }
    default_backend web
"""


def haproxy(frontend: str = FRONTEND, backends: str = BACKENDS) -> ConfigModel:
    return parse_config("haproxy", frontend + backends, filename="haproxy.cfg")


def dest(model: ConfigModel, entry: str, path: str = "/", host: str = "www.example.com", method: str = "GET") -> str:
    return tables(model)[entry].dest(Request(path, host, method)).name


# -- HAProxy ------------------------------------------------------------------------------------


def test_haproxy_evaluation_order() -> None:
    model = haproxy(
        FRONTEND.replace(
            "    acl is_api",
            "    http-request deny if { path_beg /api/internal }\n"
            "    http-request return status 200 if { path /health } METH_GET\n"
            "    acl is_api",
        )
    )
    assert dest(model, "frontend www", "/api/internal/x") == "http-request deny (403)"
    assert dest(model, "frontend www", "/health") == "http-request return"
    assert dest(model, "frontend www", "/health", method="POST") == "web"
    assert dest(model, "frontend www", "/api/v2/x") == "api_v2"
    assert dest(model, "frontend www", "/api/x") == "api"
    assert dest(model, "frontend www", "/", host="ADMIN.example.com") == "admin"  # -i
    assert dest(model, "frontend www", "/") == "web"


def test_haproxy_conditions_unless_negation_or_and_repeated_acls() -> None:
    frontend = """
frontend www
    acl static path_end .css
    acl static path_end .js
    acl internal src 10.0.0.0/8
    use_backend legacy unless { path_beg /new } || internal
    use_backend api if static !internal
    default_backend web
"""
    model = haproxy(frontend)
    table = tables(model)["frontend www"]
    assert table.dest(Request("/old")).name == "legacy"
    assert table.dest(Request("/new/a.js")).name == "api"  # either line of `static`
    assert table.dest(Request("/new/a.js", opaque=frozenset({"src 10.0.0.0/8"}))).name == "web"  # !internal
    assert table.dest(Request("/old", opaque=frozenset({"src 10.0.0.0/8"}))).name == "web"  # unless A || B
    assert table.dest(Request("/new/page")).name == "web"
    assert any("`src`" in reason for reason in table.unmodelled)


def test_tcp_frontends_route_on_sni() -> None:
    frontend = "frontend tls\n    mode tcp\n    use_backend api if { req.ssl_sni -i api.example.com }\n"
    frontend += "    default_backend web\n"
    model = haproxy(frontend)
    assert dest(model, "frontend tls", host="api.example.com") == "api"
    assert dest(model, "frontend tls", host="www.example.com") == "web"
    assert not tables(model)["frontend tls"].unmodelled


def test_listen_defaults_and_no_backend() -> None:
    text = (
        "defaults\n    default_backend web\nfrontend a\n    bind :1\nfrontend b\n    bind :2\n    default_backend api\n"
    )
    model = parse_config("haproxy", text + BACKENDS, filename="h.cfg")
    assert dest(model, "frontend a") == "web" and dest(model, "frontend b") == "api"
    bare = parse_config("haproxy", "frontend a\n    bind :1\nlisten stats\n    bind :3\n" + BACKENDS, filename="h.cfg")
    assert tables(bare)["frontend a"].dest(Request()).kind == "none"
    assert dest(bare, "listen stats") == "stats"


@pytest.mark.parametrize(
    ("before", "after", "statement", "frm", "to", "scope"),
    [
        (
            "default_backend web",
            "default_backend legacy",
            "default traffic now goes to backend legacy (was backend web)",
            "web",
            "legacy",
            "backend",
        ),
        (
            "acl is_api path_beg /api",
            "acl is_api path_beg /",
            "requests matching `path_beg /` (was `path_beg /api`) now go to backend api (was backend web)",
            "web",
            "api",
            "backend",
        ),
        (
            "    use_backend api_v2 if { path_beg /api/v2 }\n    use_backend api if is_api\n",
            "    use_backend api if is_api\n    use_backend api_v2 if { path_beg /api/v2 }\n",
            "order swapped: requests matching both `path_beg /api/v2` and `path_beg /api` now go to backend api "
            "(was backend api_v2)",
            "api_v2",
            "api",
            "backend",
        ),
        (
            "use_backend api if is_api",
            "use_backend legacy if is_api",
            "requests matching `path_beg /api` now go to backend legacy (was backend api)",
            "api",
            "legacy",
            "backend",
        ),
        (
            "admin.example.com",
            "admin.exmaple.com",
            "requests matching `hdr(host) -i admin.example.com` now go to backend web (was backend admin): "
            "the rule now tests `hdr(host) -i admin.exmaple.com`",
            "admin",
            "web",
            "backend",
        ),
    ],
)
def test_haproxy_routing_mistakes_read_as_traffic(
    before: str, after: str, statement: str, frm: str, to: str, scope: str
) -> None:
    report = compare(haproxy(), haproxy(FRONTEND.replace(before, after)))
    change = next(c for c in report.changes if c.frm.name == frm and c.to.name == to)
    assert change.statement.startswith(statement), change.statement
    assert change.scope == scope and change.entry == "frontend www"
    move = next(m for m in report.moves if m.from_backend == frm and m.to_backend == to)
    assert move.basis == "bound" and move.share == 1.0 and move.pool_share == 1.0


def test_harmless_changes_move_nothing() -> None:
    old = haproxy()
    for text in (
        FRONTEND + BACKENDS.replace("weight 100", "weight 50"),
        FRONTEND.replace("bind :80", "bind :80\n    timeout client 5s") + BACKENDS,
        FRONTEND.replace("    acl is_api path_beg /api\n", "    acl is_api path_beg /api\n    # moved\n") + BACKENDS,
        # a backend renamed with the same servers: the same traffic on the same servers
        FRONTEND.replace("default_backend web", "default_backend www_pool") + BACKENDS.replace("web\n", "www_pool\n"),
    ):
        assert compare(old, parse_config("haproxy", text, filename="haproxy.cfg")).is_empty


def test_a_narrow_new_rule_moves_part_of_a_backend_without_a_figure() -> None:
    new = haproxy(FRONTEND.replace("    acl is_api", "    use_backend legacy if { path_beg /old }\n    acl is_api"))
    report = compare(haproxy(), new)
    assert {c.scope for c in report.changes} == {"part"}  # from web, and from admin (its host, under /old)
    change = next(c for c in report.changes if c.frm.name == "web")
    assert change.to.name == "legacy"
    assert change.statement == (
        "requests matching `path_beg /old` now go to backend legacy (was backend web) "
        "(new: `use_backend legacy if { path_beg /old }`)"
    )
    assert all(m.share is None and m.pool_share is None for m in report.moves)
    assert routing_radius(Safety(max_traffic_moved=0.5), None, report) == []


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("http-request lua.pick_backend", "runs Lua"),
        ("use_backend %[req.hdr(host),lower,map(/etc/haproxy/hosts.map)]", "chosen by a sample expression"),
        ("use_backend api if { path_beg -f /etc/haproxy/api.lst }", "reads its patterns from the file"),
        ("use_backend api if { req.cook(beta) -m found }", "`req.cook(beta)` is not modelled"),
        ("http-request set-path /v2%[path]", "rewrites the request before routing"),
    ],
)
def test_what_is_not_modelled_is_said(line: str, reason: str) -> None:
    new = haproxy(FRONTEND.replace("    acl is_api", f"    {line}\n    acl is_api"))
    diff = semantic_diff(haproxy(), new)
    messages = [f.message for f in diff.findings if f.code == "routing-not-modelled"]
    assert any(m.startswith("routing not modelled for frontend www: ") and reason in m for m in messages), messages


# -- figures and gates -------------------------------------------------------------------------


def test_counters_turn_the_outage_into_figures() -> None:
    old, new = haproxy(), haproxy(FRONTEND.replace("default_backend web", "default_backend legacy"))
    report = with_counters(compare(old, new), {"web": 960, "api": 30, "api_v2": 10, "legacy": 0}, "sampled", old, new)
    (move,) = report.moves
    assert move.basis == "counters" and move.share == pytest.approx(0.96)
    assert move.detail == (
        "~96% of frontend www's requests move from backend web (3 servers, weight 300) to backend legacy "
        "(1 server): load per server ×3 on old1; web1, web2, web3 get none"
    )
    assert move.peak_server == "old1" and move.peak_share == pytest.approx(0.96)
    problems = routing_radius(Safety(max_traffic_moved=0.5), 0.6, report)
    assert [p.rule for p in problems] == ["max_traffic_moved", "max_share"]
    assert problems[1].message == "server old1 of legacy would take ~96% of its requests (max_share 60%)"
    assert routing_radius(Safety(max_traffic_moved=1.0), None, report) == []
    # a receiving server already above max_share before the move is not this gate's to judge
    old = haproxy(FRONTEND.replace("    acl is_api", "    use_backend legacy if { path_beg /old }\n    acl is_api"))
    new = haproxy(FRONTEND.replace("default_backend web", "default_backend legacy"))
    busy = with_counters(compare(old, new), {"web": 10, "legacy": 90}, "sampled", old, new)
    assert busy.moves[0].peak_before == pytest.approx(0.9)
    assert routing_radius(Safety(max_traffic_moved=1.0), 0.6, busy) == []


def test_a_frontend_share_above_the_threshold_is_refused_without_a_whole_backend() -> None:
    old = haproxy()
    new = haproxy(FRONTEND.replace("use_backend api if is_api", "use_backend legacy if is_api"))
    counted = with_counters(compare(old, new), {"web": 10, "api": 70, "api_v2": 20}, "sampled", old, new)
    (move,) = counted.moves
    assert move.share == pytest.approx(0.7) and move.pool_share == 1.0
    (problem,) = routing_radius(Safety(max_traffic_moved=0.5), None, counted)
    assert problem.message.startswith("100% of api's requests now go to legacy (threshold 50%): ~70% of")


def test_diff_json_carries_the_routing_report() -> None:
    diff = semantic_diff(haproxy(), haproxy(FRONTEND.replace("default_backend web", "default_backend legacy")))
    data: dict[str, Any] = json.loads(json.dumps(diff.to_json()))
    routing = data["routing"]
    assert routing["basis"] == "bounds: no live counters were read"
    assert routing["changes"][0]["scope"] == "backend" and routing["changes"][0]["from"] == "web"
    assert routing["moves"][0] == {
        "frontend": "frontend www",
        "from_backend": "web",
        "to_backend": "legacy",
        "share": 1.0,
        "basis": "bound",
        "whole": True,
        "detail": "up to 100% of frontend www's requests (all that went to backend web (3 servers, weight 300)) "
        "now go to backend legacy (1 server): load per server ×3 on old1; web1, web2, web3 get none",
        "peak_server": "old1",
        "peak_share": None,
        "pool_share": 1.0,
        "peak_before": None,
    }


# -- nginx ----------------------------------------------------------------------------------------

NGINX = """
http {
    upstream web { server 10.0.0.1:80; server 10.0.0.2:80; }
    upstream api { server 10.0.2.1:80; }
    upstream static { server 10.0.5.1:80; }
    server {
        listen 80 default_server;
        server_name www.example.com;
        location = /exact { return 204; }
        location ^~ /static/ { proxy_pass http://static; }
        location ~* \\.(png|jpg)$ { proxy_pass http://static; }
        location /api/ { proxy_pass http://api; }
        location / { proxy_pass http://web; }
    }
    server {
        listen 80;
        server_name api.example.com *.api.example.com;
        location / { proxy_pass http://api; }
    }
}
"""


def test_nginx_location_precedence_and_server_names() -> None:
    model = parse_config("nginx", NGINX, filename="nginx.conf")
    (entry,) = tables(model)
    assert entry == "nginx listen *:80"
    assert dest(model, entry, "/exact") == "return 204"
    assert dest(model, entry, "/static/a.png") == "static"  # ^~ stops the regex search
    assert dest(model, entry, "/api/a.PNG") == "static"  # a regex beats a plain prefix
    assert dest(model, entry, "/api/a") == "api"
    assert dest(model, entry, "/other") == "web"
    assert dest(model, entry, "/", host="v1.api.example.com") == "api"
    assert dest(model, entry, "/", host="unknown.example.com") == "web"  # the default server


def test_nginx_lua_and_variables_are_named() -> None:
    old = parse_config("nginx", NGINX, filename="nginx.conf")
    new = parse_config(
        "nginx",
        NGINX.replace(
            "location /api/ { proxy_pass http://api; }", "location /api/ { proxy_pass http://$api_pool; }"
        ).replace("location = /exact { return 204; }", "location = /exact { content_by_lua_block { ngx.say(1) } }"),
        filename="nginx.conf",
    )
    messages = [f.message for f in semantic_diff(old, new).findings if f.code == "routing-not-modelled"]
    assert any("`content_by_lua_block` runs Lua" in m for m in messages), messages
    assert any("`http://$api_pool` holds a variable" in m for m in messages), messages


def test_nginx_regex_shadowing_a_prefix() -> None:
    old = parse_config("nginx", NGINX, filename="nginx.conf")
    new = parse_config(
        "nginx",
        NGINX.replace("location /api/ {", "location ~ ^/api { proxy_pass http://web; }\n location /api/ {"),
        filename="nginx.conf",
    )
    report = compare(old, new)
    change = next(c for c in report.changes if c.frm.name == "api")
    assert change.to.name == "web" and change.scope == "class"  # api.example.com still reaches api
    assert "the regex `server www.example.com › location ~ ^/api` is tried first and shadows it" in change.statement


# -- Caddy ---------------------------------------------------------------------------------------


def caddy(routes: list[dict[str, Any]]) -> ConfigModel:
    config = {"apps": {"http": {"servers": {"www": {"listen": [":80"], "routes": routes}}}}}
    return parse_config("caddy", json.dumps(config), filename="caddy.json")


def proxy(*dials: str) -> dict[str, Any]:
    return {"handler": "reverse_proxy", "upstreams": [{"dial": d} for d in dials]}


API = {"match": [{"path": ["/api/*"]}], "handle": [proxy("10.0.2.1:80")]}
WEB = {"handle": [proxy("10.0.0.1:80", "10.0.0.2:80")]}


def test_caddy_routes_groups_subroutes_and_order() -> None:
    grouped = [
        {"group": "g", "match": [{"host": ["*.example.com"]}], "handle": [proxy("10.0.9.9:80")]},
        {"group": "g", "handle": [{"handler": "subroute", "routes": [API, WEB]}]},
    ]
    model = caddy(grouped)
    assert dest(model, "server www", "/api/x", host="a.example.com") == "upstreams [10.0.9.9:80]"
    assert dest(model, "server www", "/api/x", host="other.org") == "upstreams [10.0.2.1:80]"
    assert dest(model, "server www", "/", host="other.org") == "upstreams [10.0.0.1:80, 10.0.0.2:80]"
    report = compare(caddy([API, WEB]), caddy([WEB, API]))
    (change,) = report.changes
    assert change.statement.startswith("order swapped: requests matching both `path /api/*` and `(all)`")
    assert change.scope == "backend" and report.moves[0].share == 1.0


def test_caddy_unknown_matchers_are_named() -> None:
    route = {"match": [{"remote_ip": {"ranges": ["10.0.0.0/8"]}}], "handle": [proxy("10.0.2.1:80")]}
    diff = semantic_diff(caddy([API, WEB]), caddy([route, API, WEB]))
    assert any("the matcher `remote_ip" in f.message for f in diff.findings)


# -- regexes, and the whole corpus ----------------------------------------------------------------


@pytest.mark.parametrize("pattern", [r"^/api", r"\.(png|jpg)$", r"^/v[0-9]+/users/\d+$", r"(?:a|b)+c", r"^/$"])
def test_regex_samples_match(pattern: str) -> None:
    sample = regex_sample(pattern)
    assert sample is not None and re.search(pattern, sample)


@pytest.mark.parametrize(
    ("kind", "rel"),
    [f for f in corpus_files() if f[1] not in EXPECTED_ERRORS],
    ids=[rel for _, rel in corpus_files() if rel not in EXPECTED_ERRORS],
)
def test_corpus_routing_changes_never_break(kind: str, rel: str) -> None:
    """Every corpus config, with a routing change made to it, is compared without an exception."""
    text = read(rel)
    if kind == "haproxy":
        changed = re.sub(r"^(\s*)default_backend\s+\S+", r"\1default_backend lbctl_other", text, count=1, flags=re.M)
        changed = re.sub(r"path_beg\s+(\S+)", "path_beg /", changed, count=1)
    else:
        changed = re.sub(r"location\s+(/\S*)\s*\{", r"location ~ ^\1 {", text, count=1)
    try:
        old = parse_config(kind, text, filename=rel, root=root_of(rel))
        new = parse_config(kind, changed, filename=rel, root=root_of(rel))
    except ParseError:
        return  # the corpus test holds these to their expected errors
    diff = semantic_diff(old, new)
    assert diff.routing.to_json() is not None
    if changed == text:
        assert diff.routing.is_empty


def test_text_and_markdown_read_one_line_per_rule() -> None:
    from lbctl.semantic import render_markdown, render_text

    new = haproxy(FRONTEND.replace("    acl is_api", "    use_backend legacy if { src 10.0.0.0/8 }\n    acl is_api"))
    diff = semantic_diff(haproxy(), new)
    assert len(diff.routing.changes) == 4  # from web, admin, api_v2 and api: one line says it
    text = render_text(diff)
    assert text.count("now go to backend legacy") == 1
    assert "(was backend web, backend admin, backend api_v2, backend api)" in text
    assert "part of the requests that went to web, admin, api_v2, api through frontend www now goes to legacy" in text
    markdown = render_markdown(diff)
    assert "#### Routing changes" in markdown and markdown.count("now go to backend legacy") == 1
