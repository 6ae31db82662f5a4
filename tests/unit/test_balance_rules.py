"""The balance check's judgement on synthetic counters: real outages caught, incidents not worsened."""

from __future__ import annotations

from lbctl.checks.balance import judge
from lbctl.checks.counters import ServerCounters, Snapshot
from lbctl.config import BalanceCheck
from lbctl.kinds.haproxy import balance_algorithms

SPEC = BalanceCheck(type="balance")


def snap(process: str, *servers: tuple[str, int, str, int], errors: int = 0, answered: int = 0) -> Snapshot:
    rows = tuple(ServerCounters("web", name, sessions, status, weight) for name, sessions, status, weight in servers)
    total = sum(r.sessions for r in rows)
    return Snapshot(process, rows, {"web": total}, {"web": errors}, {"web": answered or total})


def rules(before: Snapshot, now: Snapshot, algorithms: dict[str, str] | None = None) -> list[str]:
    return [f.rule for f in judge(SPEC, before, now, ["web"], algorithms or {})]


SPREAD = snap("1", ("web1", 30, "UP", 100), ("web2", 30, "UP", 100), ("web3", 30, "UP", 100))


def test_the_outage_100_0_0_is_all_on_one() -> None:
    now = snap("2", ("web1", 40, "UP", 100), ("web2", 0, "UP", 0), ("web3", 0, "UP", 0))
    assert rules(SPREAD, now) == ["all-on-one"]


def test_a_server_down_during_an_incident_does_not_fail_an_unrelated_change() -> None:
    now = snap("2", ("web1", 40, "UP", 100), ("web2", 0, "DOWN", 100))
    before = snap("1", ("web1", 30, "UP", 100), ("web2", 30, "UP", 100))
    assert rules(before, now) == []
    already = snap("1", ("web1", 30, "UP", 100), ("web2", 0, "MAINT", 100))
    maint = snap("2", ("web1", 40, "UP", 100), ("web2", 0, "MAINT", 100))
    assert rules(already, maint) == []  # in maintenance before the change too


def test_servers_disabled_by_the_change_are_the_outage() -> None:
    before = snap("1", ("web1", 30, "UP", 100), ("web2", 30, "UP", 100), ("web3", 30, "UP", 100))
    now = snap("2", ("web1", 40, "UP", 100), ("web2", 0, "MAINT", 100), ("web3", 0, "MAINT", 100))
    assert rules(before, now) == ["all-on-one"]


def test_a_server_drained_before_the_change_is_not_evidence_against_it() -> None:
    before = snap("1", ("web1", 60, "UP", 100), ("web2", 0, "UP", 0))
    now = snap("2", ("web1", 40, "UP", 100), ("web2", 0, "UP", 0))
    assert rules(before, now) == []


def test_starved_in_service_server_is_hard() -> None:
    now = snap("2", ("web1", 20, "UP", 100), ("web2", 20, "UP", 100), ("web3", 0, "UP", 100))
    assert "starved" in rules(SPREAD, now)


def test_sticky_and_hashed_backends_are_not_judged_on_spread() -> None:
    now = snap("2", ("web1", 40, "UP", 100), ("web2", 0, "UP", 100), ("web3", 0, "UP", 100))
    assert rules(SPREAD, now, {"web": "sticky"}) == []
    assert rules(SPREAD, now, {"web": "source"}) == []
    text = "backend web\n    balance roundrobin\n    cookie SRV insert\n    server a 1.1.1.1:80\n"
    assert balance_algorithms(text) == {"web": "sticky"}


def test_5xx_is_judged_as_a_rise_over_the_baseline() -> None:
    before = snap("1", ("web1", 50, "UP", 100), ("web2", 50, "UP", 100), errors=6, answered=100)
    steady = snap("2", ("web1", 50, "UP", 100), ("web2", 50, "UP", 100), errors=8, answered=100)
    assert "5xx" not in rules(before, steady)  # 6 % → 8 %: within the 5-point bound
    worse = snap("2", ("web1", 50, "UP", 100), ("web2", 50, "UP", 100), errors=20, answered=100)
    assert "5xx" in rules(before, worse)


def test_traffic_that_left_a_backend_is_hard() -> None:
    before = Snapshot("1", SPREAD.servers, {"web": 90, "legacy": 0})
    now = Snapshot(
        "2", tuple(ServerCounters("legacy", "old1", 40, "UP", 1) for _ in range(1)), {"web": 0, "legacy": 40}
    )
    findings = judge(SPEC, before, now, ["legacy", "web"], {})
    assert [f.rule for f in findings] == ["traffic-moved"] and findings[0].hard


def test_a_silent_backend_is_judged_on_the_evidence_not_a_fixed_count() -> None:
    before = Snapshot("1", SPREAD.servers, {"web": 90, "legacy": 0})

    def now(real: int) -> Snapshot:
        return Snapshot("2", (ServerCounters("legacy", "old1", real, "UP", 1),), {"web": 0, "legacy": real})

    assert judge(SPEC, before, now(7), ["legacy", "web"], {}) == []  # 7 expected: not yet decisive
    assert [f.rule for f in judge(SPEC, before, now(8), ["legacy", "web"], {})] == ["traffic-moved"]
    # lbctl's own probes are not evidence: 30 sessions of which 25 were probes is 5 real ones
    assert judge(SPEC, before, now(30), ["legacy", "web"], {}, probes_sent=25) == []


def test_nginx_traffic_reads_the_semantic_model_of_the_live_config() -> None:
    from lbctl.kinds.nginx_traffic import algorithm, max_conns, read_view

    view = read_view(
        "pid /run/lbctl-test.pid;\n"
        "stream {\n  log_format tcp '$remote_addr';\n  access_log /var/log/stream.log tcp;\n"
        "  upstream db { server 10.0.0.9:5432; }\n  server { listen 5432; proxy_pass db; }\n}\n"
        "http {\n  log_format lbctl '$proxy_host $status $upstream_addr';\n"
        "  access_log /var/log/lbctl.log lbctl;\n  access_log off;\n"
        "  upstream web { least_conn; server 10.0.0.1:80 weight=3 max_conns=10; server 10.0.0.2:80 down;"
        " server 10.0.0.3:80 backup; }\n"
        "  upstream pinned { ip_hash; sticky cookie srv; server 10.0.0.4:80; }\n"
        "  server { listen 80; location / { proxy_pass http://web; } }\n}\n",
        filename="nginx.conf",
    )
    assert view.pid == "/run/lbctl-test.pid"
    assert view.access_logs == (("/var/log/lbctl.log", "lbctl"),)
    assert view.formats == {"combined": "", "lbctl": "$proxy_host $status $upstream_addr"}
    assert sorted(view.upstreams) == ["pinned", "web"]
    web = view.upstreams["web"]
    assert [(s.name, s.weight, s.disabled, s.backup, max_conns(s)) for s in web.servers] == [
        ("10.0.0.1:80", 3, False, False, 10),
        ("10.0.0.2:80", 1, True, False, None),
        ("10.0.0.3:80", 1, False, True, None),
    ]
    assert algorithm(web) == "leastconn"
    assert algorithm(view.upstreams["pinned"]) == "sticky"
