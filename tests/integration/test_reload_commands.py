"""Commands run as written, and every reload confirmed, against a real local HAProxy."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from lbctl import retry
from lbctl.kinds.haproxy import ProcState, parse_show_proc
from tests.conftest import Lab, LbctlRunner, git, target_toml, write


def stats_command(lab: Lab, command: str) -> str:
    return lab.haproxy.runtime_command(command)


def running_weight(lab: Lab, server: str) -> int:
    """The weight the running HAProxy uses for web/SERVER (`show stat`, column 18)."""
    for line in stats_command(lab, "show stat").splitlines():
        row = line.split(",")
        if len(row) > 18 and row[0] == "web" and row[1] == server:
            return int(row[18])
    raise AssertionError(f"no web/{server} in show stat")


def proc(lab: Lab) -> ProcState:
    return parse_show_proc(lab.haproxy.master_command("show proc"))


def retarget(store: Path, lab: Lab, *, extra: str = "", drop: tuple[str, ...] = ()) -> None:
    """Rewrite target `edge`: lines starting with a key in `drop` go, `extra` lines come in."""
    lines = [line for line in target_toml(lab).splitlines() if not line.startswith(drop)]
    at = lines.index('source = "configs/edge/haproxy.cfg"') + 1
    lines[at:at] = [line for line in extra.strip().splitlines()]
    (store / "lbctl.toml").write_text("\n".join(lines) + "\n")
    git(store, "commit", "-qam", "retarget edge")


@pytest.fixture
def short_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload that never comes is given up on after 2 s instead of 10 (the outcome is the same)."""
    monkeypatch.setattr(retry, "POLL", replace(retry.POLL, deadline=2.0))


@pytest.mark.parametrize("address", ["unix", "unix-connect"])  # PRODUCT.md §4 writes `unix:`, the issue `unix-connect:`
def test_the_specs_shell_reload_really_reloads(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path, address: str
) -> None:
    master = lab.haproxy.master_socket
    retarget(store, lab, extra=f'reload = "echo reload | socat stdio {address}:{master}"')
    before = proc(lab)
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 37, "web3": 100}))

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")

    assert result.code == 0, result.out + result.err
    after = proc(lab)
    assert after.master_pid == before.master_pid and after.reloads == before.reloads + 1
    assert after.workers - before.workers, after  # a new worker PID: the pipe ran through a shell
    assert running_weight(lab, "web2") == 37
    assert "new worker" in result.err


def test_shell_syntax_in_validate_reload_and_command_checks(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    reload = "echo reload | socat stdio unix-connect:{master_socket}"
    extra = f"""
validate = "test -s {{path}} && WHO=lbctl haproxy -c -f {{path}} > {marks}.validate 2>&1"
reload = "LBCTL_REASON=test sh -c 'echo $LBCTL_REASON' > {marks}.reload && {reload}"
"""
    retarget(store, lab, extra=extra)
    toml = (store / "lbctl.toml").read_text()
    check = (
        '\n[[targets.edge.checks]]\ntype = "command"\n'
        'command = "echo show info | socat stdio unix-connect:{stats_socket} | grep -q ^Pid:"\n'
    )
    (store / "lbctl.toml").write_text(toml + check)
    git(store, "commit", "-qam", "a shell check")
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 55}))

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")

    assert result.code == 0, result.out + result.err
    assert "Configuration file is valid" in Path(f"{marks}.validate").read_text()
    assert Path(f"{marks}.reload").read_text() == "test\n"  # an environment assignment, then a redirection
    assert running_weight(lab, "web3") == 55


def test_a_hostile_path_is_one_word_in_every_command(
    tmp_path: Path, lab: Lab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lbctl.lab.processes import Haproxy, free_port, haproxy_config

    hostile = "a b'c\"d;touch CANARY|touch CANARY$(touch CANARY)`touch CANARY`&&x\nnl$HOME*"
    monkeypatch.chdir(tmp_path)
    workdir, port = tmp_path / "hostile-lb", free_port()

    def config(weight: int) -> str:
        return haproxy_config(
            frontend_port=port,
            backends=lab.backends.ports,
            stats_socket=workdir / "admin.sock",
            weights={"web1": 100, "web2": weight, "web3": 100},
        )

    haproxy = Haproxy.start(workdir, config(100), config_name=f"cfg {hostile}")
    try:
        root = tmp_path / "store"
        assert lbctl("init", str(root)).code == 0
        (root / "lbctl.toml").write_text(f"""\
[defaults]
verify_seconds = 0

[targets.edge]
kind = "haproxy"
source = "configs/edge/haproxy.cfg"
path = {json.dumps(str(haproxy.config))}
master_socket = "{haproxy.master_socket}"
validate = "haproxy -c -f {{path}}"
reload = "test -f {{path}} && echo reload | socat stdio unix-connect:{{master_socket}}"

[[targets.edge.checks]]
type = "command"
command = "test -f {{path}} && cat {{path}} > /dev/null"

[[targets.edge.checks]]
type = "http"
url = "http://127.0.0.1:{port}/"
probes = 2
""")
        git(root, "add", "lbctl.toml")
        git(root, "commit", "-qm", "a hostile path")
        before = parse_show_proc(haproxy.master_command("show proc"))
        new = write(tmp_path / "new.cfg", config(64))

        result = lbctl("deploy", "edge", "--file", str(new), "--yes", "--store", str(root))

        assert result.code == 0, result.out + result.err
        assert haproxy.config.read_text() == new.read_text()
        after = parse_show_proc(haproxy.master_command("show proc"))
        assert after.workers - before.workers
    finally:
        haproxy.stop()
    assert not list(tmp_path.rglob("CANARY")) and not (Path.home() / "CANARY").exists()


def test_a_reload_command_that_does_nothing_is_caught_and_undone(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path, short_poll: None
) -> None:
    retarget(store, lab, extra='reload = "true"')
    before, live_before = proc(lab), lab.live_text()
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 21, "web3": 100}))

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")

    assert result.code == 1, result.out + result.err  # caught and restored; not 7: the LB is healthy
    assert "HAProxy did not reload" in result.out and "`true` exited 0" in result.out
    assert "(healthy)" in result.out
    assert lab.live_text() == live_before
    assert proc(lab) == before  # nothing ever reloaded it
    events = json.loads(lbctl("log", "edge", "--json").out)["events"]
    assert [e["verdict"] for e in events[:2]] == ["good", "failed"] and events[0]["op"] == "auto-rollback"


def test_the_stats_socket_confirms_when_there_is_no_master_socket(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path, short_poll: None
) -> None:
    master = lab.haproxy.master_socket
    retarget(store, lab, extra=f'reload = "echo reload | socat stdio unix-connect:{master}"', drop=("master_socket",))
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 44, "web3": 100}))
    result = lbctl("deploy", "edge", "--file", str(new), "--yes")
    assert result.code == 0, result.out + result.err
    assert "answers on the stats socket" in result.err
    assert running_weight(lab, "web2") == 44

    retarget(store, lab, extra='reload = "true"', drop=("master_socket",))
    live = lab.live_text()
    other = write(tmp_path / "other.cfg", lab.config(weights={"web1": 100, "web2": 45, "web3": 100}))
    result = lbctl("deploy", "edge", "--file", str(other), "--yes")
    assert result.code == 1, result.out + result.err
    assert "stats socket still answers from worker" in result.out
    assert lab.live_text() == live and running_weight(lab, "web2") == 44


def test_a_target_that_cannot_confirm_is_a_config_error(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    (store / "lbctl.toml").write_text(
        target_toml(lab)
        .replace(f'master_socket = "{lab.haproxy.master_socket}"', 'reload = "true"')
        .replace(f'stats_socket = "{lab.haproxy.stats_socket}"\n', "")
    )
    git(store, "commit", "-qam", "no way to confirm")
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 11, "web3": 100}))
    live = lab.live_text()

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")

    assert result.code == 2, result.out + result.err
    for word in ("master_socket", "stats_socket", "confirm_reload = false"):
        assert word in result.err
    assert lab.live_text() == live


def test_confirm_reload_false_records_unconfirmed_never_good(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    first = write(tmp_path / "first.cfg", lab.config(weights={"web1": 100, "web2": 90, "web3": 100}))
    assert lbctl("deploy", "edge", "--file", str(first), "--yes").code == 0
    good = git(store, "rev-parse", "HEAD").strip()
    retarget(store, lab, extra='reload = "true"\nconfirm_reload = false', drop=("master_socket", "stats_socket"))
    second = write(tmp_path / "second.cfg", lab.config(weights={"web1": 100, "web2": 80, "web3": 100}))

    result = lbctl("deploy", "edge", "--file", str(second), "--yes")

    assert result.code == 0, result.out + result.err
    assert "NOT confirmed" in result.out
    state = json.loads(lbctl("status", "edge", "--json", "--offline").out)["targets"][0]
    assert state["status"] == "unconfirmed" and state["last_good"] == good
    events = json.loads(lbctl("log", "edge", "--json").out)["events"]
    assert events[0]["verdict"] == "unconfirmed"
    assert "unconfirmed" in lbctl("status", "edge", "--offline").out
    # The same content again is not "nothing to do": it was never confirmed, so it is pushed and reloaded.
    again = lbctl("deploy", "edge", "--yes")
    assert again.code == 0 and "nothing to do" not in again.out and "NOT confirmed" in again.out
    # last-good is the confirmed revision, not the unconfirmed one that runs now
    back = lbctl("rollback", "edge", "--to", "last-good", "--yes")
    assert back.code == 0, back.out + back.err
    assert lab.live_text() == first.read_text()
