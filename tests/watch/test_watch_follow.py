"""`lbctl watch` following: a line per alert, and `watch-alert` notifications to a loopback sink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import LbctlRunner
from tests.notify.sink import Sink
from tests.watch.conftest import Watched, admin


@pytest.fixture
def sink() -> Iterator[Sink]:
    started = Sink()
    yield started
    started.close()


def test_following_prints_the_alert_and_notifies_watch_alert_sinks(
    watched: Watched, lbctl: LbctlRunner, sink: Sink
) -> None:
    toml = watched.root / "lbctl.toml"
    toml.write_text(toml.read_text() + f'\n[[notify]]\ntype = "webhook"\nurl = "{sink.url}"\non = ["watch-alert"]\n')
    admin(watched.lab.haproxy, "set server web/web2 weight 0")
    load = watched.load().start()
    try:
        result = lbctl("watch", "edge", "--duration", "6s")
    finally:
        load.stop()
    assert result.code == 0, result.err
    assert "lbctl watch: edge every 1 s over 3 s" in result.err
    lines = [line for line in result.out.splitlines() if " FIRING edge share-deviation: web/web2 " in line]
    assert len(lines) == 1, result.out
    assert "to undo: lbctl rollback edge --to " in lines[0]
    alerts = [m for m in sink.received if m["kind"] == "watch-alert"]
    assert any("web/web2" in m["message"] for m in alerts), sink.received
    assert all(m["target"] == "edge" and m["rollback"].startswith("lbctl rollback edge --to ") for m in alerts)
    assert len({m["event"] for m in alerts}) == len(alerts)  # one message per alert
