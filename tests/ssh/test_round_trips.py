"""How many round trips a deploy and a rollback make over SSH, counted by the lab's relay.

Over a VPN to a remote site, round trips are what an on-call rollback waits for (PRODUCT.md §6).
lbctl reaches sshd through `lbctl.lab.netproxy.Relay` with 25 ms each way, and the relay counts
the turns of the conversation (client speaks, server answers), SSH's handshake included. The
bounds are counts, never times: one round trip per remote command (two for the upload, whose
input sshd opens only once it started), every command on a channel opened while the previous one
ran, and no more commands than the lifecycle's steps need. Only the polls of `show proc` while
HAProxy's new worker starts vary with the machine's load; they are counted and allowed for.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lbctl.lab.netproxy import Relay
from lbctl.transports.ssh import SshTransport
from tests.ssh.conftest import Lab

HANDSHAKE = 4  # SSH's banners, key exchange and authentication (the bare paramiko script pays the same)
FIRST_CHANNEL = 1  # the session channel the first command runs on, opened with the connection
# lock (with show proc, show info and the live file read ahead), origin, upload, validate, swap, reload,
# show proc (the reload took), the running servers (conformance), unlock
COMMANDS = 9
UPLOAD_INPUT = 1  # the candidate goes as stdin, which sshd opens only once the command started
# The relay counts turns as messages pass, and some go concurrently (both banners, the next channel
# opening while a command runs): on a loaded machine they may split a turn in two, once or twice.
CONCURRENT = 2


@dataclass
class Wire:
    """What went over the relay while one lbctl command ran."""

    round_trips: int = 0
    commands: list[str] = field(default_factory=list)  # a label per remote command run

    @property
    def extra_polls(self) -> int:
        """`show proc` asked again while the new worker was not there yet (load-dependent)."""
        after_reload = self.commands[self.commands.index("socket reload") + 1 :] if "socket reload" in self else []
        return max(0, after_reload.count("socket show proc") - 1)

    def __contains__(self, label: str) -> bool:
        return label in self.commands


def _label(argv: Sequence[str]) -> str:
    if argv[:2] == ["sh", "-c"] and len(argv) > 3:
        name = argv[3].removeprefix("lbctl-")
        return f"socket {argv[-1]}" if name == "socat" else name
    return argv[0]


@pytest.fixture
def relayed(ssh_lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Relay, list[str]]]:
    """`edge` reached through a 25 ms-each-way relay; the labels of the remote commands run."""
    relay = Relay(ssh_lab.sshd.port, delay=0.025).start()
    known = tmp_path / "known_hosts"
    known.write_text(ssh_lab.sshd.known_hosts_line(relay.port))
    toml = ssh_lab.store / "lbctl.toml"
    toml.write_text(
        toml.read_text()
        .replace(f"port = {ssh_lab.sshd.port}\n", f"port = {relay.port}\n")
        .replace(str(ssh_lab.sshd.known_hosts), str(known))
    )
    subprocess.run(["git", "-C", str(ssh_lab.store), "commit", "-qam", "reach edge through the relay"], check=True)
    labels: list[str] = []
    original = SshTransport._call_one

    def counted(self: SshTransport, argv: Sequence[str], stdin: bytes, timeout: float) -> tuple[int, bytes, bytes]:
        labels.append(_label(argv))
        return original(self, argv, stdin, timeout)

    monkeypatch.setattr(SshTransport, "_call_one", counted)
    try:
        yield relay, labels
    finally:
        relay.close()


def _run(ssh_lab: Lab, relay: Relay, labels: list[str], *args: str) -> Wire:
    labels.clear()
    relay.reset()
    assert ssh_lab.lbctl(*args, "--yes") == 0
    return Wire(relay.reset().round_trips, list(labels))


def _assert_lean(wire: Wire) -> None:
    commands = len(wire.commands) - wire.extra_polls
    assert commands <= COMMANDS, f"{commands} remote commands (at most {COMMANDS}): {wire.commands}"
    limit = HANDSHAKE + FIRST_CHANNEL + COMMANDS + UPLOAD_INPUT + CONCURRENT + wire.extra_polls
    assert wire.round_trips <= limit, f"{wire.round_trips} round trips (at most {limit}): {wire.commands}"


def test_a_deploy_and_a_rollback_over_ssh_make_one_round_trip_per_step(
    ssh_lab: Lab, relayed: tuple[Relay, list[str]], tmp_path: Path
) -> None:
    relay, labels = relayed
    a, b = tmp_path / "a.cfg", tmp_path / "b.cfg"
    a.write_text(ssh_lab.config(weight=50))
    b.write_text(ssh_lab.config(weight=80))
    assert ssh_lab.lbctl("deploy", "edge", "--file", str(a), "--yes") == 0

    deploy = _run(ssh_lab, relay, labels, "deploy", "edge", "--file", str(b))
    assert ssh_lab.live() == b.read_text()
    _assert_lean(deploy)

    rollback = _run(ssh_lab, relay, labels, "rollback", "edge", "--to", "previous")
    assert ssh_lab.live() == a.read_text()  # it really staged, validated, swapped and reloaded
    assert Path(f"{ssh_lab.haproxy.config}.lbctl-prev").read_text() == b.read_text()  # kept for a restore
    assert {"ahead", "put", "haproxy", "swap", "socket reload", "unlock"} <= set(rollback.commands)
    # The lock's command also read what the preflight needs: no command of their own.
    assert "read" not in rollback and "socket show info" not in rollback and "lock" not in rollback
    _assert_lean(rollback)
