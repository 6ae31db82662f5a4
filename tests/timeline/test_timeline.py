"""A postmortem's timeline written by lbctl from a scripted incident on a real HAProxy:
a good deploy, a bad one undone by the automatic rollback, a change a person rolls back
after a note, and the same timeline from the deploying clone and from a fresh clone."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.conftest import Lab, LbctlRunner, git, write

GOLDEN = Path(__file__).parent / "golden"
_NORMAL = [
    # which stages a deploy runs is the lifecycle's business: their names and timings are in the JSON
    (re.compile(r"stages: [^\n]*"), "stages: <stages>"),
    (re.compile(r"\d{8}T\d{6}-[0-9a-f]{6}"), "<event>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?"), "<time>"),
    (re.compile(r"\d{4}-\d\d-\d\d"), "<date>"),
    (re.compile(r"\b\d\d:\d\d:\d\d\b"), "<hh:mm:ss>"),
    (re.compile(r"\b[0-9a-f]{10,40}\b"), "<sha>"),
    (re.compile(r"http://127\.0\.0\.1:\d+/"), "<url>"),
    (re.compile(r"\d+/\d+ probes[^\n;\"]*(; last failure:[^\n\"]*)?"), "<figures>"),
    (re.compile(r"\b\d+(\.\d+)?"), "N"),
]


def normal(text: str) -> str:
    text = text.replace(holder(), "<who>")
    for pattern, replacement in _NORMAL:
        text = pattern.sub(replacement, text)
    return text


def holder() -> str:
    """Who lbctl records as running an operation on this machine (user@host)."""
    from lbctl.lock import holder_info

    return str(json.loads(holder_info("deploy", "edge"))["holder"])


def normal_json(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: "<stages>" if k in ("stages", "stages_line") else normal_json(v) for k, v in data.items()}
    if isinstance(data, list):
        return [normal_json(v) for v in data]
    if isinstance(data, bool) or data is None:
        return data
    if isinstance(data, int | float):
        return "N"
    return normal(str(data))


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("LBCTL_WRITE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs: LBCTL_WRITE_GOLDEN=1 rewrites it after a reviewed change"


def incident(lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    good = write(tmp_path / "good.cfg", lab.config(weights={"web1": 100, "web2": 50, "web3": 50}))
    result = lbctl("deploy", "edge", "--file", str(good), "-m", "Halve web2 and web3", "--ticket", "OPS-1", "--yes")
    assert result.code == 0, result.err
    bad = write(tmp_path / "bad.cfg", lab.config(route_to="maintenance"))
    # --force: the plan refuses this routing change; verification catches it and restores
    result = lbctl(
        "deploy", "edge", "--file", str(bad), "-m", "Route to the new pool", "--ticket", "OPS-2", "--yes", "--force",
        "--reason", "the pool is ready",
    )  # fmt: skip
    assert result.code == 1, result.out + result.err
    drain = write(tmp_path / "drain.cfg", lab.config(weights={"web1": 100, "web2": 100, "web3": 1}))
    assert lbctl("deploy", "edge", "--file", str(drain), "-m", "Drain web3", "--yes").code == 0
    assert lbctl("timeline", "note", "customers report slow pages; paged on-call", "--target", "edge").code == 0
    result = lbctl("rollback", "edge", "--to", "previous", "-m", "undo the drain", "--ticket", "INC-9", "--yes")
    assert result.code == 0, result.err
    assert lbctl("timeline", "note", "all clear").code == 0


def test_timeline_of_an_incident_in_this_clone_and_a_fresh_one(
    store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path
) -> None:
    incident(lab, lbctl, tmp_path)

    markdown = lbctl("timeline", "edge")
    as_json = lbctl("timeline", "edge", "--format", "json")
    assert markdown.code == 0 and as_json.code == 0, markdown.err + as_json.err
    data = json.loads(as_json.out)
    kinds = [(e["kind"], e["target"]) for e in data["entries"]]
    assert [k for k, _ in kinds].count("failed") == 1 and ("auto-rollback", "edge") in kinds
    assert ("rollback", "edge") in kinds and ("note", "*") in kinds
    stages = {s["name"] for e in data["entries"] for s in e["details"].get("stages", ())}
    assert {"validate", "reload", "verify", "verify restore"} <= stages
    times = [e["at"] for e in data["entries"]]
    assert times == sorted(times)  # UTC order
    auto, manual = data["incidents"]
    assert auto["undone_by"] == "auto-rollback" and auto["detected_by"] == "lbctl verification"
    assert manual["undone_by"].startswith("rollback by") and "paged on-call" in manual["detected_by"]
    for found in (auto, manual):
        assert 0 <= found["time_to_detect"] <= found["time_to_mitigate"] <= found["time_to_restore"]
    assert manual["subject"] == "Drain web3" and auto["subject"] == "Route to the new pool"
    golden("incident.md", normal(markdown.out))
    golden("incident.json", json.dumps(normal_json(data), indent=2) + "\n")

    # The journal travels with the remote: a plain `git clone` writes the same timeline.
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(store, "remote", "add", "origin", str(remote))
    git(store, "push", "-q", "-u", "origin", "main", "refs/lbctl/*:refs/lbctl/*")
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(remote), str(fresh)], check=True)
    assert not git(fresh, "for-each-ref", "refs/lbctl/").strip()
    again = lbctl("timeline", "edge", "--store", str(fresh))
    assert again.code == 0, again.err
    assert normal(again.out) == normal(markdown.out)
    again_json = json.loads(lbctl("timeline", "edge", "--format", "json", "--store", str(fresh)).out)
    assert normal_json(again_json) == normal_json(data)
    assert again_json["incidents"] == data["incidents"]  # the same figures, to the millisecond
    # and back: a note made in the fresh clone is pushed, and the deploying clone's timeline has it
    assert lbctl("timeline", "note", "postmortem review booked", "--store", str(fresh)).code == 0
    texts = [e["text"] for e in json.loads(lbctl("timeline", "edge", "--json").out)["entries"]]
    assert texts[-1] == "postmortem review booked"


def test_window_csv_and_notes_at_a_time(store: Path, lab: Lab, lbctl: LbctlRunner, tmp_path: Path) -> None:
    incident(lab, lbctl, tmp_path)
    data = json.loads(lbctl("timeline", "--json").out)
    drain_live = data["incidents"][1]["live_at"]

    window = json.loads(lbctl("timeline", "edge", "--json", "--since", drain_live).out)
    assert [i["subject"] for i in window["incidents"]] == ["Drain web3"]
    assert all(e["at"] >= drain_live for e in window["entries"])
    none = json.loads(lbctl("timeline", "edge", "--json", "--until", "2000-01-01T00:00Z").out)
    assert none["entries"] == [] and none["incidents"] == []

    rows = lbctl("timeline", "edge", "--format", "csv").out.splitlines()
    assert rows[0] == "at,target,kind,text,event" and len(rows) == len(data["entries"]) + 1

    today = datetime.now(tz=UTC).date().isoformat()
    assert lbctl("timeline", "note", "war room opened", "--at", "00:00", "--target", "edge").code == 0
    noted = json.loads(lbctl("timeline", "edge", "--json").out)["entries"][0]
    assert noted["kind"] == "note" and noted["text"] == "war room opened"
    assert noted["at"] == f"{today}T00:00:00.000+00:00"
    bad = lbctl("timeline", "note", "x", "--target", "edgy")
    assert bad.code == 2 and "did you mean 'edge'" in bad.err
    assert lbctl("timeline", "edge", "--since", "yesterday-ish").code == 2
