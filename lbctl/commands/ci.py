"""`lbctl ci plan|apply`: GitOps from a CI job.

`plan` judges every target whose files changed between a base and HEAD with the very functions
`lbctl deploy --dry-run` and `lbctl check` use (the lifecycle's plan and gates, the native
validator), and renders it as Markdown for the pull request. `apply` deploys exactly those
targets at HEAD through `operations.deploy`: a target already running its HEAD revision is
left alone (a re-run does nothing), and a revision the journal marks failed on a target is
never deployed to it again.

`apply` deploys with commit-confirm on (the target's `confirm_within`, else 5m): should the job
die between the reload and the verdict, the LB host reverts by itself. A change that verified
good is confirmed at once (`lbctl.commands.confirm.confirm`), so a successful job leaves nothing pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lbctl.errors import ExitCode, LbctlError
from lbctl.store.gitio import GitError

if TYPE_CHECKING:
    from lbctl.commands.check import CheckReport
    from lbctl.engine.execute import Outcome, Reporter
    from lbctl.store.workspace import Workspace


@dataclass(frozen=True)
class TargetPlan:
    target: str
    rev: str | None  # the target's revision at HEAD
    code: int  # what `deploy` would exit with (0: it would go ahead, or nothing to do)
    verdict: str  # dry-run | unchanged | refused | error | skipped-failed | ... (apply: the deploy's verdict)
    outcome: Outcome | None = None
    check: CheckReport | None = None
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "rev": self.rev,
            "exit_code": self.code,
            "verdict": self.verdict,
            "outcome": self.outcome.to_json() if self.outcome else None,
            "check": self.check.to_json() if self.check else None,
            "error": self.error,
        }


@dataclass(frozen=True)
class CiResult:
    action: str  # plan | apply
    base: str
    head: str
    targets: tuple[TargetPlan, ...]

    @property
    def exit_code(self) -> int:
        return next((t.code for t in self.targets if t.code != 0), 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "base": self.base,
            "head": self.head,
            "exit_code": self.exit_code,
            "targets": [t.to_json() for t in self.targets],
        }


def default_base(ws: Workspace) -> str:
    """Where a change starts: the fork point from the remote's branch (a pull request), or HEAD's
    first parent when HEAD is on that branch (a merge being applied)."""
    from lbctl.store.sync import remote_of

    store = ws.store
    remote = remote_of(ws)
    upstream = store.ref(remote.tracking_branch) if remote else None
    head = store.resolve("HEAD")
    if upstream is not None:
        try:
            fork = store.plumbing.git("merge-base", head, upstream).strip()
        except GitError:
            fork = ""
        if fork and fork != head:
            return fork
    return store.resolve("HEAD^")


def changed_targets(ws: Workspace, base: str) -> list[str]:
    """Targets whose files (their source, the files it includes, at either end) or whose table in
    `lbctl.toml` (new targets included) differ from `base` to HEAD."""
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import bundle_at, pathspecs, store_paths

    tables_before, tables_after = _target_tables(ws, base), _target_tables(ws, "HEAD")
    changed = []
    for target in ws.config.targets.values():
        if tables_before.get(target.name) != tables_after.get(target.name):
            changed.append(target.name)
            continue
        kind = kind_for(target)
        specs = list(store_paths(ws.store, kind, target))
        before = bundle_at(ws.store, kind, target, base)
        if before is not None:
            specs += pathspecs(kind, target, before)
        try:
            ws.store.plumbing.git("diff", "--quiet", base, "HEAD", "--", *dict.fromkeys(specs))
        except GitError:
            changed.append(target.name)
    return changed


def _target_tables(ws: Workspace, rev: str) -> dict[str, Any]:
    import tomllib

    from lbctl.config import CONFIG_NAME

    data = ws.store.content_at(ws.store.resolve(rev), CONFIG_NAME)
    try:
        targets = tomllib.loads(data.decode("utf-8")).get("targets", {}) if data else {}
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    return targets if isinstance(targets, dict) else {}


def plan(ws: Workspace, base: str | None) -> CiResult:
    from lbctl.commands import check as checking
    from lbctl.commands import deploy as operations
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import revision_of

    base_sha = ws.store.resolve(base) if base else default_base(ws)
    head = ws.store.resolve("HEAD")
    results = []
    for name in changed_targets(ws, base_sha):
        target = ws.target(name)
        rev = revision_of(ws.store, kind_for(target), target)
        try:
            outcome = operations.deploy(
                ws, name, rev=rev, dry_run=True, confirm=lambda plan: True, report=lambda stage, message: None
            )
            report = checking.check(ws, name, rev=rev)
        except LbctlError as exc:
            results.append(TargetPlan(name, rev, int(exc.exit_code), "error", error=str(exc)))
            continue
        code = int(outcome.exit_code)
        extra = [f for f in report.findings if f not in outcome.plan.refusals]
        if code == 0 and extra:  # the native validator refused what the plan's gates let through
            code = int(ExitCode.VALIDATION)
        results.append(TargetPlan(name, rev, code, outcome.verdict, outcome, report))
    return CiResult("plan", base_sha, head, tuple(results))


CI_CONFIRM_WITHIN = 300.0  # seconds: commit-confirm for a target that sets no confirm_within


def _confirm_within(tables: dict[str, Any], name: str, target_default: float) -> float:
    """The target's own `confirm_within` when its table sets one (0: off), else CI's default."""
    table = tables.get(name)
    if isinstance(table, dict) and "confirm_within" in table:
        return target_default
    return CI_CONFIRM_WITHIN


def _deploy_confirmed(
    ws: Workspace, name: str, rev: str | None, seconds: float, explicit: bool, report: Reporter
) -> TargetPlan:
    """Deploy under commit-confirm, then confirm it once verified (the verdict `confirmed`)."""
    from lbctl.commands import confirm as confirming
    from lbctl.commands import deploy as operations
    from lbctl.errors import CannotArm
    from lbctl.store import sync

    def deploy(within: float) -> Outcome:
        return operations.deploy(ws, name, rev=rev, confirm_within=within, confirm=lambda plan: True, report=report)

    try:
        outcome = deploy(seconds)
    except CannotArm as exc:
        if explicit or seconds <= 0:
            raise
        report("ci", f"{name}: deploying without commit-confirm: {exc}")
        outcome = deploy(0.0)
    if outcome.verdict != "pending-confirm" or outcome.exit_code != 0:
        return TargetPlan(name, rev, int(outcome.exit_code), outcome.verdict, outcome)
    confirmed = confirming.confirm(ws, name)
    report("confirm", confirmed.message)
    for warning in sync.publish_after(ws, op="confirm", target=name).warnings:  # the team sees it confirmed
        report("sync", warning)
    if confirmed.verdict != "confirmed":
        return TargetPlan(name, rev, int(confirmed.exit_code) or 1, confirmed.verdict, outcome, error=confirmed.message)
    return TargetPlan(name, rev, 0, "confirmed", outcome)


def apply(ws: Workspace, base: str | None, *, report: Reporter, confirm_within: float | None = None) -> CiResult:
    """Deploy the changed targets; `confirm_within` (seconds, 0 off) overrides the commit-confirm window."""
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import revision_of
    from lbctl.store.sync import refresh

    base_sha = ws.store.resolve(base) if base else default_base(ws)
    head = ws.store.resolve("HEAD")
    for warning in refresh(ws).warnings:  # the journal says what already runs where, and what failed
        report("sync", warning)
    results = []
    tables = _target_tables(ws, "HEAD")
    for name in changed_targets(ws, base_sha):
        target = ws.target(name)
        rev = revision_of(ws.store, kind_for(target), target)
        state = ws.journal.state(name)
        if rev is not None and rev in state.bad:
            results.append(
                TargetPlan(
                    name,
                    rev,
                    int(ExitCode.ROLLED_BACK),
                    "skipped-failed",
                    error=f"{rev[:10]} failed on {name} before: not deployed again (fix it in a new commit)",
                )
            )
            continue
        if rev is not None and rev == state.live and state.status == "good":
            results.append(TargetPlan(name, rev, 0, "unchanged", error=f"{name} already runs {rev[:10]}"))
            continue
        report("ci", f"deploying {name} at {(rev or '')[:10]}")
        explicit = confirm_within is not None
        seconds = confirm_within if confirm_within is not None else _confirm_within(tables, name, target.confirm_within)
        try:
            results.append(_deploy_confirmed(ws, name, rev, seconds, explicit, report))
        except LbctlError as exc:
            results.append(TargetPlan(name, rev, int(exc.exit_code), "error", error=str(exc)))
    return CiResult("apply", base_sha, head, tuple(results))


# -- Markdown ---------------------------------------------------------------------------------

_ICON = {0: "✅"}


def markdown(result: CiResult) -> str:
    """The plan (or what apply did) as a pull-request comment."""
    verb = "plan" if result.action == "plan" else "apply"
    out = [
        f"## lbctl {verb}: {len(result.targets)} target(s) changed between `{result.base[:10]}` and "
        f"`{result.head[:10]}`",
        "",
    ]
    if not result.targets:
        out.append("No target's files changed: nothing to deploy.")
    for t in result.targets:
        icon = _ICON.get(t.code, "❌")
        out += [f"### {icon} `{t.target}`: {_headline(t)}", ""]
        outcome = t.outcome
        if outcome is None:
            out += [f"```\n{t.error.strip()}\n```", ""]
            continue
        p = outcome.plan
        out.append(
            f"revision `{(t.rev or '?')[:10]}` · live `{(p.from_rev or 'none')[:10]}` · plan checksum `{p.checksum}`"
        )
        out += ["", "**Gates**", ""]
        if p.problems:
            out += [f"- ❌ {_line(pr.text)}" for pr in p.problems]
        else:
            out.append("- ✅ policy, blast radius, staging-first and drift: pass")
        if t.check is not None:
            extra = [f for f in t.check.findings if f not in p.refusals]
            state = "❌ " + "; ".join(_line(f) for f in extra) if extra else "✅ valid"
            out.append(f"- native validation ({t.check.validated_on}): {state}")
        if p.notes:
            out += ["", "**Notes**", "", *[f"- {_line(n)}" for n in p.notes]]
        out.append("")
        semantic = p.analysis.semantic if p.analysis is not None else None
        if semantic is not None:
            from lbctl.semantic import render_markdown

            out.append(render_markdown(semantic).replace("### ", "#### ", 1))
        elif p.diff:
            out += ["```diff", p.diff.rstrip(), "```", ""]
        if result.action == "apply":
            out += [f"> {_line(outcome.message)}", ""]
    return "\n".join(out).rstrip() + "\n"


def _headline(t: TargetPlan) -> str:
    words = {
        "dry-run": "would deploy",
        "unchanged": "already live, nothing to do",
        "refused": f"a gate refuses it (exit {t.code})",
        "skipped-failed": "failed here before: not redeployed",
        "good": "deployed, verified good",
        "confirmed": "deployed, verified good and confirmed",
        "rolled-back": "failed verification and was rolled back",
        "error": f"error (exit {t.code})",
    }
    return words.get(t.verdict, f"{t.verdict} (exit {t.code})")


def _line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
