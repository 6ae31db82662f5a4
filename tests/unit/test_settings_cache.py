"""lbctl.toml's validated settings are cached: the on-call path starts without pydantic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lbctl import config
from lbctl.errors import ConfigError

TOML = """\
[targets.edge]
kind = "haproxy"
source = "edge.cfg"
path = "/etc/haproxy/haproxy.cfg"
master_socket = "/run/haproxy-master.sock"
verify_seconds = {verify}
"""


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    (root / "edge.cfg").write_text("global\n")
    (root / "lbctl.toml").write_text(TOML.format(verify=5))
    return root


def _load_in_a_fresh_process(store: Path) -> str:
    code = (
        "import sys; from pathlib import Path; from lbctl import config\n"
        f"c = config.load(Path({str(store / 'lbctl.toml')!r}))\n"
        "print(c.targets['edge'].verify_seconds, 'pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    return out.stdout.strip()


def test_second_load_comes_from_the_cache_without_pydantic(store: Path) -> None:
    assert _load_in_a_fresh_process(store) == "5.0 True"  # validated
    assert _load_in_a_fresh_process(store) == "5.0 False"  # cached: pydantic never imported
    cached = list((Path(os.environ["HOME"]) / ".cache" / "lbctl" / "settings").iterdir())
    assert len(cached) == 1 and cached[0].stat().st_mode & 0o777 == 0o600


def test_an_edited_toml_is_validated_again(store: Path) -> None:
    config.load(store / "lbctl.toml")
    (store / "lbctl.toml").write_text(TOML.format(verify=7))
    assert config.load(store / "lbctl.toml").targets["edge"].verify_seconds == 7
    (store / "lbctl.toml").write_text(TOML.format(verify=-1))
    with pytest.raises(ConfigError) as caught:
        config.load(store / "lbctl.toml")
    assert "verify_seconds" in str(caught.value) and caught.value.line == 6


def test_a_damaged_cache_is_ignored(store: Path) -> None:
    config.load(store / "lbctl.toml")
    for cached in (Path(os.environ["HOME"]) / ".cache" / "lbctl" / "settings").iterdir():
        cached.write_bytes(b"{not json")
    assert config.load(store / "lbctl.toml").targets["edge"].kind == "haproxy"


def test_a_cached_config_still_checks_its_source_exists(store: Path) -> None:
    config.load(store / "lbctl.toml")
    (store / "edge.cfg").unlink()
    with pytest.raises(ConfigError, match=r"edge\.cfg"):
        config.load(store / "lbctl.toml")


FULL = """\
[policy]
max_share = 0.8

[groups.edge.safety]
max_servers_removed = 0.5

[targets.edge]
kind = "haproxy"
source = "./edge.cfg"
path = "/etc/haproxy/haproxy.cfg"
master_socket = "/run/haproxy-master.sock"
validate = "haproxy -c -f {path}"
group = "edge"

[[targets.edge.checks]]
type = "http"
url = "http://127.0.0.1/"

[[targets.edge.checks]]
type = "balance"
max_share = 0.7
"""


def test_the_cached_settings_equal_the_validated_ones(store: Path) -> None:
    (store / "lbctl.toml").write_text(FULL)
    fresh = config.load(store / "lbctl.toml")
    assert fresh.targets["edge"].source == "edge.cfg"  # normalised as git names it
    assert config.load(store / "lbctl.toml") == fresh  # the second one is read from the cache


def test_a_cache_file_others_may_write_is_not_trusted(store: Path) -> None:
    import json

    path = store / "lbctl.toml"
    config.load(path)
    cache = config.cache.cache_file(path)
    assert cache is not None
    stored = json.loads(cache.read_text())
    stored["settings"]["targets"]["edge"]["validate_command"] = "touch /tmp/owned"
    cache.write_text(json.dumps(stored))
    cache.chmod(0o666)
    assert config.load(path).targets["edge"].validate_command is None  # validated again, not read


def test_no_home_directory_means_no_cache_not_a_crash(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert config.load(store / "lbctl.toml").targets["edge"].kind == "haproxy"


SSH = """\
[targets.edge]
kind = "nginx"
source = "edge.cfg"
transport = "ssh"
host = "lb1.example"
port = {port}
path = "/etc/nginx/nginx.conf"
prefix = "/etc/nginx"
"""


def test_plugin_settings_are_validated_with_their_key_and_survive_the_cache(store: Path) -> None:
    # ssh's and nginx's settings are declared next to them, and still flat keys of the target
    (store / "lbctl.toml").write_text(SSH.format(port=70000))
    with pytest.raises(ConfigError) as caught:
        config.load(store / "lbctl.toml")
    assert "`targets.edge.port`" in str(caught.value) and caught.value.line == 6
    (store / "lbctl.toml").write_text(SSH.format(port=2222))
    fresh = config.load(store / "lbctl.toml")
    cached = config.load(store / "lbctl.toml")
    assert cached == fresh and (cached.targets["edge"].port, cached.targets["edge"].prefix) == (2222, "/etc/nginx")
