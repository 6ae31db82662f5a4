"""Traffic shares and the findings a reviewer must not miss."""

from __future__ import annotations

import pytest

from lbctl.semantic import diff_texts, parse_config, traffic_preview


def shares(text: str, pool: str = "backend b") -> dict[str, float | None]:
    preview = traffic_preview(parse_config("haproxy", text, filename="f"))
    (found,) = [p for p in preview.pools if p.section == pool]
    return {row.name: row.after for row in found.servers}


def codes(text: str, max_share: float | None = None) -> list[str]:
    preview = traffic_preview(parse_config("haproxy", text, filename="f"), max_share=max_share)
    return [f.code for f in preview.findings]


def test_weights_backup_and_disabled() -> None:
    text = "backend b\n server a 1.1.1.1:80 weight 3\n server c 1.1.1.2:80\n server d 1.1.1.3:80 disabled\n"
    text += " server e 1.1.1.4:80 backup\n"
    assert shares(text) == {"a": 0.75, "c": 0.25, "d": 0.0, "e": 0.0}


def test_backups_take_over_only_when_no_active_server() -> None:
    text = "backend b\n server a 1.1.1.1:80 weight 0\n server x 1.1.1.2:80 backup\n server y 1.1.1.3:80 backup\n"
    assert shares(text) == {"a": 0.0, "x": 1.0, "y": 0.0}
    assert shares(text.replace("backend b\n", "backend b\n option allbackups\n")) == {"a": 0.0, "x": 0.5, "y": 0.5}
    assert codes(text) == ["no-active-server"]


def test_first_algorithm_and_hash_is_approximate() -> None:
    text = "backend b\n balance first\n server a 1.1.1.1:80\n server c 1.1.1.2:80\n"
    assert shares(text) == {"a": 1.0, "c": 0.0}
    preview = traffic_preview(parse_config("haproxy", text.replace("first", "source"), filename="f"))
    assert preview.pools[0].approximate


def test_nginx_upstream_shares() -> None:
    text = "http { upstream u { server 10.0.0.1 weight=3; server 10.0.0.2; server 10.0.0.3 down; } }"
    preview = traffic_preview(parse_config("nginx", text, filename="nginx.conf"))
    assert [r.after for r in preview.pools[0].servers] == [0.75, 0.25, 0.0]


def test_findings_for_starved_servers_max_share_and_dead_routes() -> None:
    old = "frontend f\n use_backend b if TRUE\n default_backend gone\nbackend b\n server a 1.1.1.1:80\n"
    old += " server c 1.1.1.2:80\nbackend empty\n"
    new = old.replace("server c 1.1.1.2:80", "server c 1.1.1.2:80 weight 0")
    diff = diff_texts("haproxy", old, new, filename="f", max_share=0.6)
    assert sorted(f.code for f in diff.findings) == ["above-max-share", "route-to-missing-pool", "server-starved"]
    all_down = new.replace("server a 1.1.1.1:80", "server a 1.1.1.1:80 disabled")
    assert sorted(codes(all_down)) == ["no-usable-server", "route-to-empty-pool", "route-to-missing-pool"]


@pytest.mark.parametrize("max_share", [None, 0.5])
def test_single_server_pool_is_not_a_max_share_violation(max_share: float | None) -> None:
    assert codes("backend b\n server a 1.1.1.1:80\n", max_share) == []
