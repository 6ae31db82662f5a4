"""`lbctl test`, and the routing gate of `check` and `deploy`, through the CLI on real binaries."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from xml.etree import ElementTree

from tests.conftest import Lab, LbctlRunner, git, write

LEGACY = """
backend legacy
    server old1 127.0.0.1:9 check
"""

ROUTES = """
[[targets.edge.routes]]
path = "/"
backend = "web"

[[targets.edge.routes]]
name = "the API keeps its pool"
path = "/api/orders"
method = "POST"
host = "www.example.com"
backend = "api"
"""

HAPROXY = """\
global
    stats socket /run/haproxy/admin.sock mode 660 level admin
    user haproxy
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend www
    bind :80
    use_backend api if { path_beg /api }
    default_backend web
backend web
    server web1 10.0.0.1:80 check
    server web2 10.0.0.2:80 check
backend api
    server api1 10.0.0.9:80 check
backend legacy
    server old1 10.0.0.5:80 check
"""


def leftovers() -> list[str]:
    """Any sandbox process of this test still running (the LB binaries name the sandbox's directory).

    Only those started with this test's own TMPDIR (tests/routing/conftest.py): a test in another
    worker may have sandboxes running right now.
    """
    found = subprocess.run(["pgrep", "-af", "lbctl-sandbox-|lbctl.sandbox.stub"], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line and _ours(int(line.split()[0]))]


def _ours(pid: int) -> bool:
    mine = f"TMPDIR={tempfile.gettempdir()}".encode()
    try:
        return mine in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone meanwhile
        return False


def offline_store(tmp_path: Path, lbctl: LbctlRunner, kind: str, source: str, text: str, extra: str) -> Path:
    """A store whose target is never contacted: `lbctl test` runs on this machine only."""
    root = tmp_path / "store"
    assert lbctl("init", str(root)).code == 0
    write(root / source, text)
    transport = 'transport = "http"\napi = "http://127.0.0.1:9"' if kind == "caddy" else 'path = "/etc/lb.conf"'
    socket = 'master_socket = "/run/haproxy-master.sock"\n' if kind == "haproxy" else ""
    toml = f'[targets.edge]\nkind = "{kind}"\nsource = "{source}"\n{transport}\n{socket}' + extra
    write(root / "lbctl.toml", toml)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "store")
    return root


def test_lbctl_test_passes_fails_and_reports_for_ci(tmp_path: Path, lbctl: LbctlRunner) -> None:
    store = offline_store(tmp_path, lbctl, "haproxy", "configs/edge/haproxy.cfg", HAPROXY, ROUTES)
    result = lbctl("test", "edge", "--store", str(store))
    assert result.code == 0, result.out + result.err
    assert "✓ GET /" in result.out and "✓ the API keeps its pool → api/api1" in result.out
    assert "all 2 routing case(s) hold for edge" in result.out

    outage = write(tmp_path / "outage.cfg", HAPROXY.replace("default_backend web", "default_backend legacy"))
    result = lbctl("test", "edge", "--store", str(store), "--file", str(outage))
    assert result.code == 3
    assert "✗ GET / → legacy/old1" in result.out and "expected backend web" in result.out
    data = json.loads(lbctl("test", "edge", "--store", str(store), "--file", str(outage), "--json").out)
    assert data["ok"] is False and data["ran"] is True
    assert [c["got"]["backend"] for c in data["cases"]] == ["legacy", "api"]
    junit = lbctl("test", "edge", "--store", str(store), "--file", str(outage), "--format", "junit")
    assert junit.code == 3
    suite = ElementTree.fromstring(junit.out.split("?>", 1)[1])
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    assert [c.find("failure") is not None for c in suite.iter("testcase")] == [True, False]
    assert leftovers() == []


def test_group_routes_apply_to_each_member_and_status_is_judged(tmp_path: Path, lbctl: LbctlRunner) -> None:
    denying = HAPROXY.replace(
        "    use_backend api", "    http-request deny if { path_beg /private }\n    use_backend api"
    )
    extra = 'group = "edges"\n\n[groups.edges]\n[[groups.edges.routes]]\npath = "/private/x"\nstatus = 403\n'
    store = offline_store(tmp_path, lbctl, "haproxy", "configs/edge/haproxy.cfg", denying, extra)
    result = lbctl("test", "edge", "--store", str(store), "--json")
    assert result.code == 0, result.out
    assert json.loads(result.out)["cases"][0]["got"]["status"] == 403
    opened = write(tmp_path / "opened.cfg", HAPROXY)
    result = lbctl("test", "edge", "--store", str(store), "--file", str(opened))
    assert result.code == 3 and "expected status 403, got web/web" in result.out


NGINX = """\
user www-data;
pid /run/nginx.pid;
events {}
http {
    access_log /var/log/nginx/access.log;
    upstream web { server 10.0.0.1:80; server 10.0.0.2:80; }
    upstream api { server 10.0.0.9:80; }
    server {
        listen 80;
        location / { proxy_pass http://web; }
        location /api/ { proxy_pass http://api; }
    }
}
"""


def test_lbctl_test_on_nginx_catches_a_regex_location_shadowing_a_prefix(tmp_path: Path, lbctl: LbctlRunner) -> None:
    routes = '[[targets.edge.routes]]\npath = "/api/report.json"\nbackend = "api"\nserver = "10.0.0.9:80"\n'
    store = offline_store(tmp_path, lbctl, "nginx", "configs/edge/nginx.conf", NGINX, routes)
    assert lbctl("test", "edge", "--store", str(store)).code == 0
    shadowing = NGINX.replace(
        "        location / {", "        location ~ \\.json$ { proxy_pass http://web; }\n" + "        location / {"
    )
    result = lbctl("test", "edge", "--store", str(store), "--file", str(write(tmp_path / "n.conf", shadowing)))
    assert result.code == 3 and "expected backend api, got web/10.0.0." in result.out
    assert leftovers() == []


CADDY = """\
:80 {
    handle /api/* {
        reverse_proxy 10.0.0.9:80
    }
    handle {
        reverse_proxy 10.0.0.1:80 10.0.0.2:80
    }
}
"""


def test_lbctl_test_on_caddy_catches_a_route_moved_above_another(tmp_path: Path, lbctl: LbctlRunner) -> None:
    routes = '[[targets.edge.routes]]\npath = "/api/x"\nbackend = "10.0.0.9:80"\n'
    routes += '[[targets.edge.routes]]\npath = "/"\nbackend = "10.0.0.1:80,10.0.0.2:80"\n'
    store = offline_store(tmp_path, lbctl, "caddy", "configs/edge/Caddyfile", CADDY, routes)
    result = lbctl("test", "edge", "--store", str(store))
    assert result.code == 0, result.out + result.err
    # `route` keeps the written order: the catch-all now comes first
    moved = (
        ":80 {\n    route {\n        reverse_proxy 10.0.0.1:80 10.0.0.2:80\n"
        "        reverse_proxy /api/* 10.0.0.9:80\n    }\n}\n"
    )
    result = lbctl("test", "edge", "--store", str(store), "--file", str(write(tmp_path / "Caddyfile", moved)))
    assert result.code == 3 and "expected backend 10.0.0.9:80" in result.out
    assert leftovers() == []


def test_a_sandbox_that_cannot_run_is_said_never_passed(tmp_path: Path, lbctl: LbctlRunner) -> None:
    lua = HAPROXY.replace("global\n", "global\n    lua-load /etc/haproxy/auth.lua\n")
    store = offline_store(tmp_path, lbctl, "haproxy", "configs/edge/haproxy.cfg", lua, ROUTES)
    result = lbctl("test", "edge", "--store", str(store))
    assert result.code == 3
    assert "routing tests could not run" in result.out and "/etc/haproxy/auth.lua" in result.out
    assert "Traceback" not in result.out + result.err


# -- the gate of check and deploy, against the lab's real HAProxy ------------------------------


def lab_store(store: Path, lab: Lab, extra: str) -> str:
    good = lab.config() + LEGACY
    (store / "configs/edge/haproxy.cfg").write_text(good)
    (store / "lbctl.toml").write_text((store / "lbctl.toml").read_text() + extra)
    git(store, "add", "-A")
    git(store, "commit", "-qm", "adopt, with routing cases")
    return good


def test_the_outage_change_is_refused_by_check_and_deploy_before_the_push(
    store: Path, lbctl: LbctlRunner, lab: Lab, tmp_path: Path
) -> None:
    good = lab_store(store, lab, '\n[[targets.edge.routes]]\npath = "/"\nbackend = "web"\n')
    assert lbctl("deploy", "edge", "--yes").code == 0
    outage = write(tmp_path / "outage.cfg", good.replace("default_backend web", "default_backend legacy"))
    result = lbctl("check", "edge", "--file", str(outage))
    assert result.code == 3
    assert "routing: case 'GET /': expected backend web, got legacy/old1" in result.out
    head = git(store, "rev-parse", "HEAD")
    result = lbctl("deploy", "edge", "--file", str(outage), "--yes")
    assert result.code == 3, result.out + result.err
    assert "expected backend web, got legacy/old1" in result.err
    assert "default_backend web" in lab.live_text() and git(store, "rev-parse", "HEAD") == head
    harmless = write(tmp_path / "harmless.cfg", good.replace("timeout client 10s", "timeout client 20s"))
    assert lbctl("check", "edge", "--file", str(harmless)).code == 0
    assert leftovers() == []


def test_check_replays_a_log_and_reports_the_moved_share(
    store: Path, lbctl: LbctlRunner, lab: Lab, tmp_path: Path
) -> None:
    good = lab_store(store, lab, "")
    assert lbctl("deploy", "edge", "--yes").code == 0
    log = tmp_path / "access.log"
    lines = [
        "Nov 30 12:00:00 lb haproxy[1]: 10.1.2.3:4242 [30/Nov/2026:12:00:00.000] www web/web1 0/0/0/1/1 200 120 - - "
        '---- 1/1/0/0/0 0/0 "GET /index.html HTTP/1.1"',
        '10.1.2.4 - - [30/Nov/2026:12:00:01 +0000] "GET /cart HTTP/1.1" 200 512 "-" "curl/8"',
        "GET www.example.com /search",
        "not a request",
    ]
    write(log, "\n".join(lines * 50) + "\n")
    outage = write(tmp_path / "outage.cfg", good.replace("default_backend web", "default_backend legacy"))
    result = lbctl("check", "edge", "--file", str(outage), "--replay", str(log), "--json")
    assert result.code == 3
    replay = json.loads(result.out)["replay"]
    assert (replay["requests"], replay["skipped"], replay["moved_share"]) == (150, 50, 1.0)
    assert replay["pairs"] == [{"frontend": "www", "before": "web", "after": "legacy", "requests": 150, "share": 1.0}]
    assert any("max_traffic_moved" in f for f in json.loads(result.out)["findings"])
    text = lbctl("check", "edge", "--file", str(outage), "--replay", str(log)).out
    assert "replay of 150 request(s)" in text and "web → legacy: 150 (100.0%)" in text

    lopsided = write(
        tmp_path / "lopsided.cfg",
        good.replace("weight 100", "weight 0").replace(
            f"server web1 127.0.0.1:{lab.backends.ports['web1']} check inter 1s weight 0",
            f"server web1 127.0.0.1:{lab.backends.ports['web1']} check inter 1s weight 100",
        ),
    )
    replay = json.loads(lbctl("check", "edge", "--file", str(lopsided), "--replay", str(log), "--json").out)["replay"]
    assert replay["frontends"][0]["moved_backend"] == 0 and replay["frontends"][0]["moved_server"] == 100
    harmless = write(tmp_path / "harmless.cfg", good.replace("timeout client 10s", "timeout client 20s"))
    result = lbctl("check", "edge", "--file", str(harmless), "--replay", str(log), "--json")
    assert result.code == 0, result.out
    assert json.loads(result.out)["replay"]["moved"] == 0
    assert leftovers() == []


def test_deploy_replays_the_targets_own_log_and_refuses_a_big_move(
    store: Path, lbctl: LbctlRunner, lab: Lab, tmp_path: Path
) -> None:
    log = write(tmp_path / "lb-access.log", "GET - /\nGET - /about\n" * 30)
    good = lab_store(store, lab, "")
    toml = (store / "lbctl.toml").read_text()
    toml = toml.replace(
        "[[targets.edge.checks]]", f'replay_log = "{log}"\nreplay_lines = 40\n\n[[targets.edge.checks]]', 1
    )
    (store / "lbctl.toml").write_text(toml)
    git(store, "commit", "-qam", "replay the LB's log")
    assert lbctl("deploy", "edge", "--yes").code == 0
    outage = write(tmp_path / "outage.cfg", good.replace("default_backend web", "default_backend legacy"))
    result = lbctl("deploy", "edge", "--file", str(outage), "--yes", "--dry-run", "--json")
    plan = json.loads(result.out)["plan"]
    assert result.code == 4
    assert any(r["rule"] == "max_traffic_moved" and "replay of 40 request(s)" in r["message"] for r in plan["refusals"])
    result = lbctl("deploy", "edge", "--file", str(outage), "--yes")
    assert result.code == 4 and "default_backend web" in lab.live_text()
    assert leftovers() == []


def test_a_replays_figures_replace_the_estimate_in_the_blast_radius_gate(
    store: Path, lbctl: LbctlRunner, lab: Lab, tmp_path: Path
) -> None:
    good = lab_store(store, lab, "")
    good = good.replace("default_backend web", "use_backend web if { path_beg /shop }\n    default_backend web")
    (store / "configs/edge/haproxy.cfg").write_text(good)
    git(store, "commit", "-qam", "the shop's rule")
    assert lbctl("deploy", "edge", "--yes").code == 0
    log = write(tmp_path / "access.log", "GET - /\nGET - /about\nGET - /cart\nGET - /old/page\n" * 10)
    # the outage's change, refused once, on the replay's figures
    outage = write(tmp_path / "outage.cfg", good.replace("default_backend web", "default_backend legacy"))
    result = lbctl("check", "edge", "--file", str(outage), "--replay", str(log), "--json")
    assert result.code == 3, result.out
    data = json.loads(result.out)
    (move,) = data["semantic"]["routing"]["moves"]
    assert (move["frontend"], move["from_backend"], move["to_backend"], move["basis"]) == (
        "frontend www",
        "web",
        "legacy",
        "replay",
    )
    assert (move["share"], move["pool_share"], move["peak_server"]) == (1.0, 1.0, "old1")
    assert data["semantic"]["routing"]["basis"].startswith("a replay of 40 request(s)")
    moved = [f for f in data["findings"] if f.startswith("max_traffic_moved")]
    assert moved == [
        f"max_traffic_moved: 100% of web's requests now go to legacy (threshold 50%): replay of 40 request(s) "
        f"from {log}: 40 of www's 40 (100%) move from web to legacy; old1 takes 40 (was 0) [frontend www]"
    ]
    assert data["replay"]["pairs"][0]["after"] == "legacy"  # the replay's own report is kept

    # the shop's requests go to legacy: the estimate can only bound it (a whole class, up to 100 %)...
    narrow = write(tmp_path / "narrow.cfg", good.replace("use_backend web if", "use_backend legacy if"))
    result = lbctl("check", "edge", "--file", str(narrow), "--json")
    assert result.code == 3, result.out
    assert any(f.startswith("max_traffic_moved: the routing change sends") for f in json.loads(result.out)["findings"])
    # ... and the replay shows none of the LB's requests take it: not refused
    result = lbctl("check", "edge", "--file", str(narrow), "--replay", str(log), "--json")
    assert result.code == 0, result.out
    data = json.loads(result.out)
    assert data["semantic"]["routing"]["moves"] == [] and data["replay"]["moved"] == 0
    # part of them do (/old/page, 25 %, all of them from web): judged on that figure
    old = write(
        tmp_path / "old.cfg",
        good.replace("default_backend web", "use_backend legacy if { path_beg /old }\n    default_backend web"),
    )
    data = json.loads(lbctl("check", "edge", "--file", str(old), "--replay", str(log), "--json").out)
    (move,) = data["semantic"]["routing"]["moves"]
    assert (move["basis"], move["share"], move["pool_share"]) == ("replay", 0.25, 0.25)
    assert data["ok"], data["findings"]

    # deploy's plan: the same figures, and the replay as a structured field
    toml = (store / "lbctl.toml").read_text()
    toml = toml.replace("[[targets.edge.checks]]", f'replay_log = "{log}"\n\n[[targets.edge.checks]]', 1)
    (store / "lbctl.toml").write_text(toml)
    git(store, "commit", "-qam", "replay the LB's log")
    result = lbctl("deploy", "edge", "--file", str(outage), "--yes", "--dry-run", "--json")
    assert result.code == 4
    plan = json.loads(result.out)["plan"]
    assert [r["rule"] for r in plan["refusals"]] == ["max_traffic_moved"]
    assert plan["semantic"]["routing"]["moves"][0]["basis"] == "replay"
    assert plan["replay"]["requests"] == 40 and plan["replay"]["moved"] == 40
    result = lbctl("deploy", "edge", "--file", str(narrow), "--yes", "--dry-run", "--json")
    assert result.code == 0, result.out
    assert json.loads(result.out)["plan"]["replay"]["moved"] == 0
    assert leftovers() == []


def test_a_case_on_a_port_the_config_does_not_listen_on_fails_alone(tmp_path: Path, lbctl: LbctlRunner) -> None:
    extra = ROUTES + '\n[[targets.edge.routes]]\npath = "/"\nport = 8443\nbackend = "web"\n'
    store = offline_store(tmp_path, lbctl, "haproxy", "configs/edge/haproxy.cfg", HAPROXY, extra)
    result = lbctl("test", "edge", "--store", str(store))
    assert result.code == 3
    assert "no listener on port 8443" in result.out and "1 of 3 routing case(s) fail" in result.out


ROUTED = """\
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend www
    bind :80
    acl api path_beg /api
    acl static path_beg /api/static
    acl shop hdr(host) -i shop.example.com
    use_backend assets if static
    use_backend api if api
    use_backend shop if shop
    default_backend web
backend web
    server web1 10.0.0.1:80
backend api
    server api1 10.0.0.9:80
backend assets
    server cdn1 10.0.0.7:80
backend shop
    server shop1 10.0.0.8:80
"""

ROUTED_CASES = """
[[targets.edge.routes]]
path = "/"
backend = "web"

[[targets.edge.routes]]
path = "/api/orders"
backend = "api"

[[targets.edge.routes]]
path = "/api/static/logo.png"
backend = "assets"

[[targets.edge.routes]]
path = "/"
host = "shop.example.com"
backend = "shop"
"""


def test_routing_cases_catch_each_kind_of_haproxy_routing_mistake(tmp_path: Path, lbctl: LbctlRunner) -> None:
    store = offline_store(tmp_path, lbctl, "haproxy", "configs/edge/haproxy.cfg", ROUTED, ROUTED_CASES)
    assert lbctl("test", "edge", "--store", str(store)).code == 0
    mistakes = {
        "catch-all ACL": ("acl api path_beg /api\n", "acl api path_beg /\n", "GET / → api/api1"),
        "swapped use_backend order": (
            "    use_backend assets if static\n    use_backend api if api\n",
            "    use_backend api if api\n    use_backend assets if static\n",
            "GET /api/static/logo.png → api/api1",
        ),
        "host rule typo": ("shop.example.com\n", "shop.exmaple.com\n", "GET shop.example.com/ → web/web1"),
        "the outage": ("default_backend web", "default_backend api", "GET / → api/api1"),
    }
    for name, (before, after, failed) in mistakes.items():
        changed = write(tmp_path / f"{name}.cfg", ROUTED.replace(before, after))
        result = lbctl("test", "edge", "--store", str(store), "--file", str(changed))
        assert result.code == 3, name
        assert f"✗ {failed}" in result.out, (name, result.out)
    harmless = write(tmp_path / "harmless.cfg", ROUTED.replace("timeout client 5s", "timeout client 50s"))
    assert lbctl("test", "edge", "--store", str(store), "--file", str(harmless)).code == 0
    assert leftovers() == []


def test_lbctl_test_judges_the_working_tree_when_it_has_edits(tmp_path: Path, lbctl: LbctlRunner) -> None:
    store = offline_store(tmp_path, lbctl, "haproxy", "configs/edge/haproxy.cfg", HAPROXY, ROUTES)
    write(store / "configs/edge/haproxy.cfg", HAPROXY.replace("default_backend web", "default_backend legacy"))
    result = lbctl("test", "edge", "--store", str(store))
    assert result.code == 3 and "candidate working tree:configs/edge/haproxy.cfg" in result.out
    assert lbctl("test", "edge", "--store", str(store), "--rev", "HEAD").code == 0
