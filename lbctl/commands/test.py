"""Routing cases (`[[targets.T.routes]]`) run through a candidate in a sandbox: `lbctl test`,
and the gate `check` and `deploy` pass before anything is pushed.

A case is a request and where it must end: a backend (HAProxy backend, nginx upstream or
`proxy_pass` address, Caddy upstream set), a server, a status. The candidate runs with the
LB's own binary (`lbctl.sandbox`); each case is sent once and judged on the stub's answer.
When the sandbox cannot run, the report says why and holds no verdict on any case: `lbctl
test` fails (exit 3), `check` and `deploy` note it and judge with what they have.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbctl.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from lbctl.config import Route, Target
    from lbctl.engine.gates import Problem
    from lbctl.sandbox import Answer, FindFile
    from lbctl.sandbox.running import Sandbox
    from lbctl.store.bundle import Bundle
    from lbctl.store.repo import Store
    from lbctl.store.workspace import Workspace


@dataclass(frozen=True)
class CaseResult:
    label: str
    expected: dict[str, Any]  # backend / server / status, those the case names
    answer: Answer
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.label,
            "ok": self.ok,
            "expected": self.expected,
            "got": {
                "listener": self.answer.listener,
                "status": self.answer.status,
                "backend": self.answer.backend,
                "server": self.answer.server,
                "error": self.answer.error,
            },
            "failures": list(self.failures),
        }


@dataclass(frozen=True)
class RoutingReport:
    target: str
    candidate: str
    kind: str
    cases: tuple[CaseResult, ...] = ()
    unavailable: str | None = None  # why the sandbox could not run (then no case has a verdict)

    @property
    def failed(self) -> tuple[CaseResult, ...]:
        return tuple(c for c in self.cases if not c.ok)

    @property
    def ok(self) -> bool:
        return self.unavailable is None and not self.failed

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.ok else ExitCode.VALIDATION

    @property
    def summary(self) -> str:
        if self.unavailable is not None:
            return f"routing tests could not run: {self.unavailable}"
        if not self.cases:
            return f"{self.target} has no routing cases"
        if self.failed:
            return f"{len(self.failed)} of {len(self.cases)} routing case(s) fail for {self.target}"
        return f"all {len(self.cases)} routing case(s) hold for {self.target}"

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "candidate": self.candidate,
            "kind": self.kind,
            "ok": self.ok,
            "ran": self.unavailable is None,
            "unavailable": self.unavailable,
            "summary": self.summary,
            "cases": [c.to_json() for c in self.cases],
        }

    def to_junit(self) -> str:
        """JUnit XML, as CI systems read test results."""
        from xml.etree import ElementTree as ET

        suite = ET.Element(
            "testsuite",
            name=f"lbctl routing {self.target}",
            tests=str(len(self.cases) or 1),
            failures=str(len(self.failed)),
            errors="1" if self.unavailable is not None else "0",
        )
        if self.unavailable is not None:
            case = ET.SubElement(suite, "testcase", classname=f"lbctl.commands.test.{self.target}", name="sandbox")
            ET.SubElement(case, "error", message="routing tests could not run").text = self.unavailable
        for result in self.cases:
            case = ET.SubElement(suite, "testcase", classname=f"lbctl.commands.test.{self.target}", name=result.label)
            if not result.ok:
                ET.SubElement(case, "failure", message="; ".join(result.failures)).text = "\n".join(result.failures)
        return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def render(report: RoutingReport, fmt: str) -> str:
    """The report as text (one line a case), JSON or JUnit XML."""
    if fmt == "json":
        import json

        return json.dumps(report.to_json(), indent=2) + "\n"
    if fmt == "junit":
        return report.to_junit()
    lines = []
    for case in report.cases:
        got = case.answer.endpoint + (f" ({case.answer.status})" if case.answer.backend and case.answer.status else "")
        if case.ok:
            lines.append(f"✓ {case.label} → {got}")
        else:
            lines.append(f"✗ {case.label} → {got}: {'; '.join(case.failures)}")
    lines.append(f"{report.summary} (candidate {report.candidate})" if report.unavailable is None else report.summary)
    return "\n".join(lines) + "\n"


def judge_case(route: Route, answer: Answer) -> CaseResult:
    named = (("backend", route.backend), ("server", route.server), ("status", route.status))
    expected = {key: value for key, value in named if value is not None}
    failures = []
    got = f"got {answer.endpoint}" + (f", status {answer.status}" if answer.status is not None else "")
    if answer.error is not None:
        failures.append(f"no answer: {answer.error}")
    else:
        if route.backend is not None and answer.backend != route.backend:
            failures.append(f"expected backend {route.backend}, {got}")
        if route.server is not None and answer.server != route.server:
            failures.append(f"expected server {route.server}, {got}")
        if route.status is not None and answer.status != route.status:
            failures.append(f"expected status {route.status}, {got}")
    return CaseResult(route.label, expected, answer, tuple(failures))


def run_cases(
    target: Target, bundle: Bundle, routes: Sequence[Route], *, find_file: FindFile, label: str
) -> RoutingReport:
    """Each case through `bundle` in a sandbox; a sandbox that cannot run is the report's `unavailable`."""
    from lbctl.errors import SandboxUnavailable
    from lbctl.sandbox import open_sandbox

    try:
        with open_sandbox(
            target.kind, bundle.main, filename=_filename(target), includes=bundle.files(), find_file=find_file
        ) as sandbox:
            answers = [_send(sandbox, route) for route in routes]
    except SandboxUnavailable as exc:
        return RoutingReport(target.name, label, target.kind, unavailable=str(exc))
    cases = tuple(judge_case(route, answer) for route, answer in zip(routes, answers, strict=True))
    return RoutingReport(target.name, label, target.kind, cases)


def _send(sandbox: Sandbox, route: Route) -> Answer:
    """The case's answer; a case that names a port the config does not listen on fails on its own."""
    from lbctl.errors import SandboxUnavailable
    from lbctl.sandbox import Answer, request_of

    try:
        return sandbox.send(request_of(route))
    except SandboxUnavailable as exc:
        return Answer("-", None, None, None, error=str(exc).replace("\n  hint: ", "; "))


def store_files(store: Store, target: Target, rev: str, bundle: Bundle | None = None) -> FindFile:
    """Where a sandbox finds a file the config names on the LB (a map, an ACL list, an error page):
    the bundle's file of that name, else the store's beside the target's source at `rev`."""
    base = posixpath.dirname(target.source)
    by_name = {posixpath.basename(rel): data for rel, data in (bundle.includes if bundle else ())}

    def find(path: str) -> bytes | None:
        name = posixpath.basename(path)
        if name in by_name:
            return by_name[name]
        return store.content_at(rev, posixpath.join(base, name) if base else name)

    return find


def candidate(ws: Workspace, target: Target, *, file: Path | None, rev: str | None) -> tuple[Bundle, str, str]:
    """The bundle `test` judges, as `check` does: `--file`, `--rev`, the working tree when the target's
    files have uncommitted edits, else HEAD; with its label and the store revision its other files are from."""
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import bundle_at, bundle_in_worktree, expand
    from lbctl.store.selectors import select

    kind = kind_for(target)
    if file is not None and rev is not None:
        raise UsageError("--file and --rev cannot be used together")
    if file is not None:
        try:
            main = file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --file {file}: {exc.strerror}") from None
        return expand(ws.store, kind, target, "HEAD", main), str(file), "HEAD"
    state = ws.journal.state(target.name)
    sha = select(ws.store, ws.journal, state, rev).rev if rev else ws.store.resolve("HEAD")
    at_rev = bundle_at(ws.store, kind, target, sha)
    edited = None if rev else bundle_in_worktree(ws.root, kind, target)
    if edited is not None and edited != at_rev:  # as `check`: the files being edited, not HEAD
        return edited, f"working tree:{target.source}", sha
    if at_rev is None:
        raise UsageError(f"revision {sha[:10]} has no {target.source}")
    return at_rev, f"{sha[:10]}:{target.source}", sha


def test(ws: Workspace, name: str, *, file: Path | None = None, rev: str | None = None) -> RoutingReport:
    """`lbctl test`: the target's routing cases through the candidate (default: HEAD)."""
    target = ws.target(name)
    routes = ws.config.routes_for(target)
    bundle, label, at = candidate(ws, target, file=file, rev=rev)
    if not routes:
        return RoutingReport(name, label, target.kind)
    return run_cases(target, bundle, routes, find_file=store_files(ws.store, target, at, bundle), label=label)


def problems(report: RoutingReport) -> tuple[list[Problem], list[str]]:
    """The gate of `check` and `deploy`: failed cases refuse (exit 3); a sandbox that could not run is a note."""
    from lbctl.engine.gates import Problem

    if report.unavailable is not None:
        return [], [f"routing tests could not run: {report.unavailable}"]
    found = [
        Problem(ExitCode.VALIDATION, "routing", f"case {c.label!r}: {'; '.join(c.failures)}") for c in report.failed
    ]
    notes = [report.summary] if report.cases and not found else []
    return found, notes


def _filename(target: Target) -> str:
    return posixpath.basename(target.path or target.source)
