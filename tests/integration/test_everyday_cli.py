"""The everyday CLI on a real store and a real HAProxy: adopt, diff the work tree, JSON on
failure, plan-style exit codes, shell-safe selectors, --version, completion, NO_COLOR, Ctrl-C."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lbctl.lab.processes import haproxy_target_toml
from tests.conftest import Lab, LbctlRunner, git, target_toml, write

LBCTL = [sys.executable, "-m", "lbctl"]
NEW_SOURCE = "configs/lb1/haproxy.cfg"  # not in the store until `lbctl pull` records it


def adoptable_store(tmp_path: Path, lab: Lab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A new store whose target `edge` points at the running HAProxy, its source not written yet."""
    root = tmp_path / "adopt"
    assert lbctl("init", str(root)).code == 0
    toml = "[defaults]\nverify_seconds = 1\ncheck_interval = 0.25\nretries = 2\n\n" + haproxy_target_toml(
        "edge", lab.haproxy, f"http://127.0.0.1:{lab.fe_port}/", source=NEW_SOURCE, probes=2
    )
    (root / "lbctl.toml").write_text(toml)
    git(root, "commit", "-qam", "Add target edge")
    monkeypatch.chdir(root)
    return root


def commits(store: Path) -> int:
    return int(git(store, "rev-list", "--count", "HEAD"))


# -- adopting a running LB ---------------------------------------------------------------


def test_pull_adopts_a_running_haproxy_in_one_commit(
    tmp_path: Path, lab: Lab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = adoptable_store(tmp_path, lab, lbctl, monkeypatch)
    # a second LB described at the same time, not adopted yet: it does not stop the first pull
    spare = haproxy_target_toml("spare", lab.haproxy, "http://127.0.0.1:1/", source="configs/spare/haproxy.cfg")
    with (store / "lbctl.toml").open("a") as toml:
        toml.write("\n" + spare.replace(str(lab.haproxy.config), str(tmp_path / "spare.cfg")))
    git(store, "commit", "-qam", "Add target spare")
    before = commits(store)

    result = lbctl("pull", "edge")

    assert result.code == 0, result.err
    assert "adopted edge" in result.out and NEW_SOURCE in result.out
    assert (store / NEW_SOURCE).read_text() == lab.live_text()
    assert commits(store) == before + 1
    assert "Lbctl-Source: pull" in git(store, "log", "-1", "--format=%B")
    assert git(store, "status", "--porcelain") == ""
    pulled = git(store, "rev-parse", "HEAD").strip()
    (store / "configs" / "spare").mkdir()
    (store / "configs" / "spare" / "haproxy.cfg").write_text("# spare\n")  # untracked: enough to load
    status = json.loads(lbctl("status", "edge", "--json").out)["targets"][0]
    assert status["live"] == pulled and status["drift"] == "none"
    # adopted: nothing differs between what runs and the store
    assert lbctl("diff", "edge", "--exit-code").code == 0
    (store / "configs" / "spare" / "haproxy.cfg").unlink()
    again = lbctl("pull", "edge", "--json")
    assert again.code == 0 and json.loads(again.out)["committed"] is False and commits(store) == before + 1
    # other commands still want every source, and say how to get the missing one
    missing = lbctl("status", "--offline")
    assert missing.code == 2 and "configs/spare/haproxy.cfg" in missing.err and "lbctl pull spare" in missing.err


# -- the working tree --------------------------------------------------------------------


def test_diff_and_check_see_an_uncommitted_edit(
    tmp_path: Path, lab: Lab, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = adoptable_store(tmp_path, lab, lbctl, monkeypatch)
    assert lbctl("pull", "edge").code == 0
    source = store / NEW_SOURCE
    source.write_text(lab.config(weights={"web1": 100, "web2": 100, "web3": 50}))

    edited = lbctl("diff", "edge", "--exit-code")
    assert edited.code == 1, edited.err
    assert "web3" in edited.out and "50" in edited.out
    assert "working tree" in edited.err
    as_json = json.loads(lbctl("diff", "edge", "--json").out)
    assert as_json["new"] == f"working tree:{NEW_SOURCE}" and as_json["changed"] is True and as_json["note"]

    # the committed side and the index stay available
    assert lbctl("diff", "edge", "live", "HEAD", "--exit-code").code == 0
    assert lbctl("diff", "edge", "--cached", "--exit-code").code == 0
    git(store, "add", NEW_SOURCE)
    staged = lbctl("diff", "edge", "--cached", "--json")
    assert json.loads(staged.out)["new"] == f"index:{NEW_SOURCE}" and json.loads(staged.out)["changed"] is True

    checked = json.loads(lbctl("check", "edge", "--json").out)
    assert checked["candidate"] == f"working tree:{NEW_SOURCE}" and "working tree" in checked["notes"][0]
    at_head = json.loads(lbctl("check", "edge", "--rev", "HEAD", "--json").out)
    assert at_head["candidate"].endswith(f":{NEW_SOURCE}") and not at_head["candidate"].startswith("working")


def test_another_targets_edit_does_not_block_a_rollback(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    other = store / "configs" / "other" / "haproxy.cfg"
    other.parent.mkdir(parents=True)
    other.write_text(lab.config())
    extra = haproxy_target_toml("other", lab.haproxy, "http://127.0.0.1:1/", source="configs/other/haproxy.cfg")
    (store / "lbctl.toml").write_text(target_toml(lab) + "\n" + extra.replace(str(lab.haproxy.config), "/tmp/x.cfg"))
    git(store, "add", "-A")
    git(store, "commit", "-qm", "Add target other")
    first = write(tmp_path / "first.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 100}))
    second = write(tmp_path / "second.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 60}))
    assert lbctl("deploy", "edge", "--file", str(first), "--yes").code == 0
    assert lbctl("deploy", "edge", "--file", str(second), "--yes").code == 0

    other.write_text(other.read_text() + "\n# an edit in progress on another target\n")
    result = lbctl("rollback", "edge", "--to", "previous", "--yes", "--ticket", "INC-9")

    assert result.code == 0, result.err
    assert lab.live_text() == first.read_text()
    assert "Lbctl-Ticket: INC-9" in git(store, "log", "-1", "--format=%B")
    assert "other/haproxy.cfg" in git(store, "status", "--porcelain")  # the edit is still there, untouched

    # an edit to the target's own file still stops it: lbctl would commit over it
    source = store / "configs" / "edge" / "haproxy.cfg"
    source.write_text(source.read_text() + "\n# mine\n")
    own = lbctl("rollback", "edge", "--to", "prev-1", "--yes")
    assert own.code == 2 and "uncommitted changes: configs/edge/haproxy.cfg" in own.err


# -- JSON on failure ---------------------------------------------------------------------


def error_of(result_out: str) -> dict:  # type: ignore[type-arg]
    document = json.loads(result_out)  # exactly one document on stdout
    return document["error"]  # type: ignore[no-any-return]


def test_json_on_every_failure(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    good = write(tmp_path / "good.cfg", lab.config())
    assert lbctl("deploy", "edge", "--file", str(good), "--yes").code == 0

    unknown = lbctl("deploy", "nope", "--yes", "--json")
    assert unknown.code == 2 and error_of(unknown.out)["code"] == 2
    assert "unknown target" in error_of(unknown.out)["message"] and error_of(unknown.out)["hint"]

    bad_flag = lbctl("status", "--json", "--no-such-flag")
    assert bad_flag.code == 2 and error_of(bad_flag.out)["type"] == "usage"

    invalid = write(tmp_path / "invalid.cfg", lab.config() + "\nbackend broken\n    server x 127.0.0.1:1 nonsense\n")
    failed = lbctl("deploy", "edge", "--file", str(invalid), "--yes", "--json")
    assert failed.code == 3 and error_of(failed.out)["code"] == 3 and error_of(failed.out)["message"]

    drain = write(tmp_path / "drain.cfg", lab.config(weights={"web1": 100, "web2": 0, "web3": 0}))
    refused = lbctl("deploy", "edge", "--file", str(drain), "--yes", "--json")
    assert refused.code == 4 and error_of(refused.out)["code"] == 4 and "hint" in error_of(refused.out)

    dry = lbctl("deploy", "edge", "--file", str(drain), "--dry-run", "--json")
    assert dry.code == 4 and json.loads(dry.out)["verdict"] == "refused" and error_of(dry.out)["code"] == 4

    checked = lbctl("check", "edge", "--file", str(invalid), "--json")
    assert checked.code == 3 and error_of(checked.out)["code"] == 3

    (store / "lbctl.toml").write_text((store / "lbctl.toml").read_text() + "\n# local edit\n")
    dirty = lbctl("deploy", "edge", "--yes", "--json")
    assert (
        dirty.code == 2 and error_of(dirty.out)["type"] == "store" and "uncommitted" in error_of(dirty.out)["message"]
    )

    ok = lbctl("log", "edge", "--json")
    assert ok.code == 0 and "error" not in json.loads(ok.out)


# -- plan-style exit codes ---------------------------------------------------------------


def test_dry_run_detailed_exitcode(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    same = write(tmp_path / "same.cfg", lab.live_text())
    assert lbctl("deploy", "edge", "--file", str(same), "--yes").code == 0

    assert lbctl("deploy", "edge", "--dry-run", "--detailed-exitcode").code == 0
    change = write(tmp_path / "change.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 80}))
    changed = lbctl("deploy", "edge", "--file", str(change), "--dry-run", "--detailed-exitcode")
    assert changed.code == 2, changed.err
    drain = write(tmp_path / "drain.cfg", lab.config(weights={"web1": 100, "web2": 0, "web3": 0}))
    assert lbctl("deploy", "edge", "--file", str(drain), "--dry-run", "--detailed-exitcode").code == 4
    assert lbctl("deploy", "edge", "--file", str(change), "--detailed-exitcode", "--yes").code == 2  # needs --dry-run
    assert lab.live_text() == same.read_text()  # a plan changes nothing
    assert lbctl("diff", "edge", "--exit-code").code == 0


# -- selectors ---------------------------------------------------------------------------


def test_prev_n_is_tilde_n(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    texts = [lab.config(weights={"web1": 100, "web2": 100, "web3": w}) for w in (100, 90, 80)]
    for i, text in enumerate(texts):
        assert lbctl("deploy", "edge", "--file", str(write(tmp_path / f"{i}.cfg", text)), "--yes").code == 0
    plan_tilde = json.loads(lbctl("rollback", "edge", "--to", "~2", "--dry-run", "--json").out)
    plan_prev = json.loads(lbctl("rollback", "edge", "--to", "prev-2", "--dry-run", "--json").out)
    assert plan_prev["plan"]["diff"] == plan_tilde["plan"]["diff"] != ""
    assert lbctl("rollback", "edge", "--to", "prev-2", "--yes").code == 0
    assert lab.live_text() == texts[0]
    far = lbctl("rollback", "edge", "--to", "prev-40", "--yes")
    assert far.code == 2 and "prev-40 goes too far back" in far.err


# -- start-up habits ---------------------------------------------------------------------


def test_version(lbctl: LbctlRunner) -> None:
    from importlib.metadata import version

    result = lbctl("--version")
    assert result.code == 0 and result.out.strip() == f"lbctl {version('lbctl')}"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")  # name the shell, as a user may
    result = lbctl("--show-completion", shell)
    assert result.code == 0 and "_LBCTL_COMPLETE" in result.out


def test_completion_completes(store: Path) -> None:
    env = {
        **os.environ,
        "_LBCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": "lbctl rollback edge --ti",
        "COMP_CWORD": "3",
    }
    done = subprocess.run(LBCTL, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.split() == ["--ticket"]
    env["COMP_WORDS"], env["COMP_CWORD"] = "lbctl roll", "1"
    done = subprocess.run(LBCTL, env=env, capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == ["rollback"]


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> bytes:
    """lbctl's output when its stdout is a terminal (a pty), as a person sees it."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*LBCTL, *args], stdout=follower, stderr=subprocess.DEVNULL, env=env)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=30)
    os.close(leader)
    return out


def test_no_color_turns_off_bold_too(store: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    styled = run_on_a_terminal(["status", "--offline"], env)
    assert b"\x1b[1m" in styled  # the target's name is bold on a terminal
    plain = run_on_a_terminal(["status", "--offline"], {**env, "NO_COLOR": "1"})
    assert b"edge" in plain and b"\x1b[" not in plain


# -- Ctrl-C ------------------------------------------------------------------------------


def test_ctrl_c_before_anything_changed_says_so(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lbctl.engine import execute as lifecycle

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the operator's Ctrl-C while the plan is being computed

    monkeypatch.setattr(lifecycle, "make_plan", interrupted)
    new = write(tmp_path / "new.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 70}))
    live, head = lab.live_text(), git(store, "rev-parse", "HEAD")

    result = lbctl("deploy", "edge", "--file", str(new), "--yes")

    assert result.code == 130
    assert "nothing changed" in result.err or "before anything changed" in result.err
    assert "KeyboardInterrupt" not in result.err and "plan failed" not in result.err
    assert lab.live_text() == live and git(store, "rev-parse", "HEAD") == head


# -- the starter store and the package ---------------------------------------------------


def test_init_toml_tells_the_truth(tmp_path: Path, lbctl: LbctlRunner) -> None:
    import re

    from lbctl import config
    from lbctl.config import BalanceCheck, StoreConfig

    assert lbctl("init", str(tmp_path / "s")).code == 0
    text = (tmp_path / "s" / "lbctl.toml").read_text()
    assert "coming" not in text
    for word in ("nginx", "caddy", "ssh", "http", "tcp", "command", "balance"):
        assert word in text
    # uncommented, the example is a valid config whose values are lbctl's defaults
    example = "\n".join(re.sub(r"^# (?=\[|[a-z_]+ += )", "", line) for line in text.splitlines())
    parsed = config.validate(tomllib.loads(example), text=example, path=tmp_path / "s" / "lbctl.toml")
    target = parsed.targets["edge1"]
    assert {c.type for c in target.checks} == {"http", "tcp", "command", "balance"}
    balance = next(c for c in target.checks if isinstance(c, BalanceCheck))
    assert balance.max_share == BalanceCheck(type="balance").max_share == 0.6
    defaults = StoreConfig().safety_for(target)
    assert parsed.safety == defaults
    assert "max_share = 0.6" in text and "max_servers_removed = 0.34" in text and "max_traffic_moved = 0.5" in text


def test_license_is_an_spdx_string() -> None:
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
