"""A fleet on loopback: several real HAProxy master-workers (one per member), a store with a group.

Each member has its own config (its own frontend port and sockets) in `configs/NAME.cfg`; the
store records what each runs (`lbctl pull`), so every member has a live revision of its own.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config
from lbctl.lab.sshd import Sshd
from lbctl.store.journal import TargetState

SPARE = "\nbackend spare\n    server s1 127.0.0.1:{port}\n"
AUX = "\nlisten aux\n    bind 127.0.0.1:{port}\n    server a1 127.0.0.1:{web1}\n"
DEAD = "\nbackend maintenance\n    server sorry 127.0.0.1:{port} check inter 1s\n"


@dataclass
class Fleet:
    store: Path
    backends: Backends
    dead_port: int
    lbs: dict[str, Haproxy] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    aux_ports: dict[str, int] = field(default_factory=dict)  # a listener a change may drop (`aux=False`)

    @property
    def names(self) -> list[str]:
        return list(self.lbs)

    def config(self, name: str, *, route_to: str = "web", spare: bool = False, aux: bool = True) -> str:
        """Each member's config; `spare` adds an unused backend, `aux=False` drops its `aux` listener."""
        extra = DEAD.format(port=self.dead_port) + (SPARE.format(port=self.backends.ports["web1"]) if spare else "")
        if aux:
            extra += AUX.format(port=self.aux_ports[name], web1=self.backends.ports["web1"])
        return haproxy_config(
            frontend_port=self.ports[name],
            backends=self.backends.ports,
            stats_socket=self.lbs[name].stats_socket,
            extra_backends=extra,
            route_to=route_to,
        )

    def commit(self, message: str, **how: object) -> str:
        """Write every member's source as `config(name, **how)` and commit them: the fleet's change."""
        for name in self.names:
            (self.store / "configs" / f"{name}.cfg").write_text(self.config(name, **how))  # type: ignore[arg-type]
        git(self.store, "add", "-A")
        git(self.store, "commit", "-q", "-m", message)
        return git(self.store, "rev-parse", "HEAD").strip()

    def set_members(self, toml: str) -> None:
        """Add `[groups.edge.members.*]` overrides to lbctl.toml, committed."""
        with (self.store / "lbctl.toml").open("a") as f:
            f.write("\n" + toml)
        git(self.store, "commit", "-q", "-am", "Member overrides")

    def live(self, name: str) -> str:
        return self.lbs[name].config.read_text()

    def workers(self, name: str) -> str:
        """The master's `show proc` (worker pids and reload counts), without its uptime column."""
        lines = self.lbs[name].master_command("show proc").splitlines()
        return "\n".join(" ".join(line.split()[:3]) for line in lines if line.strip() and not line.startswith("#"))

    def state(self, name: str) -> TargetState:
        """What the journal says of a member."""
        from lbctl.store.journal import Journal
        from lbctl.store.repo import Store

        return Journal(Store(self.store)).state(name)


def _over(ssh: Sshd | None) -> list[str]:
    if ssh is None:
        return []
    return [
        'transport = "ssh"',
        'host = "127.0.0.1"',
        f"port = {ssh.port}",
        f'identity_file = "{ssh.client_key}"',
        f'known_hosts = "{ssh.known_hosts}"',
    ]


def git(store: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(store), *args], check=True, capture_output=True, text=True).stdout


FleetFactory = Callable[..., Fleet]


@pytest.fixture
def make_fleet(tmp_path: Path, backends: Backends, monkeypatch: pytest.MonkeyPatch) -> Iterator[FleetFactory]:
    started: list[Haproxy] = []

    def make(
        count: int, *, rollout: str = "", members: str = "", extra_toml: str = "", ssh: Sshd | None = None
    ) -> Fleet:
        """`count` members named edge1.. (local transport, or over `ssh`: one sshd for them all)."""
        from lbctl.cli import main

        store = tmp_path / "store"
        assert main(["init", str(store), "--quiet"]) == 0
        fleet = Fleet(store, backends, free_port())
        toml = ["[defaults]", "verify_seconds = 0.3", "check_interval = 0.15", "retries = 1", ""]
        toml += ["[safety]", "max_traffic_moved = 1.0", "max_servers_removed = 1.0", "allow_empty_backend = true", ""]
        for i in range(1, count + 1):
            name = f"edge{i}"
            workdir = tmp_path / name
            fleet.ports[name], fleet.aux_ports[name] = free_port(), free_port()
            fleet.lbs[name] = Haproxy(workdir, workdir / "haproxy.cfg", workdir / "master.sock", workdir / "admin.sock")
            haproxy = Haproxy.start(workdir, fleet.config(name))
            started.append(haproxy)
            fleet.lbs[name] = haproxy
            (store / "configs").mkdir(exist_ok=True)
            (store / "configs" / f"{name}.cfg").write_text(fleet.config(name))
            toml += [
                f"[targets.{name}]",
                'kind = "haproxy"',
                f'source = "configs/{name}.cfg"',
                *_over(ssh),
                f'path = "{haproxy.config}"',
                f'master_socket = "{haproxy.master_socket}"',
                f'stats_socket = "{haproxy.stats_socket}"',
                "",
                f"[[targets.{name}.checks]]",
                'type = "http"',
                f'url = "http://127.0.0.1:{fleet.ports[name]}/"',
                "probes = 1",
                "",
            ]
        toml += ["[groups.edge]", 'targets = ["edge*"]', "", "[groups.edge.rollout]"]
        given = {line.split("=")[0].strip() for line in rollout.splitlines() if "=" in line}
        defaults = ["canary = 1", 'canary_bake = "0s"', 'confirm_within = "1m"']
        toml += [d for d in defaults if d.split("=")[0].strip() not in given]
        toml += [rollout, "", members, extra_toml]
        (store / "lbctl.toml").write_text("\n".join(toml) + "\n")
        git(store, "add", "-A")
        git(store, "commit", "-q", "-m", "A fleet of HAProxy")
        monkeypatch.chdir(store)
        for name in fleet.names:  # each member's live revision: what it runs now
            assert main(["pull", name, "--quiet", "--store", str(store)]) == 0
        return fleet

    yield make
    for haproxy in started:
        haproxy.stop()
