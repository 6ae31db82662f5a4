"""The driver contract (`lbctl.drivers.base`), run against each real LB: one subclass per backend.

Each test opens a driver as the engine does (`driver_for(target)`, one per operation) and
judges the LB itself: its file or API (read beside lbctl) and its frontend's answers.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from lbctl.drivers.watchdog import CannotArm
from lbctl.errors import ValidationFailed
from lbctl.store.bundle import Bundle
from tests.conftest import Lab
from tests.contract.conftest import Rig, answers, caddy_rig, haproxy_rig, nginx_rig, ssh_settings, status_of
from tests.kinds.conftest import CaddyLab, NginxLab
from tests.ssh.conftest import Sshd

MAINTENANCE = "maintenance"  # every lab config routes there on request: a backend nothing answers at


def _ok(status: int) -> bool:
    return status == 200


def _down(status: int) -> bool:
    return status >= 500


class DriverContract:
    """What every driver does; a subclass provides the `rig` fixture for its backend."""

    can_arm = True  # a commit-confirm watchdog can run on the LB host

    def test_running_is_what_the_lb_runs(self, rig: Rig) -> None:
        with rig.driver() as driver:
            running = driver.running()
        assert rig.same(driver, running.main if running else None, rig.live_text())

    def test_stage_and_discard_change_nothing_live(self, rig: Rig) -> None:
        before = rig.live_text()
        with rig.driver() as driver:
            assert driver.stage(Bundle(rig.config(route_to=MAINTENANCE).encode()))
            assert rig.live_text() == before
            driver.discard()
        assert rig.live_text() == before
        assert rig.leftovers() == []
        assert _ok(status_of(rig.fe_port))

    def test_validate_refuses_a_broken_candidate_and_passes_a_good_one(self, rig: Rig) -> None:
        before = rig.live_text()
        with rig.driver() as driver:
            driver.stage(Bundle(rig.broken.encode()))
            with pytest.raises(ValidationFailed):
                driver.validate()
            driver.discard()
            driver.stage(Bundle(rig.config(route_to=MAINTENANCE).encode()))
            assert isinstance(driver.validate(), str)
            driver.discard()
        assert rig.live_text() == before
        assert rig.leftovers() == []

    def test_commit_puts_the_candidate_live_and_confirms_the_reload(self, rig: Rig) -> None:
        new = rig.config(route_to=MAINTENANCE)
        with rig.driver() as driver:
            driver.stage(Bundle(new.encode()))
            driver.validate()
            detail = driver.commit()
            running = driver.running()
        assert "not confirmed" not in detail and detail
        assert rig.same(driver, running.main if running else None, new)
        assert rig.same(driver, rig.live_text().encode(), new)
        assert answers(rig.fe_port, _down)  # the LB serves the new config: its only backend is dead

    def test_restore_puts_the_previous_config_back_and_reloads(self, rig: Rig) -> None:
        old = rig.live_text()
        with rig.driver() as driver:
            driver.stage(Bundle(rig.config(route_to=MAINTENANCE).encode()))
            driver.commit()
            assert answers(rig.fe_port, _down)
            detail = driver.restore()
            assert rig.live_text() == old
            assert answers(rig.fe_port, _ok)
            driver.restore()  # a second restore is harmless
            running = driver.running()
        assert detail
        assert rig.same(driver, running.main if running else None, old)
        assert rig.live_text() == old

    def test_commit_with_revert_in_then_confirm_keeps_the_change(self, rig: Rig) -> None:
        new, old = rig.config(route_to=MAINTENANCE), rig.live_text()
        with rig.driver() as driver:
            driver.stage(Bundle(new.encode()))
            if not self.can_arm:
                with pytest.raises(CannotArm):
                    driver.commit(revert_in=30)
                driver.discard()
                assert rig.live_text() == old  # refused before anything changed
                return
            driver.commit(revert_in=30)
            assert driver.armed is not None
            assert driver.confirm() == "disarmed"
            assert driver.armed is None
        assert rig.same(driver, rig.live_text().encode(), new)

    def test_traffic_counts_per_server(self, rig: Rig) -> None:
        for _ in range(6):
            with urllib.request.urlopen(f"http://127.0.0.1:{rig.fe_port}/", timeout=3) as answer:
                assert answer.status == 200
        with rig.driver() as driver:
            snapshot = driver.traffic()
        named = {f"{s.backend}/{s.server}" for s in snapshot.servers} | {s.server for s in snapshot.servers}
        assert set(rig.servers) <= named, named
        if driver.kind.probes_itself:  # Caddy counts no requests: the reading is lbctl's own probes
            assert driver.kind.probes_sent > 0
        else:
            assert sum(s.sessions for s in snapshot.servers) >= 6


class WatchdogContract:
    """What a driver whose LB host runs lbctl's commit-confirm watchdog does (file-based LBs)."""

    def test_a_commit_nobody_confirms_is_reverted_on_the_lb_host(self, rig: Rig) -> None:
        old = rig.live_text()
        with rig.driver() as driver:
            driver.stage(Bundle(rig.config(route_to=MAINTENANCE).encode()))
            # Long enough for the swap and the reload to be done before it fires (a watchdog that finds
            # the live file is not its change's stops: "superseded"), short for the suite.
            detail = driver.commit(revert_in=2.5)
            assert rig.same(driver, rig.live_text().encode(), rig.config(route_to=MAINTENANCE)), detail
        deadline = time.monotonic() + 20
        while rig.live_text() != old and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rig.live_text() == old  # the watchdog put the previous file back...
        assert answers(rig.fe_port, _ok)  # ...and reloaded the LB with it


class TestHaproxyLocal(DriverContract, WatchdogContract):
    @pytest.fixture
    def rig(self, lab: Lab) -> Rig:
        return haproxy_rig(lab)


class TestHaproxyOverSsh(DriverContract, WatchdogContract):
    @pytest.fixture
    def rig(self, lab: Lab, sshd: Sshd) -> Rig:
        return haproxy_rig(lab, **ssh_settings(sshd))


class TestNginxLocal(DriverContract, WatchdogContract):
    @pytest.fixture
    def rig(self, nginx_lab: NginxLab) -> Rig:
        return nginx_rig(nginx_lab)


class TestCaddyApi(DriverContract):
    can_arm = False  # the watchdog swaps files on the LB host; Caddy is changed through its API

    @pytest.fixture
    def rig(self, caddy_lab: CaddyLab) -> Rig:
        return caddy_rig(caddy_lab)


def test_staging_leaves_no_file_for_caddy(caddy_lab: CaddyLab, tmp_path: Path) -> None:
    """Caddy has no config file: its driver stages in memory, and nothing is written on disk."""
    rig = caddy_rig(caddy_lab)
    with rig.driver() as driver:
        staged = driver.stage(Bundle(rig.config(route_to=MAINTENANCE).encode()))
        driver.validate()
    assert not Path(staged).exists()
    assert driver.placed is not None and rig.live_text() != rig.config(route_to=MAINTENANCE)


def test_a_tree_is_staged_committed_and_restored_as_one(nginx_lab: NginxLab) -> None:
    """A bundle with includes (nginx): one validation of the staged tree, one swap, one restore
    that also removes the files the previous config did not have."""
    rig = nginx_rig(nginx_lab)
    old = rig.live_text()
    whole = rig.config(route_to=MAINTENANCE)
    start = whole.index("    server {")
    end = whole.rindex("}")  # the http block's end: the server block is all before it
    main = whole[:start] + "    include sites/*.conf;\n" + whole[end:]
    site = whole[start:end]
    included = nginx_lab.nginx.config.parent / "sites" / "edge.conf"
    with rig.driver() as driver:
        broken = site.replace("proxy_pass", "proxy_passs_typo on;\n            proxy_pass")
        driver.stage(Bundle.of(main.encode(), {"sites/edge.conf": broken.encode()}))
        with pytest.raises(ValidationFailed):  # the staged tree is validated, its includes with it
            driver.validate()
        driver.discard()
        driver.stage(Bundle.of(main.encode(), {"sites/edge.conf": site.encode()}))
        assert not included.exists() and rig.live_text() == old  # staged beside, nothing live yet
        driver.validate()
        driver.commit()
        assert rig.live_text() == main and included.read_text() == site
        assert answers(rig.fe_port, _down)
        driver.restore()
    assert rig.live_text() == old
    assert not included.exists()  # the previous config had no such file
    assert answers(rig.fe_port, _ok)
    assert rig.leftovers() == []
