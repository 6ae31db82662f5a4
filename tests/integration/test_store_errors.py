"""A bad store or lbctl.toml gets a clear message and exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Lab, LbctlRunner, git, target_toml, write


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace("retries = 2", "retries = 2\nretires = 3"), ("unknown key `defaults.retires`", ":5")),
        (lambda t: t.replace('kind = "haproxy"', 'kind = "haproxyy"'), ("targets.edge.kind", ":7")),
        (lambda t: t.replace('transport = "local"', 'transport = "carrier-pigeon"'), ("targets.edge.transport", ":8")),
        (lambda t: t.replace("probes = 2", 'probes = "two"'), ("targets.edge.checks.0.probes", ":17")),
        (lambda t: t.replace("configs/edge/haproxy.cfg", "configs/nope.cfg"), ("configs/nope.cfg", ":9")),
        (lambda t: t.replace("[targets.edge]", "[targets.edge"), ("not valid TOML", "")),
        (
            lambda t: t.replace('master_socket = "', 'masters_socket = "'),
            ("unknown key `targets.edge.masters_socket`", ":11"),
        ),
    ],
)
def test_bad_lbctl_toml_names_key_file_and_line(
    store: Path, lab: Lab, lbctl: LbctlRunner, edit: object, expected: tuple[str, str]
) -> None:
    toml = store / "lbctl.toml"
    toml.write_text(edit(target_toml(lab)))  # type: ignore[operator]
    result = lbctl("status", "--offline")
    assert result.code == 2, result.err
    message, line = expected
    assert message in result.err and f"{toml}{line}" in result.err
    assert "Traceback" not in result.err


def test_unknown_target_suggests_the_close_one(store: Path, lbctl: LbctlRunner) -> None:
    result = lbctl("deploy", "egde", "--yes")
    assert result.code == 2 and "unknown target 'egde'" in result.err and "did you mean 'edge'" in result.err


def test_not_a_git_repo(tmp_path: Path, lbctl: LbctlRunner, lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain"
    (plain / "configs/edge").mkdir(parents=True)
    (plain / "configs/edge/haproxy.cfg").write_text(lab.config())
    (plain / "lbctl.toml").write_text(target_toml(lab))
    monkeypatch.chdir(plain)
    result = lbctl("status", "--offline")
    assert result.code == 2 and "not a git repository" in result.err


def test_no_store_at_all(tmp_path: Path, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = lbctl("log")
    assert result.code == 2 and "no lbctl store" in result.err and "lbctl init" in result.err


def test_dirty_store_refuses(store: Path, lab: Lab, lbctl: LbctlRunner) -> None:
    (store / "lbctl.toml").write_text((store / "lbctl.toml").read_text() + "\n# local edit\n")
    result = lbctl("deploy", "edge", "--yes")
    assert result.code == 2 and "uncommitted changes: lbctl.toml" in result.err


def test_missing_git_identity_refuses(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path, isolated_env: Path
) -> None:
    (isolated_env / ".gitconfig").write_text("")
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 5, "web2": 100, "web3": 100}))
    live_before = lab.live_text()
    result = lbctl("deploy", "edge", "--file", str(new), "--yes")
    assert result.code == 2 and "git has no identity" in result.err and "user.email" in result.err
    assert lab.live_text() == live_before


def test_init_makes_a_commented_store_and_refuses_twice(tmp_path: Path, lbctl: LbctlRunner) -> None:
    root = tmp_path / "new-store"
    assert lbctl("init", str(root)).code == 0
    text = (root / "lbctl.toml").read_text()
    assert text.count("#") > 10 and "[defaults]" in text
    assert (root / "configs/edge/haproxy.cfg").is_file()
    assert "lbctl init" in git(root, "log", "--format=%s")
    assert git(root, "status", "--porcelain") == ""
    again = lbctl("init", str(root))
    assert again.code == 2 and "already" in again.err


def test_internal_errors_are_exit_70_with_debug_traceback(
    store: Path, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lbctl.commands import log as history

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(history, "log", broken)
    plain = lbctl("log")
    assert plain.code == 70 and "internal error" in plain.err and "Traceback" not in plain.err
    debug = lbctl("log", "--debug")
    assert debug.code == 70 and "Traceback" in debug.err


def test_the_commented_groups_block_is_valid_as_written(tmp_path: Path) -> None:
    from lbctl.config.groups import member_names
    from lbctl.config.loader import load
    from lbctl.templates import LBCTL_TOML

    lines = LBCTL_TOML.splitlines()
    start = lines.index("# [groups.edge]")
    block = [line.removeprefix("# ") for line in lines[start:] if line.startswith("# ")]
    (tmp_path / "lbctl.toml").write_text(
        '[targets.edge1]\nkind = "haproxy"\ntransport = "local"\nsource = "edge1.cfg"\npath = "/x.cfg"\n'
        'master_socket = "/x.sock"\n\n' + "\n".join(block) + "\n"
    )
    config = load(tmp_path / "lbctl.toml", require_sources=False)
    rollout = config.groups["edge"].rollout
    assert member_names(config, "edge") == ["edge1"]
    assert (rollout.canary, rollout.canary_bake, rollout.batches) == (1, 30.0, ["25%", "100%"])
    assert (rollout.on_failure, rollout.confirm_within) == ("rollback", 300.0)
