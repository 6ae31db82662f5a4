"""The sandbox runs each kind's real binary with stubs for servers, and leaves nothing behind."""

from __future__ import annotations

import os
import tempfile
from collections import Counter

import pytest

from lbctl.errors import SandboxUnavailable
from lbctl.sandbox import Request, open_sandbox

HAPROXY = b"""
global
    log /dev/log local0
    user haproxy
    group haproxy
    chroot /var/lib/haproxy
    daemon
    pidfile /run/haproxy.pid
    stats socket /run/haproxy/admin.sock mode 660 level admin
defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 10s
    timeout server 10s
frontend www
    bind *:80
    bind *:443 ssl crt /etc/ssl/private/site.pem alpn h2,http/1.1
    acl api path_beg /api
    acl internal src 10.0.0.0/8
    http-request deny if { path_beg /admin } !internal
    acl mapped req.hdr(host),lower,map(/etc/haproxy/hosts.map) -m found
    use_backend %[req.hdr(host),lower,map(/etc/haproxy/hosts.map)] if mapped
    use_backend api if api
    default_backend web
backend web
    balance roundrobin
    option httpchk GET /health
    server web1 10.0.0.1:80 check inter 1s weight 100
    server web2 10.0.0.2:80 check weight 100 ssl verify required ca-file /etc/ssl/ca.pem
    server web3 10.0.0.3:80 check weight 100 disabled
backend api
    server-template api 2 api.internal:8080 check resolvers dns init-addr none
backend legacy
    server old1 10.9.9.9:80 check
"""

NGINX = rb"""
user www-data;
worker_processes auto;
pid /run/nginx.pid;
events { worker_connections 768; }
http {
    access_log /var/log/nginx/access.log;
    upstream app { server 10.0.0.1:80 weight=2 max_fails=3; server 10.0.0.2:80; server 10.0.0.3:80 backup; }
    upstream api { server api.internal:8080; }
    server {
        listen 80 default_server; listen [::]:80 default_server;
        listen 443 ssl; ssl_certificate /etc/ssl/certs/site.pem; ssl_certificate_key /etc/ssl/private/site.key;
        server_name www.example.com;
        location / { proxy_pass http://app; }
        location /api/ { proxy_pass https://api; }
        location ~ \.php$ { fastcgi_pass 127.0.0.1:9000; }
        location /admin { allow 10.0.0.0/8; deny all; proxy_pass http://app; }
        location = /old { return 301 /new; }
    }
    server { listen 80; server_name static.example.com; location / { proxy_pass http://10.5.5.5:8080/; } }
}
"""

CADDYFILE = b"""
example.com {
    @internal remote_ip 10.0.0.0/8
    handle /admin* {
        respond @internal "ok" 200
        respond "no" 403
    }
    handle /api/* {
        reverse_proxy 10.0.0.5:8080 10.0.0.6:8080
    }
    handle {
        reverse_proxy 10.0.0.1:80 10.0.0.2:80
    }
}
:8080 {
    reverse_proxy 10.9.9.9:80
}
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_haproxy_sandbox_routes_like_the_config(tmp_path: object) -> None:
    hosts = b"shop.example.com legacy\n"
    with open_sandbox(
        "haproxy", HAPROXY, filename="haproxy.cfg", find_file=lambda p: hosts if p.endswith("hosts.map") else None
    ) as box:
        pids = box.pids
        assert all(alive(pid) for pid in pids)
        assert [(lst.label, lst.port, lst.tls) for lst in box.listeners] == [("www", 80, False), ("www", 443, True)]
        answers = [box.send(Request("/")) for _ in range(4)]
        assert {(a.status, a.backend) for a in answers} == {(200, "web")}
        assert {a.server for a in answers} == {"web1", "web2"}  # web3 is disabled, as on the LB
        assert box.send(Request("/api/orders")).endpoint in ("api/api1", "api/api2")
        assert box.send(Request("/admin")).endpoint == "(403)"
        assert box.send(Request("/admin", source="10.1.2.3")).backend == "web"
        assert box.send(Request("/", host="shop.example.com")).endpoint == "legacy/old1"
        tls = box.send(Request("/", port=443, host="www.example.com"))
        assert (tls.listener, tls.backend) == ("www", "web")
        many = box.send_all([Request("/x")] * 600)
        assert Counter(a.endpoint for a in many) == {"web/web1": 300, "web/web2": 300}
    assert not any(alive(pid) for pid in pids)


def test_nginx_sandbox_routes_like_the_config() -> None:
    with open_sandbox("nginx", NGINX, filename="nginx.conf") as box:
        pids = box.pids
        assert [(lst.label, lst.tls) for lst in box.listeners] == [(":80", False), (":443", True)]
        assert box.send(Request("/")).backend == "app"
        assert box.send(Request("/api/x")).endpoint == "api/api.internal:8080"
        assert box.send(Request("/x.php")).backend == "127.0.0.1:9000"
        assert box.send(Request("/admin")).endpoint == "(403)"
        assert box.send(Request("/admin", source="10.1.1.1")).backend == "app"
        assert box.send(Request("/old")).endpoint == "(301)"
        assert box.send(Request("/", host="static.example.com")).endpoint == "10.5.5.5:8080/10.5.5.5:8080"
        assert box.send(Request("/", port=443, host="www.example.com")).backend == "app"
        spread = Counter(a.server for a in box.send_all([Request("/")] * 300))
        assert spread == {"10.0.0.1:80": 200, "10.0.0.2:80": 100}  # weight=2, and the backup takes none
    assert not any(alive(pid) for pid in pids)


def test_caddy_sandbox_routes_like_the_config() -> None:
    with open_sandbox("caddy", CADDYFILE, filename="Caddyfile") as box:
        pids = box.pids
        assert [(lst.label, lst.port) for lst in box.listeners] == [("srv0", 443), ("srv1", 8080)]
        assert box.send(Request("/", host="example.com")).backend == "10.0.0.1:80,10.0.0.2:80"
        assert box.send(Request("/api/x", host="example.com")).backend == "10.0.0.5:8080,10.0.0.6:8080"
        assert box.send(Request("/admin", host="example.com")).endpoint == "(403)"
        assert box.send(Request("/admin", host="example.com", source="10.1.1.1")).endpoint == "(200)"
        assert box.send(Request("/", port=8080)).endpoint == "10.9.9.9:80/10.9.9.9:80"
    assert not any(alive(pid) for pid in pids)


@pytest.mark.parametrize(
    ("kind", "config", "named"),
    [
        ("haproxy", b"global\n    lua-load /etc/haproxy/auth.lua\nfrontend f\n    bind :80\n", "auth.lua"),
        (
            "haproxy",
            b"frontend f\n    bind :80\n    mode http\n    http-request deny if { src -f /etc/haproxy/blocked.lst }\n",
            "blocked.lst",
        ),
        ("nginx", b"load_module modules/ngx_http_geoip2_module.so;\nevents {}\nhttp {}\n", "ngx_http_geoip2_module"),
        ("nginx", b"events {}\nhttp { include /etc/nginx/sites/missing.conf; }\n", "missing.conf"),
        (
            "caddy",
            b'{"apps": {"http": {"servers": {"a": {"listen": [":80"], "routes": [{"handle": '
            b'[{"handler": "no_such_module"}]}]}}}}}',
            "no_such_module",
        ),
    ],
)
def test_a_sandbox_that_cannot_start_names_what_is_missing(kind: str, config: bytes, named: str) -> None:
    before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(SandboxUnavailable) as caught, open_sandbox(kind, config, filename="lb.conf"):
        pass
    assert named in str(caught.value) and caught.value.exit_code == 3
    assert "Traceback" not in str(caught.value)
    assert not [name for name in set(os.listdir(tempfile.gettempdir())) - before if name.startswith("lbctl-sandbox-")]


SMALL = b"defaults\n    mode http\nfrontend www\n    bind :80\n    default_backend web\n"
SMALL += b"backend web\n    server a 10.0.0.1:80\n"


def test_nothing_outlives_lbctl_even_killed(tmp_path: object) -> None:
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import sys, time\n"
        "from lbctl.sandbox import open_sandbox\n"
        f"with open_sandbox('haproxy', {SMALL!r}, filename='haproxy.cfg') as box:\n"
        "    print(box.setup.directory, *box.pids, flush=True)\n"
        "    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    directory, *pids_text = holder.stdout.readline().split()
    pids = [int(p) for p in pids_text]
    assert len(pids) == 2 and all(alive(pid) for pid in pids)  # the keeper (stubs) and HAProxy
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)
    while os.path.exists(directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(directory)
