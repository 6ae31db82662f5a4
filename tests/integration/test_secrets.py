"""Secrets stay masked through a real HAProxy: deploy and check output, `log`, `status`, `diff`
between revisions, and every object of the journal (which is pushed with the store).

`secrets_stay_masked` is the scenario; tests/kinds/test_secrets_kinds.py runs it on nginx and Caddy.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lbctl.lab.processes import free_port
from tests.conftest import Lab, LbctlRunner, git, write
from tests.semantic.secret_configs import HAPROXY_SECRETS, SECRET, fill, leaked

# Four sets of secrets, none a prefix of another: two deploys, a check, a rejected candidate.
ROUNDS = st.lists(SECRET, min_size=8, max_size=8, unique_by=lambda s: s[:12]).map(
    lambda s: [s[0:2], s[2:4], s[4:6], s[6:8]]
)
# Each example deploys to a real LB: few examples, and no shrinking (the failing secrets are printed).
REAL = settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.generate])

Config = Callable[[list[str], bool], str]  # (secrets, rejected by the LB's validator?) -> config text


def journal_objects(store: Path) -> str:
    """Every object reachable from the journal ref, as git prints it."""
    listed = git(store, "rev-list", "--objects", "refs/lbctl/journal").split()
    ids = "\n".join(word for word in listed if len(word) == 40)
    done = subprocess.run(
        ["git", "-C", str(store), "cat-file", "--batch"], input=ids.encode() + b"\n", capture_output=True, check=True
    )
    return done.stdout.decode("utf-8", "replace")  # tree entries hold binary ids


def secrets_stay_masked(
    lbctl: LbctlRunner, store: Path, tmp_path: Path, config: Config, rounds: list[list[str]], live: Callable[[], str]
) -> None:
    """Deploy two configs with different secrets, check a third, have a fourth rejected: no output,
    and no object of the journal, shows any of them."""
    first, second, checked, rejected = rounds
    everything = [s for r in rounds for s in r]
    outputs: list[str] = []

    def run(*args: str, code: int = 0) -> str:
        result = lbctl(*args)
        assert result.code == code, result.out + result.err
        outputs.append(result.out + result.err)
        return result.out

    v1 = write(tmp_path / "v1.cfg", config(first, False))
    v2 = write(tmp_path / "v2.cfg", config(second, False))
    run("deploy", "edge", "--file", str(v1), "-m", "secrets v1", "--yes")
    deployed = json.loads(run("deploy", "edge", "--file", str(v2), "-m", "secrets v2", "--yes", "--json"))
    assert deployed["verdict"] == "good"
    running = live()
    assert all(f"{s}" in running for s in second)  # the LB itself runs the real config

    v3 = write(tmp_path / "v3.cfg", config(checked, False))
    assert json.loads(run("check", "edge", "--file", str(v3), "--json"))["ok"] is True
    bad = write(tmp_path / "bad.cfg", config(rejected, True))
    run("check", "edge", "--file", str(bad), "--json", code=3)
    run("check", "edge", "--file", str(bad), code=3)
    run("deploy", "edge", "--file", str(bad), "--yes", code=3)
    assert live() == running

    changes = run("diff", "edge", "HEAD~1", "HEAD")
    assert "secret changed" in changes, changes
    for fmt in ("json", "markdown", "unified"):
        run("diff", "edge", "HEAD~1", "HEAD", "--format", fmt)
    run("log", "edge")
    run("log", "edge", "--json")
    run("status", "edge", "--json")

    for text in outputs:
        assert not leaked(text, everything), text
    journal = journal_objects(store)
    assert "secret changed" in journal
    assert not leaked(journal, everything)


@REAL
@given(rounds=ROUNDS)
def test_secrets_never_reach_output_or_the_journal(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path, rounds: list[list[str]]
) -> None:
    port = free_port()

    def config(secrets: list[str], rejected: bool) -> str:
        text = lab.config() + fill(HAPROXY_SECRETS, secrets, port=port)
        if rejected:  # HAProxy would quote this sample expression alone in its error
            text += f'    http-request set-header X-Api-Key "%[{secrets[0]}9]"\n'
        return text

    secrets_stay_masked(lbctl, store, tmp_path, config, rounds, lab.live_text)
