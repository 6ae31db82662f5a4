"""Routing mistakes on a real HAProxy: refused by `check` and by `deploy` before any push, with figures.

The outage's change (default_backend web, 3 servers → legacy, 1 server) and the classic
routing mistakes (a catch-all ACL, a swapped `use_backend` order, a typo in a host rule)
move whole backends' traffic; harmless changes (a timeout, a server added to a pool) pass.
Traffic is sent through the LB first, so the figures come from its own counters.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from lbctl.kinds.haproxy import parse_show_proc
from lbctl.lab.processes import haproxy_config
from tests.conftest import Lab, LbctlRunner, git, write

EXTRA = """
backend legacy
    server old1 127.0.0.1:{web1} check inter 1s
backend api
    server api1 127.0.0.1:{web2} check inter 1s
backend api_v2
    server v2a 127.0.0.1:{web3} check inter 1s
backend admin
    server adm1 127.0.0.1:{web1} check inter 1s
"""
RULES = """\
    acl is_api path_beg /api
    use_backend api_v2 if { path_beg /api/v2 }
    use_backend api if is_api
    use_backend admin if { hdr(host) -i admin.example.com }
    default_backend web
"""


def config(lab: Lab, rules: str = "    default_backend web\n", extra: str = "") -> str:
    text = haproxy_config(
        frontend_port=lab.fe_port,
        backends=lab.backends.ports,
        stats_socket=lab.haproxy.stats_socket,
        extra_backends=EXTRA.format(**lab.backends.ports) + extra,
    )
    return text.replace("    default_backend web\n", rules)


def send(lab: Lab, path: str, n: int, host: str = "www.example.com") -> None:
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", lab.fe_port, timeout=5)
        conn.request("GET", path, headers={"Host": host})
        assert conn.getresponse().status == 200
        conn.close()


def reloads(lab: Lab) -> int:
    return parse_show_proc(lab.haproxy.master_command("show proc")).reloads


def adopt(store: Path, lab: Lab, lbctl: LbctlRunner, text: str) -> None:
    (store / "configs/edge/haproxy.cfg").write_text(text)
    git(store, "commit", "-qam", "baseline")
    result = lbctl("deploy", "edge", "--yes")
    assert result.code == 0, result.err


def refused_before_push(store: Path, lab: Lab, lbctl: LbctlRunner, bad: Path) -> str:
    """`check` fails and `deploy` exits 4 leaving the store, the LB file and its reload count as they were."""
    checked = lbctl("check", "edge", "--file", str(bad))
    assert checked.code == 3, checked.out + checked.err
    assert "max_traffic_moved" in checked.out
    head, live, count = git(store, "rev-parse", "HEAD"), lab.live_text(), reloads(lab)
    deployed = lbctl("deploy", "edge", "--file", str(bad), "--yes")
    assert deployed.code == 4, deployed.out + deployed.err
    assert "max_traffic_moved" in deployed.err and "nothing was pushed" in deployed.err
    assert git(store, "rev-parse", "HEAD") == head and lab.live_text() == live and reloads(lab) == count
    return checked.out


def test_the_outage_is_refused_with_figures(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    adopt(store, lab, lbctl, config(lab))
    send(lab, "/", 30)
    outage = write(tmp_path / "outage.cfg", config(lab, "    default_backend legacy\n"))
    out = refused_before_push(store, lab, lbctl, outage)
    assert "default traffic now goes to backend legacy (was backend web)" in out
    assert (
        "~100% of frontend www's requests move from backend web (3 servers, weight 300) to backend legacy "
        "(1 server): load per server ×3 on old1; web2, web3 get none"  # old1 is web1's address: it keeps some
    ) in out
    assert "the LB's counters, sampled over 1 s" in out or "cumulative counters" in out
    data = json.loads(lbctl("check", "edge", "--file", str(outage), "--json").out)
    (move,) = data["semantic"]["routing"]["moves"]
    assert move["frontend"] == "frontend www" and move["from_backend"] == "web" and move["to_backend"] == "legacy"
    assert move["basis"] == "counters" and move["share"] == 1.0 and move["peak_server"] == "old1"
    forced = lbctl("deploy", "edge", "--file", str(outage), "--yes", "--force", "--reason", "drill")
    assert forced.code != 4, forced.err
    assert "default_backend legacy" in lab.live_text()


@pytest.mark.parametrize(
    ("mistake", "before", "after", "says"),
    [
        (
            "catch-all ACL",
            "acl is_api path_beg /api",
            "acl is_api path_beg /",
            "requests matching `path_beg /` (was `path_beg /api`) now go to backend api "
            "(was backend web, backend admin)",
        ),
        (
            "swapped use_backend order",
            "    use_backend api_v2 if { path_beg /api/v2 }\n    use_backend api if is_api\n",
            "    use_backend api if is_api\n    use_backend api_v2 if { path_beg /api/v2 }\n",
            "order swapped: requests matching both `path_beg /api/v2` and `path_beg /api` now go to backend api "
            "(was backend api_v2)",
        ),
        (
            "host rule typo",
            "admin.example.com",
            "admin.exmaple.com",
            "requests matching `hdr(host) -i admin.example.com` now go to backend web (was backend admin)",
        ),
    ],
)
def test_routing_mistakes_are_refused(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path, mistake: str, before: str, after: str, says: str
) -> None:
    adopt(store, lab, lbctl, config(lab, RULES))
    send(lab, "/", 20)
    send(lab, "/api/items", 5)
    send(lab, "/api/v2/items", 5)
    send(lab, "/", 5, host="admin.example.com")
    assert before in RULES
    bad = write(tmp_path / "bad.cfg", config(lab, RULES.replace(before, after)))
    out = refused_before_push(store, lab, lbctl, bad)
    assert says in out, out
    assert "of frontend www's requests move from" in out  # a figure from the counters


@pytest.mark.parametrize("change", ["a timeout", "a server added to a pool"])
def test_harmless_changes_pass(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path, change: str) -> None:
    adopt(store, lab, lbctl, config(lab, RULES))
    text = config(lab, RULES)
    if change == "a timeout":
        text = text.replace("    timeout server 10s\n", "    timeout server 20s\n")
    else:
        web4 = f"    server web4 127.0.0.1:{lab.backends.ports['web1']} check inter 1s weight 100\n"
        text = text.replace("\nbackend legacy", f"{web4}\nbackend legacy")
    good = write(tmp_path / "good.cfg", text)
    checked = lbctl("check", "edge", "--file", str(good))
    assert checked.code == 0, checked.out
    assert "Routing changes" not in checked.out
    assert lbctl("deploy", "edge", "--file", str(good), "--yes").code == 0


def test_diff_of_two_files_shows_the_bound(lbctl: LbctlRunner, lab: Lab, tmp_path: Path) -> None:
    before = write(tmp_path / "before.cfg", config(lab))
    after = write(tmp_path / "after.cfg", config(lab, "    default_backend legacy\n"))
    result = lbctl("diff", "--kind", "haproxy", str(before), str(after))
    assert result.code == 0
    assert "~ default_backend web → legacy" in result.out
    assert "frontend www: default traffic now goes to backend legacy (was backend web)" in result.out
    assert "up to 100% of frontend www's requests (all that went to backend web (3 servers, weight 300))" in result.out
    markdown = lbctl("diff", "--kind", "haproxy", str(before), str(after), "--format", "markdown").out
    assert "#### Routing changes" in markdown and "#### Traffic moved" in markdown
    data = json.loads(lbctl("diff", "--kind", "haproxy", str(before), str(after), "--format", "json").out)
    assert data["routing"]["moves"][0]["basis"] == "bound" and data["routing"]["moves"][0]["share"] == 1.0
