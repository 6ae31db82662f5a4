"""Real nginx and Caddy on loopback, in temp dirs, for tests and demos.

Each LB runs in the foreground of its own session (`start_new_session`) and is stopped
by its PID. nginx, Caddy and HAProxy set SO_REUSEPORT, so a second LB could bind a port
another one holds and quietly take half its traffic: `sole_listener` checks, from
/proc, that every socket listening on a port belongs to the one LB meant to hold it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lbctl.lab.processes import stop, wait_listening

LOG_FORMAT = "log_format lbctl '$proxy_host $status $upstream_addr';"


# -- who listens on a port ---------------------------------------------------------------


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as handle:
            next(handle, None)
            for line in handle:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                    inodes.add(inode)
    return inodes


def listener_sessions(port: int) -> set[int]:
    """Session ids of the processes holding a socket that listens on `port`."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    sessions: set[int] = set()
    if not wanted:
        return sessions
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(os.readlink(f"/proc/{pid}/fd/{fd}") in wanted for fd in fds):
                continue
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        sessions.add(int(stat.rsplit(")", 1)[1].split()[3]))  # field 6: session id
    return sessions


def sole_listener(port: int, session: int) -> None:
    """Raise unless something listens on `port` and every listener is in `session`."""
    holders = listener_sessions(port)
    if holders != {session}:
        raise RuntimeError(
            f"port {port} is held by sessions {sorted(holders)}, expected only {session}: two load balancers "
            "share it (SO_REUSEPORT) or the expected one is not listening"
        )


# -- nginx -------------------------------------------------------------------------------


@dataclass
class Nginx:
    """nginx run as `nginx -p PREFIX -c PREFIX/conf/nginx.conf -g 'daemon off;'`."""

    prefix: Path
    config: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        return self.prefix / "logs" / "nginx.pid"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "lbctl.log"

    @classmethod
    def start(cls, prefix: Path, config_text: str, *, port: int) -> Nginx:
        for sub in ("conf", "logs", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        config = prefix / "conf" / "nginx.conf"
        config.write_text(config_text)
        log = (prefix / "logs" / "stderr.log").open("ab")
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(config), "-g", "daemon off;"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        nginx = cls(prefix, config, proc)
        try:
            wait_listening(port, timeout=10)
            sole_listener(port, proc.pid)
        except RuntimeError:
            nginx.stop()
            raise RuntimeError(f"nginx did not start: {(prefix / 'logs' / 'stderr.log').read_text()}") from None
        return nginx

    def master_pid(self) -> int:
        return int(self.pid_file.read_text().strip())

    def workers(self) -> set[int]:
        """The current generation's workers (not those still finishing after a reload)."""
        out = subprocess.run(
            ["ps", "-o", "pid=,args=", "--ppid", str(self.master_pid())], capture_output=True, text=True
        ).stdout
        return {
            int(line.split()[0])
            for line in out.splitlines()
            if "worker process" in line and "shutting down" not in line
        }

    def stop(self) -> None:
        stop(self.proc)


def nginx_preamble(log_format: str = LOG_FORMAT) -> str:
    """The lab's nginx config up to inside `http {`: one worker, temp dirs and logs under the prefix."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the temp dirs
    return f"""\
{user}worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log notice;

events {{
    worker_connections 256;
}}

http {{
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    {log_format}
    access_log logs/lbctl.log lbctl;"""


def nginx_config(
    *,
    frontend_port: int,
    backends: dict[str, int],
    route_to: str = "web",
    weights: dict[str, int] | None = None,
    extra_upstreams: str = "",
    log_format: str = LOG_FORMAT,
) -> str:
    """A small nginx config: one server proxying to upstream `web` over `backends`.

    Paths are relative to the prefix, as in a packaged nginx. nginx has no weight 0:
    a server given weight 0 here is marked `down`.
    """
    lines = []
    for name, port in backends.items():
        weight = (weights or {}).get(name, 1)
        option = "down" if weight == 0 else f"weight={weight}"
        lines.append(f"        server 127.0.0.1:{port} {option};  # {name}")
    servers = "\n".join(lines)
    return f"""\
{nginx_preamble(log_format)}

    upstream web {{
{servers}
    }}
{extra_upstreams}
    server {{
        listen 127.0.0.1:{frontend_port};
        location / {{
            proxy_pass http://{route_to};
        }}
    }}
}}
"""


# -- Caddy -------------------------------------------------------------------------------


@dataclass
class Caddy:
    """`caddy run` with its admin API on a loopback port and no persisted config."""

    workdir: Path
    admin_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @classmethod
    def start(cls, workdir: Path, *, admin_port: int, config: dict[str, Any] | None = None) -> Caddy:
        workdir.mkdir(parents=True, exist_ok=True)
        boot = workdir / "bootstrap.json"
        boot.write_text(json.dumps({"admin": admin_section(admin_port)}))
        env = {**os.environ, "HOME": str(workdir), "XDG_DATA_HOME": str(workdir), "XDG_CONFIG_HOME": str(workdir)}
        log = (workdir / "caddy.log").open("ab")
        proc = subprocess.Popen(
            [shutil.which("caddy") or "/usr/bin/caddy", "run", "--config", str(boot)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log.close()
        caddy = cls(workdir, admin_port, proc)
        try:
            wait_listening(admin_port, timeout=10)
            sole_listener(admin_port, proc.pid)
            if config is not None:
                caddy.load(config)
        except RuntimeError:
            caddy.stop()
            raise RuntimeError(f"caddy did not start: {(workdir / 'caddy.log').read_text()}") from None
        return caddy

    def load(self, config: dict[str, Any]) -> None:
        request = urllib.request.Request(
            f"{self.api}/load", data=json.dumps(config).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"caddy refused the config: {exc.read().decode()}") from None

    def running(self) -> Any:
        with urllib.request.urlopen(f"{self.api}/config/", timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        stop(self.proc)


def admin_section(port: int) -> dict[str, Any]:
    return {"listen": f"127.0.0.1:{port}", "config": {"persist": False}}


def caddy_config(
    *,
    admin_port: int,
    frontend_port: int,
    backends: dict[str, int],
    route_to: str = "web",
    weights: dict[str, int] | None = None,
    dead_port: int | None = None,
) -> dict[str, Any]:
    """Caddy JSON: one server proxying round-robin to `backends`.

    Caddy 2.6 has no upstream weights; a weight of N is N entries for the same address
    (round robin over them gives the same share), and weight 0 leaves the server out.
    `route_to="maintenance"` proxies to `dead_port`, where nothing listens (502).
    """
    if route_to == "web":
        upstreams = [
            {"dial": f"127.0.0.1:{port}"}
            for name, port in backends.items()
            for _ in range((weights or {}).get(name, 1))
        ]
    else:
        upstreams = [{"dial": f"127.0.0.1:{dead_port}"}]
    proxy = {
        "handler": "reverse_proxy",
        "upstreams": upstreams,
        "load_balancing": {"selection_policy": {"policy": "round_robin"}},
        "headers": {"response": {"set": {"X-Lbctl-Upstream": ["{http.reverse_proxy.upstream.hostport}"]}}},
    }
    server = {
        "listen": [f"127.0.0.1:{frontend_port}"],
        "automatic_https": {"disable": True},
        "routes": [{"handle": [proxy]}],
    }
    return {"admin": admin_section(admin_port), "apps": {"http": {"servers": {"www": server}}}}


def wait_until(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())
