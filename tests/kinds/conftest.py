"""Labs for the nginx and Caddy kinds, with the surface the contract suite uses.

The suite (tests/integration/test_lifecycle.py) drives a `lab` with `.config(route_to=,
weights=)`, `.live_text()`, `.haproxy.config` (the live file), `.fe_port`; these labs give
the same surface for a real nginx and a real Caddy, plus the few kind-neutral accessors
(`weight`, `native_check`, `proc_state`, `hand_edit`) that the suite's HAProxy-bound
tests are rewritten with in tests/kinds/suite.py. Every LB is checked to be the only
listener on its ports (they set SO_REUSEPORT).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lbctl.kinds.haproxy import ProcState
from lbctl.lab.processes import Backends, free_port, stop
from lbctl.lab.webservers import Caddy, Nginx, caddy_config, nginx_config, sole_listener
from tests.conftest import LbctlRunner, git
from tests.ssh.conftest import isolated_home, sshd  # noqa: F401 - the private sshd, for nginx over ssh

NGINX_SOURCE = "configs/edge/nginx.conf"
CADDY_SOURCE = "configs/edge/caddy.json"
DEAD_UPSTREAM = """
    upstream maintenance {{
        server 127.0.0.1:{dead_port};
    }}
"""


@dataclass
class NginxLab:
    nginx: Nginx
    backends: Backends
    fe_port: int
    dead_port: int
    workdir: Path

    @property
    def haproxy(self) -> Nginx:
        """The suite's name for "the LB under test" (it has `.config`, the live file)."""
        return self.nginx

    def config(self, *, route_to: str = "web", weights: dict[str, int] | None = None) -> str:
        return nginx_config(
            frontend_port=self.fe_port,
            backends=self.backends.ports,
            route_to=route_to,
            weights=weights,
            extra_upstreams=DEAD_UPSTREAM.format(dead_port=self.dead_port),
        )

    def live_text(self) -> str:
        return self.nginx.config.read_text()

    def weight(self, name: str) -> int | None:
        """web1's weight in the live config (0 for `down`)."""
        port = self.backends.ports[name]
        for line in self.live_text().splitlines():
            found = re.search(rf"server 127\.0\.0\.1:{port} (down|weight=(\d+))", line)
            if found:
                return 0 if found.group(1) == "down" else int(found.group(2))
        return None

    def server_label(self, name: str) -> str:
        return f"127.0.0.1:{self.backends.ports[name]}"

    def native_check(self) -> bool:
        cmd = ["nginx", "-t", "-q", "-p", str(self.nginx.prefix), "-c", str(self.nginx.config)]
        return subprocess.run(cmd, capture_output=True).returncode == 0

    def hand_edit(self, name: str, weight: int) -> None:
        port = self.backends.ports[name]
        text = re.sub(rf"(server 127\.0\.0\.1:{port}) weight=\d+", rf"\1 weight={weight}", self.live_text())
        self.nginx.config.write_text(text)

    def broken_config(self) -> str:
        """Parses (lbctl reads it) but `nginx -t` refuses it: a directive nginx does not know."""
        return self.config().replace("proxy_pass", "proxy_passs_typo on;\n            proxy_pass")

    def staged_leftovers(self) -> list[Path]:
        return list(self.nginx.config.parent.glob(".*lbctl-stage*"))

    def proc_state(self) -> ProcState:
        """nginx's own view, in the suite's shape: master, reloads and failed reloads (its error
        log, level notice), and the current worker generation."""
        log = (self.nginx.prefix / "logs" / "error.log").read_text()
        reloads = log.count("(SIGHUP) received")
        failed = len(re.findall(r"\[emerg\]", log))
        return ProcState(self.nginx.master_pid(), reloads, failed, frozenset(self.nginx.workers()))


def nginx_target_toml(lab: NginxLab, *, verify_seconds: float = 1.0, name: str = "edge") -> str:
    return f"""\
[defaults]
verify_seconds = {verify_seconds}
check_interval = 0.25
retries = 2

[targets.{name}]
kind = "nginx"
transport = "local"
source = "{NGINX_SOURCE}"
path = "{lab.nginx.config}"
prefix = "{lab.nginx.prefix}"

[[targets.{name}.checks]]
type = "http"
url = "http://127.0.0.1:{lab.fe_port}/"
probes = 2
"""


@pytest.fixture
def nginx_lab(tmp_path: Path, backends: Backends) -> Iterator[NginxLab]:
    fe_port, dead_port = free_port(), free_port()
    lab = NginxLab(None, backends, fe_port, dead_port, tmp_path / "nginx")  # type: ignore[arg-type]
    lab.nginx = Nginx.start(lab.workdir, lab.config(), port=fe_port)
    try:
        yield lab
        assert lab.nginx.proc is not None
        sole_listener(fe_port, lab.nginx.proc.pid)  # still the only one on its port
    finally:
        lab.nginx.stop()


def make_store(
    root: Path, lbctl: LbctlRunner, toml: str, monkeypatch: pytest.MonkeyPatch, *, source: str, content: str
) -> Path:
    """A store whose target `edge` has `source` holding `content` (what the LB runs at the start)."""
    assert lbctl("init", str(root)).code == 0
    (root / "lbctl.toml").write_text(toml)
    (root / source).parent.mkdir(parents=True, exist_ok=True)
    (root / source).write_text(content)
    git(root, "add", "lbctl.toml", source)
    git(root, "commit", "-q", "-m", "Add target edge")
    monkeypatch.chdir(root)
    return root


# -- Caddy ---------------------------------------------------------------------------------


@dataclass
class _CaddyFiles:
    """Caddy has no live file; `config` is its work dir's bootstrap file (nothing is staged beside it)."""

    config: Path


@dataclass
class CaddyLab:
    caddy: Caddy
    backends: Backends
    fe_port: int
    dead_port: int
    workdir: Path
    staged_at_start: set[Path] = field(default_factory=set)

    @property
    def haproxy(self) -> _CaddyFiles:
        return _CaddyFiles(self.workdir / "bootstrap.json")

    def config(self, *, route_to: str = "web", weights: dict[str, int] | None = None) -> str:
        config = caddy_config(
            admin_port=self.caddy.admin_port,
            frontend_port=self.fe_port,
            backends=self.backends.ports,
            route_to=route_to,
            weights=weights,
            dead_port=self.dead_port,
        )
        return canonical(config)

    def live_text(self) -> str:
        return canonical(self.caddy.running())

    def weight(self, name: str) -> int | None:
        """How many upstream entries dial web1 (Caddy 2.6's stand-in for a weight)."""
        dial = f"127.0.0.1:{self.backends.ports[name]}"
        return self.live_text().count(f'"dial":"{dial}"')

    def server_label(self, name: str) -> str:
        return f"127.0.0.1:{self.backends.ports[name]}"

    def native_check(self) -> bool:
        return self.caddy.proc is not None and self.caddy.proc.poll() is None and self.live_text() != "null"

    def broken_config(self) -> str:
        """Parses (lbctl reads it) but `caddy validate` refuses it: a handler Caddy does not have."""
        return self.config().replace('"handler":"reverse_proxy"', '"handler":"reverse_proxyy"')

    def staged_leftovers(self) -> list[Path]:
        """Staged temp files (the http transport stages locally) that appeared during the test."""
        return sorted(set(_caddy_staged()) - self.staged_at_start)

    def proc_state(self) -> ProcState:
        """Caddy's own view, in the suite's shape: its pid, config loads (POSTs to /load or /config/
        its log records) and refused ones ("request error"); Caddy has no worker processes."""
        log = (self.workdir / "caddy.log").read_text()
        posts = len(re.findall(r'"method":"POST","host":"[^"]*","uri":"/(?:load|config/)"', log))
        refused = log.count('"msg":"request error"')
        assert self.caddy.proc is not None
        return ProcState(self.caddy.proc.pid, posts - refused, refused, frozenset())

    def hand_edit(self, name: str, weight: int) -> None:
        weights = {n: self.weight(n) or 0 for n in self.backends.ports}
        weights[name] = weight
        self.caddy.load(json.loads(self.config(weights=weights)))


def _caddy_staged() -> list[Path]:
    import tempfile

    return list(Path(tempfile.gettempdir()).glob("lbctl-caddy-stage-*"))


def canonical(config: object) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def caddy_target_toml(lab: CaddyLab, *, verify_seconds: float = 1.0, name: str = "edge") -> str:
    return f"""\
[defaults]
verify_seconds = {verify_seconds}
check_interval = 0.25
retries = 2

[targets.{name}]
kind = "caddy"
transport = "http"
api = "{lab.caddy.api}"
path = "/config/"
source = "{CADDY_SOURCE}"

# Caddy 2.6 has no upstream weights: the lab weights a server by repeating its upstream entry,
# and lbctl's Caddy model counts each entry as a server of its own, so re-weighting reads as
# servers added and removed. The blast-radius thresholds would refuse every weight change.
[targets.{name}.safety]
max_traffic_moved = 1.0
max_servers_removed = 1.0

[[targets.{name}.checks]]
type = "http"
url = "http://127.0.0.1:{lab.fe_port}/"
probes = 2
"""


@pytest.fixture
def caddy_lab(tmp_path: Path, backends: Backends) -> Iterator[CaddyLab]:
    fe_port, dead_port, admin_port = free_port(), free_port(), free_port()
    workdir = tmp_path / "caddy"
    caddy = Caddy.start(workdir, admin_port=admin_port)
    lab = CaddyLab(caddy, backends, fe_port, dead_port, workdir, set(_caddy_staged()))
    try:
        caddy.load(json.loads(lab.config()))
        assert caddy.proc is not None
        sole_listener(fe_port, caddy.proc.pid)
        yield lab
        sole_listener(fe_port, caddy.proc.pid)
    finally:
        stop(caddy.proc)
