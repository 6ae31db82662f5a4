"""`lbctl drill SCENARIO --sandbox | --target T`: rehearse a load-balancer failure.

With `--sandbox`, like the demo, everything runs in a temp dir: three backends and a one-server
legacy pool, a HAProxy master-worker, a fresh store with target `sandbox` and a good config
deployed. With `--target`, the change is derived from that target's current config
(`lbctl.commands.drill_target`). Either way `rehearse` commits the scenario's change with an
`Lbctl-Drill` trailer (so `last-good` never picks it) and deploys it with the target's checks
left out for that one change (so lbctl's automatic rollback does not undo it for the trainee)
and with the commit-confirm watchdog armed at `--max-duration`: that watchdog, on the LB host,
is the kill switch. The trainee finds and undoes the change with the runbook's commands; at
the deadline the LB reverts it by itself. The drill ends with the report of `lbctl timeline`
for it, time to detect and to restore against the goals given.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lbctl.errors import LbctlError, UsageError
from lbctl.lab.processes import Backends, Haproxy, free_port, haproxy_config, haproxy_target_toml, temp_dir

if TYPE_CHECKING:
    from lbctl.store.workspace import Workspace

TARGET = "sandbox"
ENDINGS = {
    "trainee": "the trainee (the change was undone with lbctl)",
    "kill-switch": "the kill switch (nobody undid the change: it was reverted at --max-duration)",
    "lbctl": "lbctl itself (the change never stayed live)",
}
WATCHDOG_GRACE = 20.0  # after the deadline: the watchdog's revert and its bounded wait for new workers (10 s)
SOURCE = "configs/sandbox/haproxy.cfg"
SCENARIOS = {
    "misroute": "the default route goes to the one-server legacy pool (the seed's outage)",
    "drain-half": "half of web's servers at weight 0",
    "bad-acl": "a catch-all rule sends every request to a pool with no server up",
    "reload-fail": "a config that validates but that the LB cannot load (its port is taken)",
}
LEGACY = """
backend legacy
    server old1 127.0.0.1:{legacy_port} check inter 1s

backend maintenance
    server sorry 127.0.0.1:{dead_port} check inter 1s
"""


@dataclass(frozen=True)
class DrillReport:
    scenario: str
    store: Path
    drill_rev: str | None
    live_rev: str | None  # what the target runs when the drill ends
    ended_by: str  # trainee | kill-switch | lbctl (the change never stayed live)
    timeline_markdown: str
    time_to_detect: float | None
    time_to_restore: float | None
    detect_goal: float
    restore_goal: float

    def verdict(self, figure: float | None, goal: float) -> str:
        if figure is None:
            return "not reached"
        return "met" if figure <= goal else "missed"

    def to_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "store": str(self.store),
            "drill_rev": self.drill_rev,
            "live_rev": self.live_rev,
            "ended_by": self.ended_by,
            "time_to_detect": self.time_to_detect,
            "time_to_restore": self.time_to_restore,
            "detect_goal": self.detect_goal,
            "restore_goal": self.restore_goal,
            "detect": self.verdict(self.time_to_detect, self.detect_goal),
            "restore": self.verdict(self.time_to_restore, self.restore_goal),
        }


def run_drill(
    scenario: str,
    *,
    max_duration: float,
    detect_goal: float = 300.0,
    restore_goal: float = 900.0,
    keep: bool = False,
    poll: float = 0.5,
    on_ready: Callable[[Path, str], None] | None = None,
    say: Callable[[str], None] = print,
) -> DrillReport:
    """Run one drill in a sandbox; `on_ready(store, target)` is called once the change is live."""
    if scenario not in SCENARIOS:
        raise UsageError(f"unknown drill scenario {scenario!r}", hint=", ".join(SCENARIOS))
    if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
        raise UsageError("a sandbox drill needs HAProxy", hint="apt-get install haproxy")
    _identity()
    with temp_dir("lbctl-drill-", keep=keep) as tmp:
        backends = Backends.start(["web1", "web2", "web3", "web4"])
        legacy = Backends.start(["old1"])
        taken = socket.socket()  # a port the reload-fail scenario binds, held here
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        haproxy: Haproxy | None = None
        try:
            lb = tmp / "lb"
            fe_port, dead_port = free_port(), free_port()

            def cfg(route_to: str = "web", weights: dict[str, int] | None = None, extra: str = "") -> str:
                text = haproxy_config(
                    frontend_port=fe_port,
                    backends=backends.ports,
                    stats_socket=lb / "admin.sock",
                    extra_backends=LEGACY.format(legacy_port=legacy.ports["old1"], dead_port=dead_port),
                    route_to=route_to,
                    weights=weights,
                )
                return text.replace(f"    default_backend {route_to}\n", f"{extra}    default_backend {route_to}\n")

            haproxy = Haproxy.start(lb, cfg())
            store = _store(tmp / "store", haproxy, fe_port)
            changed = {
                "misroute": lambda: cfg(route_to="legacy"),
                "drain-half": lambda: cfg(weights={"web1": 0, "web2": 0}),
                "bad-acl": lambda: cfg(extra="    use_backend maintenance if TRUE\n"),
                "reload-fail": lambda: cfg(extra=f"    bind 127.0.0.1:{taken.getsockname()[1]}\n"),
            }[scenario]()
            from lbctl.store.workspace import open_workspace

            return rehearse(
                open_workspace(str(store)),
                TARGET,
                scenario,
                changed,
                what=SCENARIOS[scenario],
                max_duration=max_duration,
                detect_goal=detect_goal,
                restore_goal=restore_goal,
                poll=poll,
                on_ready=on_ready,
                say=say,
            )
        finally:
            if haproxy is not None:
                haproxy.stop()
            backends.stop()
            legacy.stop()
            taken.close()


def _identity() -> None:
    import subprocess

    has = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True).stdout.strip()
    if not has and not os.environ.get("GIT_AUTHOR_NAME"):
        os.environ.update(
            GIT_AUTHOR_NAME="lbctl drill",
            GIT_AUTHOR_EMAIL="drill@lbctl.invalid",
            GIT_COMMITTER_NAME="lbctl drill",
            GIT_COMMITTER_EMAIL="drill@lbctl.invalid",
        )


def _store(root: Path, haproxy: Haproxy, fe_port: int) -> Path:
    """A fresh store whose target runs its adopted config, verified good (last-good exists)."""
    import subprocess

    from lbctl.cli import main
    from lbctl.store.repo import init_store

    init_store(root)
    defaults = "[defaults]\nverify_seconds = 1\ncheck_interval = 0.25\nretries = 2\n\n"
    url = f"http://127.0.0.1:{fe_port}/"
    (root / "lbctl.toml").write_text(defaults + haproxy_target_toml(TARGET, haproxy, url, source=SOURCE, probes=2))
    (root / SOURCE).parent.mkdir(parents=True, exist_ok=True)
    (root / SOURCE).write_bytes(haproxy.config.read_bytes())
    subprocess.run(["git", "-C", str(root), "add", "lbctl.toml", SOURCE], check=True)
    subprocess.run(["git", "-C", str(root), "commit", "-q", "-m", "Add the drill's sandbox target"], check=True)
    # The good config goes through lbctl once, so the target has a last-good to go back to.
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the drill's report alone (one JSON document)
        code = main(["deploy", TARGET, "--yes", "-q", "--force", "--reason", "first deploy", "--store", str(root)])
    if code != 0:
        raise UsageError(f"the sandbox's first deploy failed (exit {code})", hint="run with --keep and look at it")
    return root


def rehearse(
    ws: Workspace,
    name: str,
    scenario: str,
    changed: str,
    *,
    what: str,
    max_duration: float,
    detect_goal: float,
    restore_goal: float,
    poll: float,
    on_ready: Callable[[Path, str], None] | None,
    say: Callable[[str], None],
    trailers: dict[str, str] | None = None,
) -> DrillReport:
    """Commit and deploy the drill's change to `name`, wait for the trainee or the kill switch, report.

    The change goes live with the automatic rollback off (the target's checks left out for this
    one deploy) and the commit-confirm watchdog armed at `max_duration`: unconfirmed, the LB puts
    the previous config back by itself, even if this process and the trainee are both gone.
    """
    from lbctl.commands import deploy as operations
    from lbctl.commands import timeline

    target = ws.target(name)
    started = timeline.note(
        ws, f"drill {scenario} started; kill switch (the LB's watchdog) in {max_duration:g}s", target=name
    )
    begun = datetime.fromisoformat(started.started)  # the report's window opens with this note, as recorded
    quiet = replace(ws.config, targets={**ws.config.targets, name: replace(target, checks=[])})
    forced = (trailers or {}).get("Lbctl-Forced")
    with tempfile.TemporaryDirectory(prefix="lbctl-drill-") as tmp:
        # Deployed as a file: its commit lands on the branch only once the LB took it, so a drill
        # refused or unreachable leaves no broken config at the store's HEAD.
        changed_file = Path(tmp) / Path(target.source).name
        changed_file.write_text(changed)
        try:
            outcome = operations.deploy(
                replace(ws, config=quiet),
                name,
                file=changed_file,
                message=f"Drill: {scenario}",
                trailers={"Lbctl-Drill": scenario, "Lbctl-Reason": what, **(trailers or {})},
                force=True,
                reason=f"drill {scenario}" + (f": {forced}" if forced else ""),
                confirm_within=max_duration,
                confirm=lambda plan: True,
                report=lambda stage, message: None,
            )
        except LbctlError as exc:
            timeline.note(ws, f"drill {scenario} not run: {exc.message}", target=name)
            raise
    drill_rev = outcome.to_rev
    say(f"lbctl drill: {scenario} ({what}): {outcome.verdict}")
    ended_by = "lbctl"
    if drill_rev and ws.journal.state(name).live == drill_rev:
        where = ws.store.root
        say(
            f"lbctl drill: the change is live on {name}. In another shell:\n  export LBCTL_STORE={where}\n"
            f"  lbctl status {name}; lbctl diff {name} last-good live; lbctl rollback {name} --to last-good\n"
            f"  (unless undone, the LB's watchdog puts the previous config back in {max_duration:g}s)"
        )
        if on_ready is not None:
            on_ready(where, name)
        ended_by = _wait(ws, name, drill_rev, max_duration=max_duration, poll=poll, say=say)
    timeline.note(ws, f"drill {scenario} ended ({ended_by})", target=name)
    report = timeline.build(ws, [name], since=begun, until=None)
    found = next((i for i in report.incidents if i.revision == drill_rev), None)
    return DrillReport(
        scenario=scenario,
        store=ws.store.root,
        drill_rev=drill_rev,
        live_rev=ws.journal.state(name).live,
        ended_by=ended_by,
        timeline_markdown=timeline.markdown(report),
        # Undone by the kill switch: the trainee detected and restored nothing.
        time_to_detect=found.detect if found and ended_by == "trainee" else None,
        time_to_restore=found.restore if found and ended_by == "trainee" else None,
        detect_goal=detect_goal,
        restore_goal=restore_goal,
    )


def _wait(
    ws: Workspace, name: str, drill_rev: str, *, max_duration: float, poll: float, say: Callable[[str], None]
) -> str:
    """Until the trainee undoes the drill (`trainee`) or the watchdog does at its deadline (`kill-switch`)."""
    from lbctl.engine.watchdogs import settle
    from lbctl.transports import transport_for

    target = ws.target(name)
    deadline = time.monotonic() + max_duration
    while time.monotonic() < deadline:
        if ws.journal.state(name).live != drill_rev:
            break
        time.sleep(poll)
    # At the deadline the watchdog reverts on the LB host; its result is recorded by whoever reaches
    # the LB next: this process, here (a trainee's command may have done it already).
    settle_until = time.monotonic() + WATCHDOG_GRACE
    if ws.journal.state(name).live == drill_rev:
        with transport_for(target) as transport:
            while time.monotonic() < settle_until:
                settle(ws, target, transport)
                if ws.journal.state(name).live != drill_rev:
                    break
                time.sleep(poll)
    # A trainee's rollback disarmed the drill's watchdog as it landed (`lbctl.engine.watchdogs.supersede`).
    undone_by = _undone_by(ws, name, drill_rev)
    if undone_by is None:
        # No watchdog revert (confirmed by someone, or its reload failed): lbctl's own timer is the last resort.
        from lbctl.commands import deploy as operations

        say("lbctl drill: the watchdog did not revert the drill: rolling back to last-good")
        operations.rollback(
            ws,
            name,
            to="last-good",
            message=f"drill on {name}: kill switch at max duration",
            confirm=lambda plan: True,
            report=lambda stage, message: None,
        )
        return "kill-switch"
    return undone_by


def _undone_by(ws: Workspace, name: str, drill_rev: str) -> str | None:
    """Who took the drill's change off the target: `trainee`, `kill-switch` (the watchdog), or None."""
    if ws.journal.state(name).live == drill_rev:
        return None
    for n, event in enumerate(ws.journal.events(name)):
        if n > 100:
            break
        if event.op == "watchdog" and event.verdict == "watchdog-reverted" and event.from_rev == drill_rev:
            return "kill-switch"
        if event.op in ("rollback", "deploy") and event.from_rev == drill_rev and event.to_rev != drill_rev:
            return "trainee"
    return "trainee"


def summary(report: DrillReport) -> str:
    from lbctl.commands.timeline import _span

    lines = [
        f"## Drill: {report.scenario}",
        "",
        f"Ended by: {ENDINGS.get(report.ended_by, report.ended_by)}.",
        f"- time to detect: {_span(report.time_to_detect)} (goal {_span(report.detect_goal)}: "
        f"{report.verdict(report.time_to_detect, report.detect_goal)})",
        f"- time to restore: {_span(report.time_to_restore)} (goal {_span(report.restore_goal)}: "
        f"{report.verdict(report.time_to_restore, report.restore_goal)})",
        "",
    ]
    return "\n".join(lines) + "\n" + report.timeline_markdown
