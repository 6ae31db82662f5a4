"""Debian's Prometheus and Alertmanager on loopback, started and stopped like the lab's LBs."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lbctl.lab.processes import free_port, stop


def http_json(url: str, data: Any = None) -> Any:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read() or b"null")


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def _start(argv: list[str], workdir: Path, ready: str) -> subprocess.Popen[bytes]:
    log = (workdir / "output.log").open("ab")
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    log.close()
    try:
        wait_http(ready)
    except RuntimeError:
        stop(proc)
        raise RuntimeError(f"{argv[0]} did not start: {(workdir / 'output.log').read_text()[-2000:]}") from None
    return proc


@dataclass
class Alertmanager:
    url: str
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, workdir: Path) -> Alertmanager:
        """Alone (no cluster), with a receiver that sends nothing: alerts are read back from its API."""
        binary = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "alertmanager.yml"
        config.write_text(
            "route:\n  receiver: nobody\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n"
            "receivers:\n  - name: nobody\n"
        )
        port = free_port()
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        return cls(f"http://127.0.0.1:{port}", _start(argv, workdir, f"http://127.0.0.1:{port}/-/ready"))

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """Active alerts whose labels include `labels`."""
        found = http_json(f"{self.url}/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true")
        return [a for a in found if all(a["labels"].get(k) == v for k, v in labels.items())]

    def stop(self) -> None:
        stop(self.proc)


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, workdir: Path, scrape: str, *, rule_files: list[Path] | None = None) -> Prometheus:
        """Scraping `scrape` (host:port) every second, evaluating `rule_files` every second."""
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: lbctl\n    static_configs:\n      - targets: ['{scrape}']\n"
            + ("rule_files:\n" + "".join(f"  - '{f}'\n" for f in rule_files) if rule_files else "")
        )
        port = free_port()
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        return cls(f"http://127.0.0.1:{port}", _start(argv, workdir, f"http://127.0.0.1:{port}/-/ready"))

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = http_json(f"{self.url}/api/v1/query?query={quote(expr)}")
        if data["status"] != "success":
            raise RuntimeError(f"query failed: {data}")
        return data["data"]["result"]  # type: ignore[no-any-return]

    def alerts(self) -> list[dict[str, Any]]:
        """The alerting rules' alerts, pending and firing."""
        return http_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        stop(self.proc)
