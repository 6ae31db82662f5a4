"""`lbctl check`: everything a deploy would judge before the push, deploying nothing."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbctl.errors import LbctlError, UsageError
from lbctl.store.selectors import select
from lbctl.store.workspace import Workspace

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.engine.routing_counters import BackendCounts
    from lbctl.engine.routing_gate import RoutingJudgement
    from lbctl.kinds.base import Kind
    from lbctl.kinds.conformance import Origin
    from lbctl.semantic import SemanticDiff
    from lbctl.store.bundle import Bundle
    from lbctl.transports.base import Transport


@dataclass(frozen=True)
class CheckReport:
    target: str
    candidate: str
    validated_on: str
    validation: str  # the LB validator's own words, file names as in the store ("" when it said nothing)
    findings: tuple[str, ...]  # refusing
    notes: tuple[str, ...]
    semantic: SemanticDiff | None
    validation_ok: bool = True
    config_problems: tuple[str, ...] = ()  # settings of the target that are wrong (exit 2)
    routing: RoutingJudgement | None = None  # routing cases and replay, when the target has them

    @property
    def ok(self) -> bool:
        return not self.findings and not self.config_problems

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "candidate": self.candidate,
            "ok": self.ok,
            "validated_on": self.validated_on,
            "validation": self.validation,
            "validation_ok": self.validation_ok,
            "config_problems": list(self.config_problems),
            "findings": list(self.findings),
            "notes": list(self.notes),
            "semantic": self.semantic.to_json() if self.semantic else None,
            **(self.routing.to_json() if self.routing else {"routing": None, "replay": None}),
        }


class _Connection:
    """One connection to the target for everything `check` reads there, opened when first needed.

    A failure to open is kept, so the steps that follow say so without waiting on the network again.
    """

    def __init__(self, target: Target) -> None:
        from lbctl.drivers import driver_for

        self.target = target
        self.driver = driver_for(target)  # the kind and the transport, built once for the whole check
        self.transport = self.driver.transport
        self._stack = ExitStack()
        self._open = False
        self._failed: LbctlError | None = None

    def get(self) -> Transport:
        if self._failed is not None:
            raise self._failed
        if not self._open:
            try:
                self._stack.enter_context(self.driver)
            except LbctlError as exc:
                self._failed = exc
                raise
            self._open = True
        return self.transport

    def close(self) -> None:
        self._stack.close()


def check(
    ws: Workspace, name: str, *, file: Path | None = None, rev: str | None = None, replay: Path | None = None
) -> CheckReport:
    """Everything `deploy` would judge before the push, without pushing: fit for a PR's CI job."""
    lb = _Connection(ws.target(name))
    try:
        return _check(ws, name, lb, file=file, rev=rev, replay=replay)
    finally:
        lb.close()


def _check(
    ws: Workspace,
    name: str,
    lb: _Connection,
    *,
    file: Path | None = None,
    rev: str | None = None,
    replay: Path | None = None,
) -> CheckReport:
    import shutil
    import tempfile

    from lbctl.engine.preflight import analyze
    from lbctl.engine.recovery import record_pending
    from lbctl.errors import ValidationFailed
    from lbctl.store.bundle import bundle_at, bundle_in_worktree, expand, materialized
    from lbctl.transports.local import LocalTransport

    target = ws.target(name)
    kind = lb.driver.kind
    seen = ""  # a note on what was checked, when it is not what the user may assume
    recorded = record_pending(ws, target)  # an operation that died on the target: recorded first
    if file is not None and rev is not None:
        raise UsageError("--file and --rev cannot be used together")
    if file is not None:
        try:
            main, label = file.read_bytes(), str(file)
        except OSError as exc:
            raise UsageError(f"cannot read --file {file}: {exc.strerror}") from None
        bundle = expand(ws.store, kind, target, "HEAD", main)  # as deploy --file: includes from the store
    else:
        state = ws.journal.state(name)
        sha = select(ws.store, ws.journal, state, rev).rev if rev else ws.store.resolve("HEAD")
        at_rev = bundle_at(ws.store, kind, target, sha)
        edited = None if rev else bundle_in_worktree(ws.root, kind, target)
        if edited is not None and edited != at_rev:  # as `git diff`: what you are editing, not HEAD
            bundle, label = edited, f"working tree:{target.source}"
            seen = (
                f"checked the working tree: {target.source} (or a file it includes) has uncommitted edits; "
                f"`lbctl check {name} --rev HEAD` checks the commit"
            )
        elif at_rev is None:
            raise UsageError(f"revision {sha[:10]} has no {target.source}")
        else:
            bundle, label = at_rev, f"{sha[:10]}:{target.source}"
    at = "HEAD" if file is not None else sha
    state = ws.journal.state(name)
    baseline = bundle_at(ws.store, kind, target, state.live) if state.live else None
    findings: list[str] = []
    try:
        bundle = bundle.with_main(kind.prepare(bundle.main))  # what deploy would push (a Caddyfile as JSON)
    except ValidationFailed as exc:
        findings.append(f"{exc.message}\n{exc.details}".strip())

    def counters() -> BackendCounts | str:  # read only when the change moves requests between backends
        from lbctl.engine.routing_counters import sample
        from lbctl.errors import TransientError

        try:
            return sample(kind, lb.get())
        except (LbctlError, TransientError, OSError) as exc:
            return f"the LB's counters could not be read ({exc}): the routing figures are bounds"

    policy, safety = ws.config.policy_for(target), ws.config.safety_for(target)
    # Routing cases and replay first: a replay's figures replace the estimate in the analysis.
    routing = _routing(ws, target, lb, baseline, state.live, bundle, at, label, replay)
    replayed = None
    if routing.replay is not None:
        from lbctl.engine.replay import replayed as replay_figures

        replayed = replay_figures(routing.replay)
    analysis = analyze(target, policy, safety, baseline, bundle, counters=counters, replay=replayed)
    findings += [p.text for p in analysis.problems]
    notes = [*([seen] if seen else []), *analysis.notes]
    if recorded is not None:
        notes.insert(0, f"recorded an interrupted operation: {recorded}")
    binary = kind.validator_binary()
    output, valid = "", True
    validate_here = shutil.which(binary) is not None
    # The sockets / API the target names, tested on the LB (a wrong one is a setting to fix, exit 2).
    config_problems = _endpoint_problems(target, kind, lb, notes)
    if not config_problems:
        notes.append(f"path: {_origin(target, kind, lb)}")  # a `path` the LB does not read: exit 2
    if validate_here:
        # The LB's own validator is here: check in a temp dir, touching nothing of the target's.
        where = f"local {binary}"
        filename = Path(target.path or target.source).name
        with materialized(bundle, filename) as tree, tempfile.TemporaryDirectory(prefix="lbctl-check-") as tmp:
            staged = str((tree or Path(tmp)) / filename)  # a tree: beside the files it includes
            Path(staged).write_bytes(bundle.main)
            try:
                output = kind.validate(LocalTransport(target), staged)
            except ValidationFailed as exc:
                findings.append(f"{exc.message}\n{exc.details}".strip())
                output, valid = exc.details, False
    else:
        from lbctl.errors import TransientError, Unreachable

        transport = lb.get()
        where = f"{binary} on {transport.where}"
        try:
            staged = lb.driver.stage(bundle)
            try:
                output = lb.driver.validate(staged)
            except ValidationFailed as exc:
                findings.append(f"{exc.message}\n{exc.details}".strip())
                output, valid = exc.details, False
            finally:
                lb.driver.discard()
        except TransientError as exc:
            raise Unreachable(f"{name}: could not validate on {transport.where}: {exc}") from None
    findings += [p.text for p in routing.problems]
    notes += routing.notes
    return CheckReport(
        name,
        label,
        where,
        output,
        tuple(findings),
        tuple(notes),
        analysis.semantic,
        validation_ok=valid,
        config_problems=tuple(config_problems),
        routing=routing,
    )


def _origin(target: Target, kind: Kind, lb: _Connection) -> Origin:
    """The file the running LB reads; a `path` that is not it is refused (exit 2)."""
    from lbctl.errors import TransientError, Unreachable
    from lbctl.kinds.conformance import check_origin, origin_unknown, wrong_path

    if not target.path or target.transport == "http":
        return origin_unknown("the target has no config file")
    try:
        origin = check_origin(kind, lb.get(), target)
    except (Unreachable, TransientError) as exc:
        return origin_unknown(f"could not reach the LB to ask which file it reads: {exc.args[0] if exc.args else exc}")
    if origin.matches is False:
        raise wrong_path(target, origin)
    return origin


def _endpoint_problems(target: Target, kind: Kind, lb: _Connection, notes: list[str]) -> list[str]:
    """Wrong sockets / API settings of `target`, as found on the LB.

    A LB that cannot be reached from here, or a host without the target's live config (a CI
    runner checking a `local` target), is a note, not a failure.
    """
    from lbctl.errors import ConfigError, TransientError
    from lbctl.kinds.base import Kind as BaseKind

    if type(kind).check_endpoints is BaseKind.check_endpoints:
        return []  # the kind names no socket or API to test (nginx): no connection for nothing
    transport = lb.transport
    try:
        lb.get()
        if target.transport != "http" and target.path and transport.read_file(target.path) is None:
            # No live config here: a CI runner checking a `local` target, not the LB host.
            notes.append(f"no {target.path} on {transport.where}: not the LB host, its sockets were not tested")
            return []
        kind.check_endpoints(transport)
    except ConfigError as exc:
        return [str(exc)]
    except (TransientError, LbctlError) as exc:
        notes.append(f"could not reach {transport.where} to test its sockets / API: {str(exc).splitlines()[0]}")
    return []


def _routing(
    ws: Workspace,
    target: Target,
    lb: _Connection,
    live: Bundle | None,
    live_rev: str | None,
    candidate: Bundle,
    at: str,
    label: str,
    replay: Path | None,
) -> RoutingJudgement:
    """Routing cases and replay; the target's `replay_log` is read over its transport (else a note)."""
    from lbctl.engine.routing_gate import judge

    note = None
    if live is None and (replay is not None or target.replay_log) and ws.store.has_commits():
        from lbctl.kinds import kind_for
        from lbctl.store.bundle import bundle_at

        live, live_rev = bundle_at(ws.store, kind_for(target), target, "HEAD"), ws.store.resolve("HEAD")
        note = f"nothing is recorded live on {target.name}: the replay compares the candidate with HEAD"
    transport = None
    if replay is None and target.replay_log:
        try:
            transport = lb.get()
        except LbctlError as exc:
            note = f"replay skipped: {exc.message}"
    verdict = judge(
        ws,
        target,
        live=live,
        live_rev=live_rev,
        candidate=candidate,
        candidate_rev=at,
        label=label,
        replay_file=replay,
        transport=transport,
    )
    return replace(verdict, notes=(*verdict.notes, note)) if note else verdict
