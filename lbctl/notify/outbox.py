"""Messages waiting to be delivered, one file each, and the log of those that were.

A message is queued with an exclusive create named after (event, sink), so announcing the
same event twice queues it once. A sender claims a message by renaming its file (two senders
never both get it), puts it back when the sink fails, and logs a delivered one before its file
goes: a crash between the two at worst leaves a file whose id the log holds, not resent.
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
from lbctl.notify.messages import body, kind_of, message
from lbctl.store.journal import Event, timestamp

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

    def queue(self, event: Event, sinks: list[NotifySink], *, drill: str | None = None) -> list[str]:
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
                    json.dump({"id": ident, "sink": sink_id(sink), "message": message(event, drill=drill)}, f)
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
        self._reclaim()
        for path in self.pending():
            claimed = path.with_name(f"{path.name}.sending-{os.getpid()}")
            try:
                os.rename(path, claimed)
                item = json.loads(claimed.read_text())
            except (OSError, ValueError):
                continue  # another sender has it
            if item["id"] in done:
                claimed.unlink(missing_ok=True)
                continue
            sink = by_id.get(item["sink"])
            left = deadline - time.monotonic()
            ok, detail = False, "no time left in this flush"
            if sink is not None and left > 0:
                ok, detail = deliver(sink, item["message"], timeout=min(sink.timeout, left))
                results.append(Delivery(item["id"], sink.type, ok, detail))
            if ok:
                with self.log.open("a") as f:
                    f.write(json.dumps({"id": item["id"], "sink": item["sink"], "at": timestamp()}) + "\n")
                claimed.unlink(missing_ok=True)
            else:  # its sink failed, is gone from lbctl.toml, or no time is left: it waits
                os.replace(claimed, path)
        return results

    def _reclaim(self) -> None:
        """Put back messages claimed by a sender that died mid-delivery."""
        if not self.dir.is_dir():
            return
        for claimed in self.dir.glob("*.json.sending-*"):
            pid = claimed.name.rsplit("-", 1)[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                with contextlib.suppress(OSError):
                    os.replace(claimed, claimed.with_name(claimed.name.split(".sending-")[0]))


def deliver(sink: NotifySink, msg: dict[str, Any], *, timeout: float) -> tuple[bool, str]:
    url = sink.url or os.environ.get(sink.url_env or "", "")
    if not url:
        return False, f"${sink.url_env} is not set"
    if sink.type == "alertmanager":
        url = url.rstrip("/") + "/api/v2/alerts"
    elif sink.type == "grafana":
        url = url.rstrip("/") + "/api/annotations"
    headers = {"Content-Type": "application/json"}
    if sink.token_env:  # read at delivery only: never in lbctl.toml, the outbox or the journal
        token = os.environ.get(sink.token_env, "").strip()
        if not token:
            return False, f"${sink.token_env} is not set"
        if any(c in token for c in "\r\n\0"):  # http.client would quote it in its error: never shown
            return False, f"${sink.token_env} holds a line break"
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body(sink.type, msg)).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
        return True, f"HTTP {response.status}"
    except Exception as exc:  # HTTP errors, refused, timed out: it waits in the outbox
        return False, str(exc) or type(exc).__name__
