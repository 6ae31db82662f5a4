"""Safety gates on real HAProxy: policy, blast radius, staging first, reviewed plans, drift."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config, haproxy_target_toml
from tests.conftest import Lab, LbctlRunner, git, target_toml, write


def plain(lab: Lab, **kw: object) -> str:
    """The lab's config with only backend `web` (three servers with checks)."""
    return haproxy_config(
        frontend_port=lab.fe_port,
        backends=lab.backends.ports,
        stats_socket=lab.haproxy.stats_socket,
        **kw,  # type: ignore[arg-type]
    )


def set_toml(store: Path, text: str) -> None:
    (store / "lbctl.toml").write_text(text)
    git(store, "commit", "-qam", "rules")


def adopt(store: Path, lab: Lab, lbctl: LbctlRunner) -> None:
    """Make the lab's plain config the live, verified revision."""
    (store / "configs/edge/haproxy.cfg").write_text(plain(lab))
    git(store, "commit", "-qam", "plain config")
    result = lbctl("deploy", "edge", "--yes")
    assert result.code == 0, result.err


@pytest.mark.parametrize(
    ("rules", "bad", "good", "rule"),
    [
        ("max_share = 0.6", {"weights": {"web1": 100, "web2": 10, "web3": 10}}, {}, "max_share"),
        ("min_active_servers = 3", {"weights": {"web1": 100, "web2": 100, "web3": 0}}, {}, "min_active_servers"),
        ("require_health_checks = true", {"server_options": "no-check"}, {}, "require_health_checks"),
        (
            'forbid_directives = ["option forwardfor"]',
            {"extra_backends": "\nbackend api\n    option forwardfor\n    server a1 127.0.0.1:1 check\n"},
            {},
            "forbid_directives",
        ),
    ],
)
def test_each_policy_rule(
    store: Path,
    lab: Lab,
    lbctl: LbctlRunner,
    tmp_path: Path,
    rules: str,
    bad: dict,
    good: dict,
    rule: str,  # type: ignore[type-arg]
) -> None:
    set_toml(store, target_toml(lab) + f"\n[policy]\n{rules}\n")
    failing = lbctl("check", "edge", "--file", str(write(tmp_path / "bad.cfg", plain(lab, **bad))), "--json")
    assert failing.code == 3, failing.out
    findings = json.loads(failing.out)["findings"]
    assert any(f.startswith(f"{rule}:") and "[backend " in f for f in findings), findings
    passing = lbctl("check", "edge", "--file", str(write(tmp_path / "good.cfg", plain(lab, **good))), "--json")
    assert passing.code == 0, passing.out
    # the same rule refuses a deploy, before anything is pushed or committed
    head = git(store, "rev-parse", "HEAD")
    deploy = lbctl("deploy", "edge", "--file", str(tmp_path / "bad.cfg"), "--yes")
    assert deploy.code == 3 and f"{rule}:" in deploy.err
    assert git(store, "rev-parse", "HEAD") == head and lab.live_text() != (tmp_path / "bad.cfg").read_text()


def test_route_to_an_empty_backend_is_refused(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.cfg", plain(lab, route_to="void", extra_backends="\nbackend void\n    mode http\n"))
    result = lbctl("check", "edge", "--file", str(empty))
    assert result.code == 3 and "routes:" in result.out and "void" in result.out


def test_blast_radius_at_and_over_the_limit(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    set_toml(store, target_toml(lab) + "\n[safety]\nmax_traffic_moved = 0.2\n")
    adopt(store, lab, lbctl)
    at_limit = write(tmp_path / "at.cfg", plain(lab, weights={"web1": 100, "web2": 100, "web3": 200}))  # 17 % moves
    result = lbctl("deploy", "edge", "--file", str(at_limit), "--yes")
    assert result.code == 0, result.err
    # from 100/100/200 (25/25/50 %) to 255/50/200 (50/10/40 %): ~26 % of the traffic moves
    over = write(tmp_path / "over.cfg", plain(lab, weights={"web1": 255, "web2": 50, "web3": 200}))
    head = git(store, "rev-parse", "HEAD")
    result = lbctl("deploy", "edge", "--file", str(over), "--yes")
    assert result.code == 4, result.err
    assert "max_traffic_moved" in result.err and "threshold 20%" in result.err
    assert git(store, "rev-parse", "HEAD") == head and "weight 50" not in lab.live_text()
    forced = lbctl("deploy", "edge", "--file", str(over), "--yes", "--force", "--reason", "planned shift")
    assert forced.code == 0, forced.err
    event = json.loads(lbctl("log", "edge", "--json", "-n", "1").out)["events"][0]
    assert "forced over: max_traffic_moved (planned shift)" in event["message"]
    assert "Lbctl-Forced: forced over: max_traffic_moved" in git(store, "log", "-1", "--format=%B")


def test_removing_servers_beyond_the_default_threshold(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    adopt(store, lab, lbctl)
    one = write(tmp_path / "one.cfg", plain(lab, weights={"web1": 100, "web2": 100, "web3": 0}))
    check_one = lbctl("check", "edge", "--file", str(one), "--json")
    assert check_one.code == 0, check_one.out  # 1 of 3 (33 %) is within the default 34 %
    two = write(tmp_path / "two.cfg", plain(lab, weights={"web1": 100, "web2": 0, "web3": 0}))
    result = lbctl("deploy", "edge", "--file", str(two), "--yes")
    assert result.code == 4
    assert "max_servers_removed: 2 of 3 serving servers (67%)" in result.err and "threshold 34%" in result.err


@pytest.fixture
def two_envs(
    tmp_path: Path, backends: Backends, lbctl: LbctlRunner, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, dict[str, Haproxy], dict[str, int]]]:
    """Targets stg (staging) and prod (production) on two real HAProxy processes."""
    ports = {"stg": free_port(), "prod": free_port()}
    lbs: dict[str, Haproxy] = {}
    try:
        for env, port in ports.items():
            lbs[env] = Haproxy.start(
                tmp_path / env,
                haproxy_config(frontend_port=port, backends=backends.ports, stats_socket=tmp_path / env / "admin.sock"),
            )
        store = tmp_path / "store"
        assert lbctl("init", str(store)).code == 0
        toml = "[defaults]\nverify_seconds = 0.5\ncheck_interval = 0.25\n"
        for env, lb in lbs.items():
            environment = "staging" if env == "stg" else "production"
            toml += "\n" + haproxy_target_toml(
                env,
                lb,
                f"http://127.0.0.1:{ports[env]}/",
                source=f"configs/{env}.cfg",
                extra=f'environment = "{environment}"',
            )
            (store / "configs" / f"{env}.cfg").write_text(lb.config.read_text())
        (store / "lbctl.toml").write_text(toml)
        git(store, "add", "-A")
        git(store, "commit", "-qm", "two environments")
        monkeypatch.chdir(store)
        yield store, lbs, ports
    finally:
        for lb in lbs.values():
            lb.stop()


def test_production_takes_only_what_staging_verified(
    two_envs: tuple[Path, dict[str, Haproxy], dict[str, int]], backends: Backends, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    store, lbs, ports = two_envs
    for env in ("stg", "prod"):  # one commit changes both environments' files
        text = haproxy_config(
            frontend_port=ports[env],
            backends=backends.ports,
            stats_socket=tmp_path / env / "admin.sock",
            weights={"web1": 100, "web2": 100, "web3": 50},
        )
        (store / "configs" / f"{env}.cfg").write_text(text)
    git(store, "commit", "-qam", "web3 at half weight, everywhere")
    head = git(store, "rev-parse", "HEAD")

    refused = lbctl("deploy", "prod", "--yes")
    assert refused.code == 4 and "staging_first" in refused.err and "deploy it to stg first" in refused.err
    assert "weight 50" not in lbs["prod"].config.read_text()

    assert lbctl("deploy", "stg", "--yes").code == 0
    accepted = lbctl("deploy", "prod", "--yes")
    assert accepted.code == 0, accepted.err
    assert "weight 50" in lbs["prod"].config.read_text() and git(store, "rev-parse", "HEAD") == head

    # a new file for production alone was never on staging: refused, and no commit is left behind
    hotfix = write(tmp_path / "hotfix.cfg", lbs["prod"].config.read_text().replace("weight 50", "weight 60"))
    assert lbctl("deploy", "prod", "--file", str(hotfix), "--yes").code == 4
    assert git(store, "rev-parse", "HEAD") == head
    no_reason = lbctl("deploy", "prod", "--file", str(hotfix), "--yes", "--force")
    assert no_reason.code == 2 and "--reason" in no_reason.err
    forced = lbctl("deploy", "prod", "--file", str(hotfix), "--yes", "--force", "--reason", "INC-9 hotfix")
    assert forced.code == 0, forced.err
    event = json.loads(lbctl("log", "prod", "--json", "-n", "1").out)["events"][0]
    assert "staging_first" in event["message"] and "INC-9 hotfix" in event["message"]


def test_reviewed_plan_checksum(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    adopt(store, lab, lbctl)
    new = write(tmp_path / "new.cfg", plain(lab, weights={"web1": 100, "web2": 100, "web3": 70}))
    review = lbctl("deploy", "edge", "--file", str(new), "--dry-run", "--json")
    checksum = json.loads(review.out)["plan"]["checksum"]
    assert review.code == 0 and len(checksum) == 16
    again = json.loads(lbctl("deploy", "edge", "--file", str(new), "--dry-run", "--json").out)["plan"]["checksum"]
    assert again == checksum  # the same plan, the same checksum
    # the live config changes between review and apply: the reviewed plan no longer holds
    lab.haproxy.config.write_text(lab.live_text().replace("weight 100", "weight 90", 1))
    stale = lbctl("deploy", "edge", "--file", str(new), "--yes", "--checksum", checksum)
    assert stale.code == 4 and "the plan changed since it was reviewed" in stale.err
    lab.haproxy.config.write_text(plain(lab))  # put it back: the plan is the reviewed one again
    ok = lbctl("deploy", "edge", "--file", str(new), "--yes", "--checksum", checksum)
    assert ok.code == 0, ok.err


def test_drift_refuses_until_pulled_or_forced(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    adopt(store, lab, lbctl)
    lab.haproxy.config.write_text(
        lab.live_text()
        .replace("server web2 127.0.0.1", "server web2 127.0.0.1", 1)
        .replace("weight 100", "weight 77", 1)
    )  # a hand edit on the LB
    assert json.loads(lbctl("status", "edge", "--json").out)["targets"][0]["drift"] == "drifted"
    new = write(tmp_path / "new.cfg", plain(lab, weights={"web1": 100, "web2": 100, "web3": 90}))
    refused = lbctl("deploy", "edge", "--file", str(new), "--yes")
    assert refused.code == 4 and "drift:" in refused.err and "weight 100 → 77" in refused.err
    assert "weight 77" in lab.live_text()
    rollback = lbctl("rollback", "edge", "--to", "previous", "--yes")
    assert rollback.code in (2, 4)  # nothing earlier to go to, or refused for drift: never overwrites silently
    pulled = lbctl("pull", "edge", "--json")
    assert pulled.code == 0 and json.loads(pulled.out)["committed"] is True
    assert "Lbctl-Source: pull" in git(store, "log", "-1", "--format=%B")
    assert (store / "configs/edge/haproxy.cfg").read_text() == lab.live_text()
    status = json.loads(lbctl("status", "edge", "--json").out)["targets"][0]
    assert status["drift"] == "none" and status["status"] == "unverified"
    assert lbctl("deploy", "edge", "--file", str(new), "--yes").code == 0
    lab.haproxy.config.write_text(lab.live_text().replace("weight 90", "weight 91"))
    assert lbctl("deploy", "edge", "--file", str(new), "--yes").code == 4
    assert lbctl("deploy", "edge", "--file", str(new), "--yes", "--force").code == 0
