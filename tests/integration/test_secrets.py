"""Secrets stay masked through a real HAProxy: deploy and check output, `log`, `status`, `diff`
between revisions, and every object of the journal (which is pushed with the store)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lbctl.lab.processes import free_port
from tests.conftest import Lab, LbctlRunner, git, write
from tests.semantic.secret_configs import HAPROXY_SECRETS, SECRET, fill, leaked

# Four sets of secrets, none a prefix of another: two deploys, a check, a rejected deploy.
ROUNDS = st.lists(SECRET, min_size=8, max_size=8, unique_by=lambda s: s[:12]).map(
    lambda s: [s[0:2], s[2:4], s[4:6], s[6:8]]
)


def journal_objects(store: Path) -> str:
    """Every object reachable from the journal ref, as git prints it."""
    listed = git(store, "rev-list", "--objects", "refs/lbctl/journal").split()
    ids = "\n".join(word for word in listed if len(word) == 40)
    done = subprocess.run(
        ["git", "-C", str(store), "cat-file", "--batch"], input=ids.encode() + b"\n", capture_output=True, check=True
    )
    return done.stdout.decode("utf-8", "replace")  # tree entries hold binary ids


# Each example deploys to a real HAProxy: few examples, and no shrinking (the failing secrets are printed).
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.generate])
@given(rounds=ROUNDS)
def test_secrets_never_reach_output_or_the_journal(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path, rounds: list[list[str]]
) -> None:
    first, second, checked, rejected = rounds
    everything = [s for r in rounds for s in r]
    port = free_port()
    outputs: list[str] = []

    def run(*args: str, code: int = 0) -> str:
        result = lbctl(*args)
        assert result.code == code, result.out + result.err
        outputs.append(result.out + result.err)
        return result.out

    v1 = write(tmp_path / "v1.cfg", lab.config() + fill(HAPROXY_SECRETS, first, port=port))
    v2 = write(tmp_path / "v2.cfg", lab.config() + fill(HAPROXY_SECRETS, second, port=port))
    run("deploy", "edge", "--file", str(v1), "-m", "secrets v1", "--yes")
    deployed = json.loads(run("deploy", "edge", "--file", str(v2), "-m", "secrets v2", "--yes", "--json"))
    assert deployed["verdict"] == "good"
    assert lab.live_text() == v2.read_text()  # the LB itself gets the real config

    v3 = write(tmp_path / "v3.cfg", lab.config() + fill(HAPROXY_SECRETS, checked, port=port))
    report = json.loads(run("check", "edge", "--file", str(v3), "--json"))
    assert report["ok"] is True

    # A candidate HAProxy rejects, with a secret it would quote out of its place.
    bad_text = lab.config() + fill(HAPROXY_SECRETS, rejected, port=port)
    bad_text += f'    http-request set-header X-Api-Key "%[{rejected[0]}9]"\n'
    bad = write(tmp_path / "bad.cfg", bad_text)
    run("check", "edge", "--file", str(bad), "--json", code=3)
    run("check", "edge", "--file", str(bad), code=3)
    run("deploy", "edge", "--file", str(bad), "--yes", code=3)
    assert lab.live_text() == v2.read_text()

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
