"""Messages waiting to be delivered, one file each, and the log of those that were.

A message is queued with an exclusive create named after (event, sink), so announcing the
same event twice queues it once; a delivered one is logged before its file goes, so a crash
between the two at worst leaves a file whose id the log already holds, and it is not resent.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lbctl.config import NotifySink
from lbctl.journal import Event, timestamp
from lbctl.notify.messages import body, kind_of, message

FLUSH_BUDGET = 5.0  # seconds one flush may spend on all sinks together


def sink_id(sink: NotifySink) -> str:
    return hashlib.sha256(f"{sink.type}|{sink.url}|{sink.url_env}".encode()).hexdigest()[:12]


def wants(sink: NotifySink, event: Event, kind: str) -> bool:
    return kind in sink.on and any(fnmatch.fnmatchcase(event.target, glob) for glob in sink.targets)


@dataclass(frozen=True)
class Delivery:
    id: str
    sink: str
    ok: bool
    detail: str


class Outbox:
    def __init__(self, base: Path) -> None:
        self.dir = base / "outbox"
        self.log = base / "notified.log"

    def sent(self) -> set[str]:
        try:
            return {json.loads(line)["id"] for line in self.log.read_text().splitlines() if line.strip()}
        except FileNotFoundError:
            return set()

    def queue(self, event: Event, sinks: list[NotifySink]) -> list[str]:
        kind = kind_of(event)
        if kind is None:
            return []
        self.dir.mkdir(parents=True, exist_ok=True)
        queued = []
        done = self.sent()
        for sink in sinks:
            if not wants(sink, event, kind):
                continue
            ident = f"{event.id}--{sink_id(sink)}"
            if ident in done:
                continue
            with contextlib.suppress(FileExistsError):
                fd = os.open(self.dir / f"{ident}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    json.dump({"id": ident, "sink": sink_id(sink), "message": message(event)}, f)
                queued.append(ident)
        return queued

    def pending(self) -> list[Path]:
        return sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []

    def flush(self, sinks: list[NotifySink], budget: float = FLUSH_BUDGET) -> list[Delivery]:
        """Try each waiting message once, oldest first, within `budget` seconds."""
        by_id = {sink_id(s): s for s in sinks}
        done = self.sent()
        deadline = time.monotonic() + budget
        results: list[Delivery] = []
        for path in self.pending():
            try:
                item = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if item["id"] in done:
                path.unlink(missing_ok=True)
                continue
            sink = by_id.get(item["sink"])
            left = deadline - time.monotonic()
            if sink is None or left <= 0:
                continue  # its sink is gone from lbctl.toml, or no time left: it waits
            ok, detail = deliver(sink, item["message"], timeout=min(sink.timeout, left))
            results.append(Delivery(item["id"], sink.type, ok, detail))
            if ok:
                with self.log.open("a") as f:
                    f.write(json.dumps({"id": item["id"], "sink": sink.type, "at": timestamp()}) + "\n")
                path.unlink(missing_ok=True)
        return results


def deliver(sink: NotifySink, msg: dict[str, Any], *, timeout: float) -> tuple[bool, str]:
    url = sink.url or os.environ.get(sink.url_env or "", "")
    if not url:
        return False, f"${sink.url_env} is not set"
    if sink.type == "alertmanager":
        url = url.rstrip("/") + "/api/v2/alerts"
    data = json.dumps(body(sink.type, msg)).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
        return True, f"HTTP {response.status}"
    except Exception as exc:  # HTTP errors, refused, timed out: it waits in the outbox
        return False, str(exc) or type(exc).__name__
