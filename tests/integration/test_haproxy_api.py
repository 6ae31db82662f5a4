"""lbctl.kinds.haproxy_api against a real HAProxy: every reading goes through `ask` on its sockets."""

from __future__ import annotations

from lbctl.config import Target
from lbctl.kinds.haproxy_api import (
    QUERY,
    STATS_QUERY,
    ask,
    parse_runtime,
    parse_show_proc,
    parse_stats,
    show_info,
    show_proc,
)
from lbctl.transports.local import LocalTransport
from tests.conftest import Lab


def test_the_master_cli_and_the_runtime_api_agree_on_the_worker_and_the_servers(lab: Lab) -> None:
    master, stats = str(lab.haproxy.master_socket), str(lab.haproxy.stats_socket)
    target = Target(
        name="edge",
        kind="haproxy",
        source="configs/edge/haproxy.cfg",
        path=str(lab.haproxy.config),
        master_socket=master,
    )
    t = LocalTransport(target)
    proc = show_proc(t, master)
    assert proc == parse_show_proc(lab.haproxy.master_command("show proc"))  # as the lab reads it
    worker = show_info(t, stats)
    assert proc.workers == {worker.pid}

    counters = ask(t, stats, STATS_QUERY, parse_stats)
    assert counters.process == str(worker.pid)
    web = {s.server: s for s in counters.servers if s.backend == "web"}
    assert sorted(web) == sorted(lab.backends.ports) and all(s.weight == 100 for s in web.values())

    lab.haproxy.runtime_command("set server web/web2 weight 0")
    running = parse_runtime(ask(t, stats, QUERY, str))
    assert {name: s.weight for name, s in running["web"].items()} == {n: 0 if n == "web2" else 100 for n in web}
    assert all(s.backup is False for s in running["web"].values())  # `bck` read from the same `show stat`
    through_master = parse_runtime(ask(t, master, "@1 show servers state;@1 show stat", str))
    assert through_master == running
    assert ask(t, stats, STATS_QUERY, parse_stats).process == str(worker.pid)
