"""The commands' core: each takes plain arguments, returns a value, prints nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbctl.config import Target
from lbctl.errors import ExitCode, StoreError, UsageError
from lbctl.journal import Event, TargetState, blob_id
from lbctl.lock import current_holder
from lbctl.selectors import select
from lbctl.workspace import Workspace

if TYPE_CHECKING:
    from lbctl.lifecycle import Outcome, Reporter
    from lbctl.planning import Plan
    from lbctl.semantic import SemanticDiff

Confirm = Callable[["Plan"], bool]


def deploy(
    ws: Workspace,
    name: str,
    *,
    file: Path | None = None,
    message: str | None = None,
    ticket: str | None = None,
    rev: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    reason: str | None = None,
    checksum: str | None = None,
    confirm: Confirm,
    report: Reporter,
) -> Outcome:
    from lbctl.lifecycle import Candidate, apply_change

    target = ws.target(name)
    store = ws.store
    if file is not None and rev is not None:
        raise UsageError("--file and --rev cannot be used together", hint="--file deploys a file, --rev a revision")
    if file is not None:
        try:
            content = file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --file {file}: {exc.strerror}") from None
        store.require_clean(allow=(target.source,))
        store.identity()
        trailers = {"Lbctl-Target": name, "Lbctl-Ticket": ticket or "", "Lbctl-Reason": message or ""}
        if store.content_at("HEAD", target.source) == content and store.last_change(target.source):
            candidate = Candidate(content=content, rev=store.last_change(target.source), label="HEAD")
        else:
            candidate = Candidate(
                content=content,
                rev=None,
                message=message or f"Update {target.name} from {file.name}",
                trailers=trailers,
                label=str(file),
            )
    else:
        if rev is None:
            store.require_clean()
        state = ws.journal.state(name)
        sha = select(store, ws.journal, state, rev).rev if rev else store.last_change(target.source)
        if sha is None:
            raise StoreError(f"{target.source} has never been committed", hint="commit it, or use --file")
        at_rev = store.content_at(sha, target.source)
        if at_rev is None:
            raise UsageError(f"revision {sha[:10]} has no {target.source}")
        candidate = Candidate(content=at_rev, rev=sha, label=sha[:10])
    if not dry_run:
        store.identity()
    return apply_change(
        ws,
        target,
        candidate,
        op="deploy",
        confirm=confirm,
        dry_run=dry_run,
        force=force,
        reason=reason,
        expected_checksum=checksum,
        report=report,
    )


def rollback(
    ws: Workspace,
    name: str,
    *,
    to: str = "last-good",
    message: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    reason: str | None = None,
    explain: bool = True,
    confirm: Confirm,
    report: Reporter,
) -> Outcome:
    from lbctl.lifecycle import Outcome, apply_change, rollback_candidate

    target = ws.target(name)
    state = ws.journal.state(name)
    chosen = select(ws.store, ws.journal, state, to, target.source)
    if not dry_run:
        ws.store.require_clean()
        ws.store.identity()
    candidate = rollback_candidate(ws, target, state, chosen.rev, chosen.why, message)
    outcome = apply_change(
        ws,
        target,
        candidate,
        op="rollback",
        confirm=confirm,
        dry_run=dry_run,
        force=force,
        reason=reason,
        explain=explain,
        report=report,
    )
    if outcome.verdict == "unchanged":
        return Outcome(
            op="rollback",
            target=name,
            verdict="unchanged",
            exit_code=ExitCode.OK,
            plan=outcome.plan,
            message=f"{name} is already at {to} ({chosen.rev[:10]}) and healthy; nothing to do",
            to_rev=chosen.rev,
        )
    return outcome


@dataclass(frozen=True)
class TargetStatus:
    name: str
    kind: str
    transport: str
    where: str
    state: TargetState
    live_subject: str | None
    drift: str  # none | drifted | missing | unknown | not-checked
    health: tuple[dict[str, Any], ...]
    lock: str | None
    crashed: dict[str, Any] | None
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        s = self.state
        return {
            "target": self.name,
            "kind": self.kind,
            "transport": self.transport,
            "where": self.where,
            "live": s.live,
            "live_subject": self.live_subject,
            "status": s.status,
            "last_good": s.last_good,
            "bad": list(s.bad),
            "updated": s.updated,
            "drift": self.drift,
            "health": list(self.health),
            "lock": self.lock,
            "interrupted_operation": self.crashed,
            "problems": list(self.problems),
        }


def status(ws: Workspace, name: str | None, *, probe: bool = True) -> list[TargetStatus]:
    from lbctl.checks import checks_for
    from lbctl.kinds import kind_for
    from lbctl.transports import transport_for

    results = []
    for target in ws.targets(name):
        state = ws.journal.state(target.name)
        subject = _subject(ws, state.live)
        lock = current_holder(ws.lock_dir / f"{target.name}.lock")
        crashed = _crashed_operation(ws, target, lock)
        drift, health, problems = "not-checked", [], []
        if probe:
            try:
                with transport_for(target) as transport:
                    running = transport.read_file(target.path or "") if target.path else None
                    if running is None:
                        drift = "missing"
                    elif state.live_blob is None:
                        drift = "unknown"
                    else:
                        same = blob_id(kind_for(target).canonical(running)) == state.live_blob
                        drift = "none" if same else "drifted"
                    for check in checks_for(target, transport):
                        obs = check.observe()
                        health.append({"check": check.name, "ok": obs.ok, "detail": obs.detail})
            except Exception as exc:  # status must answer even when a target is down
                problems.append(f"could not reach {target.name}: {exc}")
                drift = "unknown"
        results.append(
            TargetStatus(
                name=target.name,
                kind=target.kind,
                transport=target.transport,
                where=target.host or target.api or "local",
                state=state,
                live_subject=subject,
                drift=drift,
                health=tuple(health),
                lock=lock,
                crashed=crashed,
                problems=tuple(problems),
            )
        )
    return results


def _subject(ws: Workspace, rev: str | None) -> str | None:
    if rev is None:
        return None
    try:
        return ws.store.revision(rev).subject
    except Exception:  # the journal was fetched without the branch, or the object is gone
        return "(revision not in this store: fetch it)"


def _crashed_operation(ws: Workspace, target: Target, lock: str | None) -> dict[str, Any] | None:
    marker = ws.inflight_dir / f"{target.name}.json"
    if lock is not None or not marker.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(marker.read_text())
    except ValueError:
        return {"op": "unknown", "note": f"unreadable marker {marker}"}
    return data


@dataclass(frozen=True)
class LogEntry:
    event: Event
    subject: str | None
    trailers: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = self.event.to_json()
        data.pop("diff", None)
        data["subject"] = self.subject
        data["trailers"] = self.trailers
        return data


def log(ws: Workspace, name: str | None, *, limit: int = 20) -> list[LogEntry]:
    if name is not None:
        ws.target(name)
    entries: list[LogEntry] = []
    for event in ws.journal.events(name):
        subject, trailers = None, {}
        if event.to_rev:
            try:
                revision = ws.store.revision(event.to_rev)
                subject, trailers = revision.subject, revision.trailers
            except ValueError:
                subject = "(revision not in this store)"
        entries.append(LogEntry(event, subject, trailers))
        if len(entries) >= limit:
            break
    return entries


@dataclass(frozen=True)
class DiffResult:
    old_label: str
    new_label: str
    semantic: SemanticDiff | None  # None when a side could not be parsed
    text: str  # the unified diff, kept for the fallback and for `--format unified`

    @property
    def changed(self) -> bool:
        return not self.semantic.is_empty if self.semantic is not None else bool(self.text)

    def to_json(self) -> dict[str, Any]:
        if self.semantic is not None:
            return {"old": self.old_label, "new": self.new_label, "changed": self.changed, **self.semantic.to_json()}
        return {"old": self.old_label, "new": self.new_label, "changed": self.changed, "unified": self.text}


def _compare(
    kind: str,
    old: bytes,
    new: bytes,
    old_label: str,
    new_label: str,
    *,
    filename: str,
    root: Path | None,
    max_share: float | None,
) -> DiffResult:
    from lbctl.diffing import unified
    from lbctl.semantic import diff_texts

    semantic = diff_texts(
        kind,
        old.decode("utf-8", "replace"),
        new.decode("utf-8", "replace"),
        filename=filename,
        root=root,
        max_share=max_share,
    )
    return DiffResult(old_label, new_label, semantic, unified(old, new, old_label, new_label))


def diff_files(kind: str, a: Path, b: Path) -> DiffResult:
    contents = []
    for path in (a, b):
        try:
            contents.append(path.read_bytes())
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return _compare(kind, contents[0], contents[1], str(a), str(b), filename=str(b), root=b.parent, max_share=None)


def diff_target(ws: Workspace, name: str, a: str | None, b: str | None, *, live: bool) -> DiffResult:
    from lbctl.gates import effective_max_share
    from lbctl.transports import transport_for

    target = ws.target(name)
    state = ws.journal.state(name)
    max_share = effective_max_share(ws.config.policy_for(target), target)

    def content(selector: str) -> tuple[bytes, str]:
        rev = select(ws.store, ws.journal, state, selector).rev
        data = ws.store.content_at(rev, target.source)
        if data is None:
            raise UsageError(f"revision {rev[:10]} has no {target.source}")
        return data, f"{rev[:10]}:{target.source}"

    if live:
        from lbctl.lifecycle import _connect, _read

        with _connect(transport_for(target), target) as transport:
            running = _read(transport, target) or b""
        old, old_label = content(state.live) if state.live else content("HEAD")
        new, new_label = running, f"running:{target.path}"
    else:
        if a is None:
            if state.live is None:
                raise UsageError(
                    f"lbctl has not deployed to {name} yet: nothing is live to compare with",
                    hint=f"compare two revisions (`lbctl diff {name} A B`) or the LB (`--live`)",
                )
            a, b = state.live, b or "HEAD"
        old, old_label = content(a)
        new, new_label = content(b or "HEAD")
    return _compare(
        target.kind,
        old,
        new,
        old_label,
        new_label,
        filename=target.source,
        root=ws.root,
        max_share=max_share,
    )


@dataclass(frozen=True)
class CheckReport:
    target: str
    candidate: str
    validated_on: str
    validation: str  # the LB validator's output ("" when it said nothing)
    findings: tuple[str, ...]  # refusing
    notes: tuple[str, ...]
    semantic: SemanticDiff | None

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "candidate": self.candidate,
            "ok": self.ok,
            "validated_on": self.validated_on,
            "validation": self.validation,
            "findings": list(self.findings),
            "notes": list(self.notes),
            "semantic": self.semantic.to_json() if self.semantic else None,
        }


def check(ws: Workspace, name: str, *, file: Path | None = None, rev: str | None = None) -> CheckReport:
    """Everything `deploy` would judge before the push, without pushing: fit for a PR's CI job."""
    import shutil
    import tempfile

    from lbctl.errors import ValidationFailed
    from lbctl.kinds import kind_for
    from lbctl.preflight import analyze
    from lbctl.transports import transport_for
    from lbctl.transports.local import LocalTransport

    target = ws.target(name)
    if file is not None and rev is not None:
        raise UsageError("--file and --rev cannot be used together")
    if file is not None:
        try:
            content, label = file.read_bytes(), str(file)
        except OSError as exc:
            raise UsageError(f"cannot read --file {file}: {exc.strerror}") from None
    else:
        state = ws.journal.state(name)
        sha = select(ws.store, ws.journal, state, rev).rev if rev else ws.store.resolve("HEAD")
        at_rev = ws.store.content_at(sha, target.source)
        if at_rev is None:
            raise UsageError(f"revision {sha[:10]} has no {target.source}")
        content, label = at_rev, f"{sha[:10]}:{target.source}"
    kind = kind_for(target)
    state = ws.journal.state(name)
    baseline = ws.store.content_at(state.live, target.source) if state.live else None
    analysis = analyze(target, ws.config.policy_for(target), ws.config.safety_for(target), baseline, content)
    findings = [p.text for p in analysis.problems]
    binary = kind.validate_argv("x")[0]
    output = ""
    if shutil.which(binary):
        # The LB's own validator is here: check in a temp dir, touching nothing of the target's.
        where = f"local {binary}"
        with tempfile.TemporaryDirectory(prefix="lbctl-check-") as tmp:
            staged = str(Path(tmp) / Path(target.path or target.source).name)
            Path(staged).write_bytes(content)
            try:
                output = kind.validate(LocalTransport(target), staged)
            except ValidationFailed as exc:
                findings.append(f"{exc.message}\n{exc.details}".strip())
    else:
        from lbctl.errors import TransientError, Unreachable
        from lbctl.lifecycle import _connect

        with _connect(transport_for(target), target) as transport:
            where = f"{binary} on {transport.where}"
            try:
                staged = transport.write_staged(target.path or "", content)
                try:
                    output = kind.validate(transport, staged)
                except ValidationFailed as exc:
                    findings.append(f"{exc.message}\n{exc.details}".strip())
                finally:
                    transport.remove(staged)
            except TransientError as exc:
                raise Unreachable(f"{name}: could not validate on {transport.where}: {exc}") from None
    return CheckReport(name, label, where, output, tuple(findings), analysis.notes, analysis.semantic)


@dataclass(frozen=True)
class PullResult:
    target: str
    rev: str
    committed: bool
    previous: str | None

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "rev": self.rev, "committed": self.committed, "previous_live": self.previous}


def pull(ws: Workspace, name: str, *, message: str | None = None) -> PullResult:
    """Commit the config running on the target as its source (`Lbctl-Source: pull`).

    Adopts a brownfield LB, or records a hand edit so that deploys stop refusing for drift.
    The running config is recorded as live but `unverified`: lbctl did not judge it.
    """
    from lbctl.journal import Event, new_event_id, timestamp
    from lbctl.kinds import kind_for
    from lbctl.lifecycle import _connect, _read, lb_lock_path
    from lbctl.lock import hold_flock, holder_info
    from lbctl.transports import transport_for

    target = ws.target(name)
    kind = kind_for(target)
    ws.store.require_clean()
    who, _ = ws.store.identity()
    info = holder_info("pull", name)
    started = timestamp()
    with (
        hold_flock(ws.lock_dir / f"{name}.lock", info),
        _connect(transport_for(target), target) as transport,
        transport.lock(lb_lock_path(target), info),
    ):
        running = _read(transport, target)
        if running is None:
            raise UsageError(f"{target.path} does not exist on {transport.where}: there is nothing to pull")
        state = ws.journal.state(name)
        committed = ws.store.content_at("HEAD", target.source) != running
        if committed:
            trailers = {"Lbctl-Target": name, "Lbctl-Source": "pull"}
            rev = ws.store.commit_file(
                target.source, running, message or f"Pull {name}: record the config running on it", trailers
            )
        else:
            rev = ws.store.last_change(target.source) or ws.store.resolve("HEAD")
        event = Event(
            id=new_event_id(),
            op="pull",
            target=name,
            who=json.loads(info)["holder"],
            started=started,
            finished=timestamp(),
            from_rev=state.live,
            to_rev=rev,
            verdict="adopted",
            message=f"recorded the running config of {name} ({who})",
        )
        blob = blob_id(kind.canonical(running))
        ws.journal.append(event, state.moved_to(rev, blob, "unverified", event.id, event.finished))
    return PullResult(name, rev, committed, state.live)
