"""Commands run as written on the LB host, reloads confirmed, sockets checked first: over a real sshd."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from lbctl import retry
from lbctl.kinds.haproxy import parse_show_proc
from lbctl.lab.processes import Haproxy, free_port, haproxy_config
from tests.ssh.conftest import Lab, Sshd, write_store
from tests.ssh.test_hostkeys_and_config import _retarget

HOSTILE = "a b'c\"d;touch CANARY|touch CANARY$(touch CANARY)`touch CANARY`&&x\nnl$HOME*"


def _add_lines(lab: Lab, lines: str) -> None:
    _retarget(lab, 'source = "configs/edge/haproxy.cfg"\n', 'source = "configs/edge/haproxy.cfg"\n' + lines)


def test_the_specs_shell_reload_really_reloads_over_ssh(
    ssh_lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_lines(ssh_lab, f'reload = "echo reload | socat stdio unix-connect:{ssh_lab.haproxy.master_socket}"\n')
    before = parse_show_proc(ssh_lab.workers())
    new = tmp_path / "new.cfg"
    new.write_text(ssh_lab.config(weight=33))

    assert ssh_lab.lbctl("deploy", "edge", "--file", str(new), "--yes") == 0

    after = parse_show_proc(ssh_lab.workers())
    assert after.reloads == before.reloads + 1 and after.workers - before.workers
    assert "new worker" in capsys.readouterr().err


def test_a_noop_reload_over_ssh_is_caught_and_undone(
    ssh_lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retry, "POLL", replace(retry.POLL, deadline=2.0))
    _add_lines(ssh_lab, 'reload = "true"\n')
    before, live = parse_show_proc(ssh_lab.workers()), ssh_lab.live()
    new = tmp_path / "new.cfg"
    new.write_text(ssh_lab.config(weight=34))

    assert ssh_lab.lbctl("deploy", "edge", "--file", str(new), "--yes") == 1

    assert "HAProxy did not reload" in capsys.readouterr().out
    assert ssh_lab.live() == live and parse_show_proc(ssh_lab.workers()) == before


def test_a_wrong_master_socket_over_ssh_is_a_config_error(
    ssh_lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = str(ssh_lab.haproxy.master_socket) + ".gone"
    _retarget(ssh_lab, f'master_socket = "{ssh_lab.haproxy.master_socket}"', f'master_socket = "{wrong}"')
    new = tmp_path / "new.cfg"
    new.write_text(ssh_lab.config(weight=35))
    live = ssh_lab.live()

    assert ssh_lab.lbctl("deploy", "edge", "--file", str(new), "--yes") == 2

    err = capsys.readouterr().err
    assert f"targets.edge.master_socket: nothing answers at {wrong}" in err and "No such file" in err
    assert ssh_lab.live() == live


def test_a_refused_reload_over_ssh_quotes_haproxy(
    ssh_lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_lines(ssh_lab, 'validate = "true"\n')
    bad_line = "    server x 127.0.0.1:1 bogus-keyword"
    text = ssh_lab.config() + "\nbackend oops\n" + bad_line + "\n"
    line = text.splitlines().index(bad_line) + 1
    new = tmp_path / "bad.cfg"
    new.write_text(text)

    assert ssh_lab.lbctl("deploy", "edge", "--file", str(new), "--yes") == 1

    out = capsys.readouterr().out
    assert "[failed: 1]" in out and f"configs/edge/haproxy.cfg:{line}" in out and "bogus-keyword" in out


def test_hostile_paths_in_commands_over_ssh_run_nothing(
    sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backends: object
) -> None:
    from lbctl.cli import main
    from lbctl.lab.processes import Backends

    assert isinstance(backends, Backends)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    lb_dir, port = tmp_path / "lb", free_port()

    def config(weight: int) -> str:
        return haproxy_config(
            frontend_port=port,
            backends=backends.ports,
            stats_socket=lb_dir / "admin.sock",
            weights={"web1": 100, "web2": weight, "web3": 100},
        )

    haproxy = Haproxy.start(lb_dir, config(100), config_name=f"cfg {HOSTILE}")
    try:
        store = tmp_path / "store"
        commands = (
            'validate = "test -f {path} && haproxy -c -f {path}"\n'
            'reload = "cat {path} > /dev/null && echo reload | socat stdio unix-connect:{master_socket}"\n'
        )
        write_store(store, haproxy, sshd, port, extra=commands)
        toml = store / "lbctl.toml"
        toml.write_text(
            toml.read_text().replace(f'path = "{haproxy.config}"', f"path = {json.dumps(str(haproxy.config))}")
        )
        subprocess.run(["git", "-C", str(store), "commit", "-qam", "a hostile path"], check=True)
        before = parse_show_proc(haproxy.master_command("show proc"))
        new = tmp_path / "new.cfg"
        new.write_text(config(66))

        assert main(["deploy", "edge", "--file", str(new), "--yes", "--store", str(store)]) == 0

        assert haproxy.config.read_text() == new.read_text()
        assert parse_show_proc(haproxy.master_command("show proc")).workers - before.workers
    finally:
        haproxy.stop()
    assert not list(tmp_path.rglob("CANARY")) and not (Path.home() / "CANARY").exists()
    assert not Path("/root/CANARY").exists()
