"""The differ reports what a reviewer must read, and nothing cosmetic."""

from __future__ import annotations

import json

from lbctl.semantic import diff_texts, render_markdown, render_text

BASE = """
global
    log stdout local0
defaults
    mode http
    timeout connect 5s
frontend www
    bind :80
    acl is_static path_beg /static
    http-request set-header X-A 1
    http-request set-header X-B 2
    default_backend web
backend web
    balance roundrobin
    server web1 10.0.0.1:80 weight 100 check inter 2s
    server web2 10.0.0.2:80 weight 100 check
backend static
    server s1 10.0.1.1:80
userlist admins
    user bob password $6$oldhash
listen stats
    bind :8404
    stats auth admin:oldpass
"""


def texts(old: str, new: str, kind: str = "haproxy") -> list[str]:
    return [c.text for c in diff_texts(kind, old, new, filename="f").changes]


def test_weight_change_reads_as_the_issue_says() -> None:
    new = BASE.replace("web2 10.0.0.2:80 weight 100", "web2 10.0.0.2:80 weight 0")
    assert texts(BASE, new) == ["backend web: server web2 weight 100 → 0"]


def test_added_routing_rule_is_numbered_in_its_chain() -> None:
    new = BASE.replace("    default_backend web", "    use_backend static if is_static\n    default_backend web")
    assert texts(BASE, new) == ["frontend www: rule 1 added: use_backend static if is_static"]


def test_cosmetic_edits_are_not_changes() -> None:
    new = (
        BASE.replace("    ", "\t")
        .replace("weight 100 check inter 2s", "check   inter 2s weight 100 # same")
        .replace(
            "backend static\n\tserver s1 10.0.1.1:80", "# moved\nbackend static\n\n\tserver s1 10.0.1.1:80 weight 1"
        )
        .replace("timeout connect 5s", 'timeout "connect" 5s')
    )
    assert texts(BASE, new) == []


def test_order_matters_for_rules_not_for_servers_or_settings() -> None:
    swapped_rules = BASE.replace(
        "http-request set-header X-A 1\n    http-request set-header X-B 2",
        "http-request set-header X-B 2\n    http-request set-header X-A 1",
    )
    assert texts(BASE, swapped_rules) == [
        "frontend www: http-request rules reordered: 1. http-request set-header X-B 2; 2. http-request set-header X-A 1"
    ]
    swapped_servers = BASE.replace(
        "    server web1 10.0.0.1:80 weight 100 check inter 2s\n    server web2 10.0.0.2:80 weight 100 check",
        "    server web2 10.0.0.2:80 weight 100 check\n    server web1 10.0.0.1:80 weight 100 check inter 2s",
    )
    assert texts(BASE, swapped_servers) == []


def test_server_added_removed_disabled_and_option_changes() -> None:
    new = (
        BASE.replace("web1 10.0.0.1:80 weight 100 check inter 2s", "web1 10.0.0.1:80 weight 100 check inter 5s")
        .replace("web2 10.0.0.2:80 weight 100 check", "web2 10.0.0.2:80 weight 100 check disabled")
        .replace("    server s1 10.0.1.1:80", "    server s2 10.0.1.2:80 backup")
    )
    assert texts(BASE, new) == [
        "backend web: server web1 inter 2s → 5s",
        "backend web: server web2 disabled",
        "backend static: server s2 added (10.0.1.2:80, weight 1, backup)",
        "backend static: server s1 removed (10.0.1.1:80, weight 1)",
    ]


def test_renamed_backend_is_one_change_plus_its_references() -> None:
    new = BASE.replace("backend web\n", "backend app\n").replace("default_backend web", "default_backend app")
    assert texts(BASE, new) == [
        "frontend www: default_backend web → app",
        "backend app: renamed from backend web",
    ]


def test_nginx_server_marked_down() -> None:
    old = "http {\n upstream app {\n  server 10.0.0.3:80;\n  server 10.0.0.4:80;\n }\n}\n"
    new = old.replace("10.0.0.3:80;", "10.0.0.3:80 down;")
    assert texts(old, new, "nginx") == ["upstream app: server 10.0.0.3:80 marked down"]


def test_nginx_regex_locations_are_ordered_prefix_locations_are_not() -> None:
    old = """http { server { listen 80;
        location ~ \\.php$ { return 200; }
        location ~ ^/api { return 201; }
        location /a { return 202; }
        location /b { return 203; }
    } }
    """
    prefix_swapped = old.replace(
        "location /a { return 202; }\n        location /b { return 203; }",
        "location /b { return 203; }\n        location /a { return 202; }",
    )
    assert texts(old, prefix_swapped, "nginx") == []
    regex_swapped = old.replace(
        "location ~ \\.php$ { return 200; }\n        location ~ ^/api { return 201; }",
        "location ~ ^/api { return 201; }\n        location ~ \\.php$ { return 200; }",
    )
    (change,) = texts(old, regex_swapped, "nginx")
    assert "location~ rules reordered" in change


def test_secrets_are_masked_in_every_rendering() -> None:
    new = BASE.replace("$6$oldhash", "$6$newhash").replace("admin:oldpass", "admin:newpass")
    diff = diff_texts("haproxy", BASE, new, filename="f")
    assert len(diff.changes) == 2
    rendered = [render_text(diff), render_text(diff, color=True), render_markdown(diff), json.dumps(diff.to_json())]
    for out in rendered:
        for secret in ("oldhash", "newhash", "oldpass", "newpass"):
            assert secret not in out
        assert "****" in out


def test_identical_and_empty() -> None:
    diff = diff_texts("haproxy", BASE, BASE, filename="f")
    assert diff.is_empty
    assert "No semantic changes." in render_text(diff)
