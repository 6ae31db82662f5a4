"""Routing cases (`[[targets.T.routes]]`) run through a candidate in a sandbox: `lbctl test`
(lbctl/commands/test.py) and the gate `check` and `deploy` pass before anything is pushed.

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
from typing import TYPE_CHECKING, Any

from lbctl.errors import ExitCode

if TYPE_CHECKING:
    from lbctl.config import Route, Target
    from lbctl.engine.gates import Problem
    from lbctl.sandbox import Answer, FindFile
    from lbctl.sandbox.running import Sandbox
    from lbctl.store.bundle import Bundle


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
            case = ET.SubElement(suite, "testcase", classname=f"lbctl.routing.{self.target}", name="sandbox")
            ET.SubElement(case, "error", message="routing tests could not run").text = self.unavailable
        for result in self.cases:
            case = ET.SubElement(suite, "testcase", classname=f"lbctl.routing.{self.target}", name=result.label)
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
