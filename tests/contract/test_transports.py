"""The transport contract (`lbctl.transports.base`), run against each real transport.

Local and ssh (a private sshd on loopback) move files and run commands on the LB host;
http (Caddy's admin API) reads the running config and holds a lock, and refuses the file steps.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any

import pytest

from lbctl.config import target_from
from lbctl.errors import ConfigError, Locked
from lbctl.kinds.haproxy_socket import unix_request
from lbctl.lock import holder_info
from lbctl.transports import transport_for
from lbctl.transports.base import Transport
from tests.contract.conftest import caddy_rig, ssh_settings
from tests.kinds.conftest import CaddyLab
from tests.ssh.conftest import Sshd


class TransportContract:
    """What every file transport does; a subclass provides `settings` (the target's transport keys)."""

    @pytest.fixture
    def lb_dir(self, tmp_path: Path) -> Path:
        """The LB host's config directory (the same machine, reached through the transport)."""
        path = tmp_path / "lb"
        path.mkdir()
        return path

    def transport(self, settings: dict[str, Any], path: Path) -> Transport:
        values = {
            "name": "edge",
            "kind": "haproxy",
            "source": "h.cfg",
            "path": str(path),
            "reload": "true",
            "confirm_reload": False,
            **settings,
        }
        return transport_for(target_from(values))

    def test_run_passes_each_argument_as_it_is(self, settings: dict[str, Any], lb_dir: Path) -> None:
        canary = lb_dir / "CANARY"
        with self.transport(settings, lb_dir / "live.cfg") as t:
            said = t.run(["printf", "%s|", "a b", f"$(touch {canary})", "it's", ""])
            failed = t.run(["sh", "-c", "echo oops >&2; exit 3"])
        assert said.code == 0
        assert said.stdout == f"a b|$(touch {canary})|it's||"
        assert not canary.exists()  # no argument was ever shell code
        assert failed.code == 3 and failed.output == "oops"

    def test_read_file(self, settings: dict[str, Any], lb_dir: Path) -> None:
        live = lb_dir / "live.cfg"
        live.write_bytes(b"global\n\xff binary too\n")
        with self.transport(settings, live) as t:
            assert t.read_file(str(live)) == b"global\n\xff binary too\n"
            assert t.read_file(str(lb_dir / "missing.cfg")) is None

    def test_write_staged_swap_restore_remove(self, settings: dict[str, Any], lb_dir: Path) -> None:
        live, keep = lb_dir / "live.cfg", str(lb_dir / "live.cfg.lbctl-prev")
        live.write_bytes(b"old\n")
        with self.transport(settings, live) as t:
            staged = t.write_staged(str(live), b"new\n")
            assert posixpath.dirname(staged) == str(lb_dir) and staged != str(live)  # beside it, not over it
            assert live.read_bytes() == b"old\n" and Path(staged).read_bytes() == b"new\n"

            t.swap(staged, str(live), keep)
            assert live.read_bytes() == b"new\n" and Path(keep).read_bytes() == b"old\n"
            assert not Path(staged).exists()

            t.restore(keep, str(live))
            assert live.read_bytes() == b"old\n" and Path(keep).exists()  # kept, for a second restore
            t.restore(keep, str(live))
            assert live.read_bytes() == b"old\n"

            again = t.write_staged(str(live), b"refused\n")
            t.remove(again)
            t.remove(again)  # removing what is gone is fine
        assert not Path(again).exists()
        assert sorted(p.name for p in lb_dir.iterdir()) == ["live.cfg", "live.cfg.lbctl-prev"]

    def test_lock_is_exclusive_and_names_its_holder(self, settings: dict[str, Any], lb_dir: Path) -> None:
        live = lb_dir / "live.cfg"
        live.write_bytes(b"old\n")
        name = str(lb_dir / ".live.cfg.lbctl-lock")
        with self.transport(settings, live) as t, self.transport(settings, live) as other:
            with t.lock(name, holder_info("deploy", "edge")):
                with pytest.raises(Locked), other.lock(name, holder_info("rollback", "edge")):
                    pass
                held = other.lock_holder(name)
                assert held is not None and json.loads(held[0])["operation"] == "deploy"
            assert other.lock_holder(name) is None
            with other.lock(name, holder_info("rollback", "edge")):  # free again
                pass


class TestLocal(TransportContract):
    @pytest.fixture
    def settings(self) -> dict[str, Any]:
        return {"transport": "local"}


class TestSsh(TransportContract):
    @pytest.fixture
    def settings(self, sshd: Sshd) -> dict[str, Any]:
        return ssh_settings(sshd)


class TestHttp:
    """Caddy's admin API: the running config and a lock; no files, no commands on the LB host."""

    def test_reads_the_running_config(self, caddy_lab: CaddyLab) -> None:
        rig = caddy_rig(caddy_lab)
        with transport_for(rig.target) as t:
            assert t.read_file("/config/") == caddy_lab.live_text().encode()

    def test_refuses_what_needs_files_or_commands(self, caddy_lab: CaddyLab) -> None:
        rig = caddy_rig(caddy_lab)
        with transport_for(rig.target) as t:
            for step in (
                lambda: t.write_staged("/config/", b"{}"),
                lambda: t.swap("a", "/config/", "b"),
                lambda: t.restore("b", "/config/"),
                lambda: t.remove("a"),
                lambda: t.run(["true"]),
                lambda: unix_request(t, "/run/haproxy.sock", "show info"),
            ):
                with pytest.raises(ConfigError, match="http transport"):
                    step()
        assert caddy_lab.live_text() == rig.config()  # nothing was loaded

    def test_lock_is_exclusive(self, caddy_lab: CaddyLab) -> None:
        rig = caddy_rig(caddy_lab)
        with transport_for(rig.target) as t, transport_for(rig.target) as other:
            with (
                t.lock("edge", holder_info("deploy", "edge")),
                pytest.raises(Locked),
                other.lock("edge", holder_info("rollback", "edge")),
            ):
                pass
            with other.lock("edge", holder_info("rollback", "edge")):
                pass
