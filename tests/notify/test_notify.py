"""`[[notify]]` sinks: one message per journal event per sink, delivered to a loopback HTTP sink,
never changing the command's exit code; what a failing or hanging sink missed waits in the outbox."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbctl.lab.processes import haproxy_target_toml
from lbctl.notify import settle
from tests.conftest import Lab, LbctlRunner, git
from tests.notify.sink import Sink


@pytest.fixture
def sink() -> Iterator[Sink]:
    started = Sink()
    yield started
    started.close()


def notified_store(root: Path, lab: Lab, lbctl: LbctlRunner, notify: str) -> Path:
    assert lbctl("init", str(root)).code == 0
    defaults = "[defaults]\nverify_seconds = 1\ncheck_interval = 0.25\nretries = 2\n\n"
    target = haproxy_target_toml("edge", lab.haproxy, f"http://127.0.0.1:{lab.fe_port}/", probes=2, balance=0.9)
    (root / "lbctl.toml").write_text(defaults + target + "\n" + notify)
    source = root / "configs" / "edge" / "haproxy.cfg"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(lab.live_text())
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "Add target edge")
    first = lbctl("deploy", "edge", "--yes", "--store", str(root))  # what runs now becomes live
    assert first.code == 0, first.out + first.err
    settle()
    return root


def deploy_weights(root: Path, lab: Lab, lbctl: LbctlRunner, weights: dict[str, int]) -> tuple[int, float, str]:
    candidate = root.parent / "candidate.cfg"
    candidate.write_text(lab.config(weights=weights))
    started = time.monotonic()
    result = lbctl("deploy", "edge", "--file", str(candidate), "-m", "Give web1 more", "--yes", "--store", str(root))
    seconds = time.monotonic() - started
    settle()  # the deliveries the deploy started (a process waits for them at exit)
    return result.code, seconds, result.out + result.err


def waiting(lbctl: LbctlRunner, root: Path) -> list[str]:
    result = lbctl("notify", "--json", "--store", str(root))
    assert result.code == 0, result.err
    return json.loads(result.out)["waiting"]  # type: ignore[no-any-return]


def test_one_message_per_event_with_the_facts_and_a_rollback_that_works(
    tmp_path: Path, lab: Lab, lbctl: LbctlRunner, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LBCTL_TEST_HOOK", sink.url)
    notify = '[[notify]]\ntype = "webhook"\nurl_env = "LBCTL_TEST_HOOK"\non = ["good", "rolled-back"]\n'
    root = notified_store(tmp_path / "store", lab, lbctl, notify)
    before = git(root, "rev-parse", "HEAD").strip()
    sink.received.clear()
    code, _, output = deploy_weights(root, lab, lbctl, {"web1": 200})
    assert code == 0, output
    assert len(sink.received) == 1
    [msg] = sink.received
    assert msg["kind"] == "good" and msg["target"] == "edge" and msg["who"]
    assert msg["to"] == git(root, "rev-parse", "HEAD").strip()
    assert msg["from"] == before
    assert any("web1" in line and "200" in line for line in msg["diff"]), msg["diff"]
    assert {s["name"] for s in msg["stages"]} >= {"validate", "reload"}
    assert all(s["seconds"] >= 0 for s in msg["stages"])
    assert set(msg["shares"]["web"]) == {"web1", "web2", "web3"}
    assert msg["rollback"].startswith("lbctl rollback edge --to ") and msg["rollback"].endswith(" --yes")

    # The command in the message works as written.
    argv = shlex.split(msg["rollback"])[1:]
    result = lbctl(*argv, "--store", str(root))
    assert result.code == 0, result.out + result.err
    settle()
    assert "weight 200" not in lab.live_text()
    assert [m["kind"] for m in sink.received] == ["good", "rolled-back"]
    assert len({m["event"] for m in sink.received}) == 2

    # A later flush (or command) never sends an event twice.
    assert lbctl("notify", "--flush", "--store", str(root)).code == 0
    assert len(sink.received) == 2
    assert waiting(lbctl, root) == []


def test_a_failing_sink_keeps_the_exit_code_and_the_outbox_delivers_later(
    tmp_path: Path, lab: Lab, lbctl: LbctlRunner, sink: Sink
) -> None:
    sink.mode = "fail"
    notify = f'[[notify]]\ntype = "slack"\nurl = "{sink.url}"\non = ["good"]\ntargets = ["ed*"]\n'
    root = notified_store(tmp_path / "store", lab, lbctl, notify)
    assert len(waiting(lbctl, root)) == 1  # the first deploy's message
    code, _, output = deploy_weights(root, lab, lbctl, {"web1": 200})
    assert code == 0, output
    assert sink.received == []
    assert len(waiting(lbctl, root)) == 2

    sink.mode = "ok"
    result = lbctl("notify", "--flush", "--store", str(root))
    assert result.code == 0 and "sent" in result.out, result.out
    assert len(sink.received) == 2  # oldest first
    assert sink.received[1]["text"].startswith("lbctl: deploy edge ")
    assert "undo: lbctl rollback edge --to " in sink.received[1]["text"]
    assert lbctl("notify", "--flush", "--store", str(root)).code == 0
    assert len(sink.received) == 2
    assert waiting(lbctl, root) == []


def test_a_hanging_sink_is_bounded_and_never_fails_the_deploy(
    tmp_path: Path, lab: Lab, lbctl: LbctlRunner, sink: Sink
) -> None:
    sink.mode = "hang"  # holds each request for 30 s
    notify = f'[[notify]]\ntype = "webhook"\nurl = "{sink.url}"\ntimeout = "1s"\n'
    root = notified_store(tmp_path / "store", lab, lbctl, notify)
    code, seconds, output = deploy_weights(root, lab, lbctl, {"web1": 200})
    assert code == 0, output
    assert seconds < 25  # the sink's 30 s were not waited for (delivery runs beside the deploy, 1 s timeout)
    assert len(waiting(lbctl, root)) == 2  # the first deploy's message, and this one's
    sink.mode = "ok"
    assert lbctl("notify", "--flush", "--store", str(root)).code == 0
    assert [m["kind"] for m in sink.received] == ["good", "good"]


def test_other_targets_and_events_are_not_announced(tmp_path: Path, lab: Lab, lbctl: LbctlRunner, sink: Sink) -> None:
    notify = f'[[notify]]\ntype = "webhook"\nurl = "{sink.url}"\ntargets = ["db-*"]\n'
    root = notified_store(tmp_path / "store", lab, lbctl, notify)
    code, _, output = deploy_weights(root, lab, lbctl, {"web1": 200})
    assert code == 0, output
    assert sink.received == []
    assert waiting(lbctl, root) == []


def test_a_real_process_delivers_before_it_exits(tmp_path: Path, lab: Lab, lbctl: LbctlRunner, sink: Sink) -> None:
    import subprocess
    import sys

    notify = f'[[notify]]\ntype = "webhook"\nurl = "{sink.url}"\non = ["good"]\n'
    root = notified_store(tmp_path / "store", lab, lbctl, notify)
    sink.received.clear()
    candidate = root.parent / "candidate.cfg"
    candidate.write_text(lab.config(weights={"web1": 200}))
    argv = [sys.executable, "-m", "lbctl", "deploy", "edge", "--file", str(candidate), "--yes", "--store", str(root)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [m["kind"] for m in sink.received] == ["good"]  # sent before the process ended


def test_grafana_gets_an_annotation_and_its_token_stays_in_the_environment(
    tmp_path: Path, lab: Lab, lbctl: LbctlRunner, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secrets
    import subprocess

    token = "glsa_" + secrets.token_hex(16)
    monkeypatch.setenv("LBCTL_TEST_GRAFANA_TOKEN", token)
    grafana = sink.url.rsplit("/", 1)[0]  # the server's root, as Grafana's address is given
    notify = f'[[notify]]\ntype = "grafana"\nurl = "{grafana}"\ntoken_env = "LBCTL_TEST_GRAFANA_TOKEN"\n'
    root = notified_store(tmp_path / "store", lab, lbctl, notify)
    sink.received.clear()
    sink.requests.clear()
    code, _, output = deploy_weights(root, lab, lbctl, {"web1": 200})
    assert code == 0, output
    [(path, headers)] = sink.requests
    [annotation] = sink.received
    assert path == "/api/annotations" and headers["Authorization"] == f"Bearer {token}"
    assert headers["Content-Type"] == "application/json"
    assert annotation["tags"] == ["lbctl", "target:edge", "verdict:good", "op:deploy"]
    assert 1.7e12 < annotation["time"] <= annotation["timeEnd"]  # milliseconds, over the deploy's span
    text = annotation["text"]
    assert text.startswith("lbctl: deploy edge ") and ": good (by " in text
    assert "web1" in text and "undo: lbctl rollback edge --to " in text

    # The token is in no file of the store, no journal event, no output.
    log = lbctl("log", "edge", "--json", "--store", str(root))
    history = subprocess.run(["git", "-C", str(root), "log", "-p", "--all"], capture_output=True, text=True).stdout
    files = [p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and ".git/objects" not in str(p)]
    for seen in (output, log.out, log.err, history, *files):
        assert token not in seen

    # Without the token, nothing is sent and the deploy's exit code is the same; the outbox sends it later.
    monkeypatch.delenv("LBCTL_TEST_GRAFANA_TOKEN")
    code, _, output = deploy_weights(root, lab, lbctl, {"web1": 100})
    assert code == 0, output
    assert len(sink.received) == 1 and len(waiting(lbctl, root)) == 1
    monkeypatch.setenv("LBCTL_TEST_GRAFANA_TOKEN", token)
    assert lbctl("notify", "--flush", "--store", str(root)).code == 0
    assert len(sink.received) == 2 and waiting(lbctl, root) == []

    # A token written into lbctl.toml is refused: only the name of a variable goes there.
    toml = root / "lbctl.toml"
    toml.write_text(toml.read_text().replace('token_env = "LBCTL_TEST_GRAFANA_TOKEN"', f'token = "{token}"'))
    result = lbctl("notify", "--store", str(root))
    assert result.code == 2 and "token" in result.err and token not in result.out + result.err
