"""Pure logic of routing cases and replays: the `routes` keys, log lines, and the moved counts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lbctl import config
from lbctl.config import Route, Safety
from lbctl.engine.cases import judge_case
from lbctl.engine.gates import routing_radius
from lbctl.engine.replay import compare, parse_log, routing_moves
from lbctl.errors import ConfigError
from lbctl.sandbox import Answer
from lbctl.semantic.routing_model import RoutingReport

TOML = """\
[groups.edges]
[[groups.edges.routes]]
path = "/admin"
status = 403

[targets.edge]
kind = "haproxy"
source = "edge.cfg"
path = "/etc/haproxy/haproxy.cfg"
master_socket = "/run/haproxy-master.sock"
group = "edges"
replay_log = "/var/log/haproxy.log"

[[targets.edge.routes]]
path = "/api/orders"
method = "POST"
host = "shop.example.com"
headers = { "X-Tenant" = "acme" }
source = "10.1.2.3"
backend = "api"
server = "api2"
"""


def store_with(tmp_path: Path, text: str) -> Path:
    (tmp_path / "edge.cfg").write_text("global\n")
    (tmp_path / "lbctl.toml").write_text(text)
    return tmp_path / "lbctl.toml"


def test_routes_are_read_with_the_groups_first_and_survive_the_settings_cache(tmp_path: Path) -> None:
    path = store_with(tmp_path, TOML)
    loaded = config.load(path)
    routes = loaded.routes_for(loaded.targets["edge"])
    assert [(r.path, r.method, r.status, r.backend) for r in routes] == [
        ("/admin", "GET", 403, None),
        ("/api/orders", "POST", None, "api"),
    ]
    assert routes[1].headers == {"X-Tenant": "acme"} and loaded.targets["edge"].replay_lines == 2000
    code = (
        "import sys; from pathlib import Path; from lbctl import config\n"
        f"c = config.load(Path({str(path)!r}))\n"
        "print(c.routes_for(c.targets['edge']) == tuple(c.groups['edges'].routes + c.targets['edge'].routes),"
        " c.targets['edge'].routes[0].source, 'pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.split() == ["True", "10.1.2.3", "False"]  # from the cache, without pydantic


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ('backend = "api"', "unknown key `targets.edge.routes.0.bakend`"),
        ('path = "/api/orders"', "a route needs an expectation"),
        ('source = "10.1.2.3"', "is not an IP address"),
    ],
)
def test_bad_routes_name_the_key_and_line(tmp_path: Path, change: str, said: str) -> None:
    replacement = {
        'backend = "api"': 'bakend = "api"',
        'path = "/api/orders"': 'path = "/api/orders"\n[[targets.edge.routes]]\npath = "/x"',
        'source = "10.1.2.3"': 'source = "intranet"',
    }[change]
    path = store_with(tmp_path, TOML.replace(change, replacement))
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert said in str(caught.value) and "lbctl.toml:" in str(caught.value)


def test_log_lines_of_each_format_become_requests() -> None:
    lines = [
        "Nov 30 12:00:00 lb haproxy[7]: 10.1.2.3:4242 [30/Nov/2026:12:00:00.000] www~ api/api2 0/0/0/1/1 200 120 "
        '- - ---- 1/1/0/0/0 0/0 {shop.example.com|curl/8} "POST /api/orders?id=1 HTTP/1.1"',
        '10.9.8.7 - - [30/Nov/2026:12:00:01 +0000] "GET http://static.example.com/a.png HTTP/1.1" 200 5 "-" "x"',
        "DELETE - /cart/1",
        "garbage",
        "",
    ]
    requests, skipped = parse_log(lines)
    assert skipped == 1
    first, second, third = requests
    assert (first.method, first.path, first.host, first.source, first.listener) == (
        "POST",
        "/api/orders?id=1",
        "shop.example.com",
        "10.1.2.3",
        "www",
    )
    assert (second.path, second.host, second.source) == ("/a.png", "static.example.com", "10.9.8.7")
    assert (third.method, third.host, third.path) == ("DELETE", None, "/cart/1")


def answer(backend: str | None, server: str | None = None, status: int = 200, listener: str = "www") -> Answer:
    return Answer(listener, status, backend, server)


def test_moved_counts_backends_per_request_and_servers_by_spread() -> None:
    before = [answer("web", f"web{i % 3 + 1}") for i in range(30)] + [answer("api", "api1")] * 10
    after = [answer("web", "web1")] * 20 + [answer(None, status=403)] * 10 + [answer("api", "api1")] * 10
    result = compare("test", 0, before, after)
    (www,) = result.frontends
    # 10 web requests now get a 403; of the 20 still on web, the spread went 7/7/6 -> 20/0/0 (13 moved)
    assert (www.requests, www.moved_backend, www.moved_server, www.moved) == (40, 10, 13, 23)
    assert result.moved_share == pytest.approx(23 / 40)
    pairs = {(p.before, p.after): p.requests for p in result.pairs}
    assert pairs == {("web", "web"): 20, ("web", "(403)"): 10, ("api", "api"): 10}
    # the gate judges the backend moves (basis replay); the spread within web is the pool preview's business
    (move,) = routing_moves(result)
    assert (move.frontend, move.from_backend, move.to_backend, move.basis) == ("www", "web", "(403)", "replay")
    assert move.share == pytest.approx(10 / 40) and move.pool_share == pytest.approx(10 / 30)
    report = RoutingReport(moves=(move,))
    assert routing_radius(Safety(max_traffic_moved=0.5), None, report) == []
    (problem,) = routing_radius(Safety(max_traffic_moved=0.3), None, report)
    assert problem.text == (
        "max_traffic_moved: 33% of web's requests now go to (403) (threshold 30%): replay of 40 request(s) "
        "from test: 10 of www's 40 (25%) move from web to (403) [www]"
    )


def test_a_replayed_move_names_the_busiest_server_it_reaches() -> None:
    before = [answer("web", f"web{i % 3 + 1}") for i in range(30)]
    after = [answer("legacy", "old1")] * 30
    (move,) = routing_moves(compare("test", 0, before, after))
    assert (move.share, move.pool_share, move.peak_server, move.peak_share, move.peak_before) == (
        1.0,
        1.0,
        "old1",
        1.0,
        0.0,
    )
    found = routing_radius(Safety(max_traffic_moved=None), 0.6, RoutingReport(moves=(move,)))
    assert [p.rule for p in found] == ["max_share"]


def test_a_case_is_judged_on_each_expectation() -> None:
    route = Route(path="/", backend="web", server="web2", status=200)
    assert judge_case(route, answer("web", "web2")).ok
    failed = judge_case(route, answer("legacy", "old1"))
    assert failed.failures == (
        "expected backend web, got legacy/old1, status 200",
        "expected server web2, got legacy/old1, status 200",
    )
    assert judge_case(Route(path="/", status=403), Answer("www", None, None, None, "ConnectionRefusedError")).failures


def test_a_sandbox_that_could_not_run_is_a_note_for_the_gate_and_a_failure_for_lbctl_test() -> None:
    from lbctl.engine.cases import RoutingReport, problems

    report = RoutingReport("edge", "HEAD", "haproxy", unavailable="haproxy refused ...: cannot open /etc/x.lua")
    assert not report.ok and report.exit_code == 3
    assert problems(report) == ([], ["routing tests could not run: haproxy refused ...: cannot open /etc/x.lua"])
    junit = report.to_junit()
    assert 'errors="1"' in junit and "cannot open /etc/x.lua" in junit
