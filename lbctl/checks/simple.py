"""Checks that ask "does it answer?": `http`, `tcp` and `command`."""

from __future__ import annotations

import http.client
import socket
import statistics
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from lbctl.checks.base import CheckResult, HealthCheck, Observation
from lbctl.checks.settings import CommandCheck, HttpCheck, TcpCheck


def http_probe(url: str, timeout: float) -> tuple[int | None, float, str]:
    """One GET, on a new connection and never through a proxy: (status, seconds, error)."""
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    host = parts.hostname or "127.0.0.1"
    conn = cls(host, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    start = time.perf_counter()
    try:
        conn.request("GET", path, headers={"User-Agent": "lbctl-verify", "Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - start, ""
    except (OSError, http.client.HTTPException) as exc:
        return None, time.perf_counter() - start, str(exc) or type(exc).__name__
    finally:
        conn.close()


class HttpHealthCheck(HealthCheck):
    type = "http"
    spec: HttpCheck

    @property
    def name(self) -> str:
        return f"http {self.spec.url}"

    def observe(self) -> Observation:
        spec = self.spec
        oks = 0
        latencies: list[float] = []
        problems: list[str] = []
        for _ in range(spec.probes):
            status, seconds, error = http_probe(spec.url, spec.timeout)
            latencies.append(seconds * 1000)
            slow = spec.max_latency_ms is not None and seconds * 1000 > spec.max_latency_ms
            if status == spec.expect_status and not slow:
                oks += 1
            elif status is None:
                problems.append(error)
            elif slow:
                problems.append(f"{seconds * 1000:.0f} ms > {spec.max_latency_ms:.0f} ms")
            else:
                problems.append(f"status {status}, expected {spec.expect_status}")
        detail = f"{oks}/{spec.probes} ok" + (f" ({problems[-1]})" if problems else "")
        return Observation(
            ok=oks / spec.probes >= spec.min_success_ratio,
            hard=oks == 0,
            detail=detail,
            figures={"probes": spec.probes, "ok": oks, "latency_ms": latencies},
        )

    def result(self, observations: Sequence[Observation]) -> CheckResult:
        probes = sum(o.figures.get("probes", 0) for o in observations)
        oks = sum(o.figures.get("ok", 0) for o in observations)
        latencies = [x for o in observations for x in o.figures.get("latency_ms", [])]
        ratio = oks / probes if probes else 0.0
        ok = probes > 0 and ratio >= self.spec.min_success_ratio and all(not o.hard for o in observations)
        figures = {
            "probes": probes,
            "ok": oks,
            "success_ratio": round(ratio, 4),
            "latency_ms_median": round(statistics.median(latencies), 1) if latencies else None,
            "latency_ms_max": round(max(latencies), 1) if latencies else None,
        }
        last_bad = next((o.detail for o in reversed(observations) if not o.ok), "")
        summary = f"{oks}/{probes} probes answered {self.spec.expect_status}"
        if latencies:
            summary += f", median {figures['latency_ms_median']} ms"
        if not ok and last_bad:
            summary += f"; last failure: {last_bad}"
        return CheckResult(self.name, ok, summary, figures)


class TcpHealthCheck(HealthCheck):
    type = "tcp"
    spec: TcpCheck

    @property
    def name(self) -> str:
        return f"tcp {self.spec.host}:{self.spec.port}"

    def observe(self) -> Observation:
        start = time.perf_counter()
        try:
            with socket.create_connection((self.spec.host, self.spec.port), timeout=self.spec.timeout):
                pass
        except OSError as exc:
            return Observation(False, f"connect failed: {exc.strerror or exc}", hard=True)
        return Observation(True, f"connected in {(time.perf_counter() - start) * 1000:.1f} ms")


class CommandHealthCheck(HealthCheck):
    type = "command"
    spec: CommandCheck

    @property
    def name(self) -> str:
        if self.spec.command is not None:
            return f"command {self.spec.command}"
        return f"command {(self.spec.argv or ['?'])[0]}"

    def _argv(self) -> list[str]:
        if self.spec.command is None:
            return list(self.spec.argv or ())
        from lbctl.shell import shell_argv, values_for

        return shell_argv(self.spec.command, values_for(self.target), key=f"targets.{self.target.name}.checks")

    def observe(self) -> Observation:
        result = self.transport.run(self._argv(), timeout=self.spec.timeout)
        if result.code == 0:
            return Observation(True, "exit 0")
        return Observation(False, f"exit {result.code}: {result.output[:200]}")
