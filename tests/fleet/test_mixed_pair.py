"""An HA pair of two brands: HAProxy and nginx in one group, one change, one consistent undo."""

from __future__ import annotations

import json
from pathlib import Path

from lbctl.lab.processes import free_port
from lbctl.lab.webservers import Nginx, nginx_config
from tests.conftest import LbctlRunner
from tests.fleet.conftest import FleetFactory, git

DEAD_UPSTREAM = "\n    upstream maintenance {{\n        server 127.0.0.1:{port};\n    }}\n"


def test_haproxy_and_nginx_pair_failure_on_nginx_puts_haproxy_back(
    make_fleet: FleetFactory, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    fleet = make_fleet(1, rollout='batches = ["100%"]')
    port, dead = free_port(), free_port()

    def conf(route_to: str) -> str:
        extra = DEAD_UPSTREAM.format(port=dead)
        return nginx_config(frontend_port=port, backends=fleet.backends.ports, route_to=route_to, extra_upstreams=extra)

    nginx = Nginx.start(tmp_path / "nginx", conf("web"), port=port)
    try:
        (fleet.store / "configs" / "edge2.conf").write_text(conf("web"))
        with (fleet.store / "lbctl.toml").open("a") as f:
            f.write(
                f'\n[targets.edge2]\nkind = "nginx"\nsource = "configs/edge2.conf"\npath = "{nginx.config}"\n'
                f'prefix = "{nginx.prefix}"\n\n[[targets.edge2.checks]]\ntype = "http"\n'
                f'url = "http://127.0.0.1:{port}/"\nprobes = 1\n'
            )
        git(fleet.store, "add", "-A")
        git(fleet.store, "commit", "-q", "-m", "nginx joins the pair")
        assert lbctl("pull", "edge2").code == 0
        before = (fleet.live("edge1"), nginx.config.read_text())

        # HAProxy's half of the change is fine; nginx's sends every request to a dead upstream.
        (fleet.store / "configs" / "edge1.cfg").write_text(fleet.config("edge1", spare=True))
        (fleet.store / "configs" / "edge2.conf").write_text(conf("maintenance"))
        git(fleet.store, "commit", "-q", "-am", "The pair's change")

        result = lbctl("deploy", "@edge", "--yes", "--json")

        assert result.code == 1, result.out + result.err
        runs = {m["name"]: m["verdict"] for m in json.loads(result.out)["members"]}
        assert runs == {"edge1": "restored", "edge2": "rolled-back"}
        assert (fleet.live("edge1"), nginx.config.read_text()) == before
        assert fleet.state("edge1").status == "good" and fleet.state("edge2").status == "good"
    finally:
        nginx.stop()
