"""Commit-confirm: a watchdog on the LB host puts the previous config back unless confirmed in time.

lbctl's own automatic restore runs on the operator's machine; if that machine, its link or its
lbctl dies after the swap, nothing would undo a bad change. So a change deployed with
`--confirm-within D` arms, before its reload, a small POSIX `sh` script on the LB host that needs
nothing of lbctl there. Its files live beside the live config, one directory per change, named by
the event id (a newer change never overwrites an older one's kept copy):

    .NAME.lbctl-watchdog/EVENT/  watchdog.sh reload.sh marker.sh prev new.sha256 deadline meta.json
                                 pid, fired/ (taken once: by the watchdog, or by `lbctl confirm`), result

At the deadline (epoch milliseconds in `deadline`, re-read every tenth of a second, so `--extend`
moves it) the watchdog takes `fired/` (an atomic mkdir: it never acts twice, and a confirm that
took it first wins). If the live file's sha256 is no longer this change's, a newer change
superseded it: it writes `superseded` and stops. Otherwise it links its kept copy beside the live
file and renames it over (atomic), runs the kind's own reload, waits (bounded) for a new worker
generation (`marker.sh`: HAProxy `show proc` workers, nginx's non-retiring workers), and writes
`result`: reverted, reload-failed or revert-failed, with times. The next lbctl command that reaches
the target reads it (`scan`) and records it in the journal (`lbctl.engine.watchdogs.settle`).
"""

from __future__ import annotations

import json
import posixpath
import shlex
import time
from dataclasses import dataclass, field
from hashlib import sha256
from typing import TYPE_CHECKING, Any

from lbctl.errors import CannotArm

if TYPE_CHECKING:
    from lbctl.config import Target
    from lbctl.kinds.base import Kind
    from lbctl.transports.base import Transport

WATCHDOG = r"""#!/bin/sh
# lbctl commit-confirm watchdog: puts the previous config back unless confirmed by the deadline.
d=$1 live=$2
echo $$ > "$d/pid"
now_ms() {
  t=$(date +%s%N 2>/dev/null)
  case $t in *N*|'') t=$(($(date +%s) * 1000000000)) ;; esac
  echo $((t / 1000000))
}
finish() {
  {
    echo "result=$1"; echo "deadline_ms=$dl"; echo "fired_ms=$fired"
    echo "restored_ms=$restored"; echo "done_ms=$(now_ms)"; echo "detail=$2"
  } > "$d/result.tmp" && mv -f "$d/result.tmp" "$d/result"
  rm -f "$d/pid"
  exit 0
}
while :; do
  dl=$(cat "$d/deadline" 2>/dev/null) || exit 0   # disarmed: its files are gone
  [ -n "$dl" ] && [ "$(now_ms)" -ge "$dl" ] && break
  sleep 0.1
done
mkdir "$d/fired" 2>/dev/null || exit 0            # once only; a confirm that took it first wins
fired=$(now_ms) restored=
cur=$(sha256sum < "$live" 2>/dev/null | cut -d' ' -f1)
[ "$cur" = "$(cat "$d/new.sha256")" ] ||
  finish superseded "the live file is no longer this change (sha256 ${cur:-missing})"
before=
[ -s "$d/marker.sh" ] && before=$(sh "$d/marker.sh" 2>/dev/null)
tmp="${live%/*}/.${live##*/}.lbctl-revert"
{ ln -f "$d/prev" "$tmp" && mv -f "$tmp" "$live"; } 2>/dev/null ||
  finish revert-failed "could not put the previous config back as $live"
restored=$(now_ms)
out=$(sh "$d/reload.sh" 2>&1)
rc=$?
[ "$rc" -eq 0 ] || finish reload-failed "the reload exited $rc: $(printf %s "$out" | tr '\n' ' ' | cut -c1-300)"
[ -s "$d/marker.sh" ] || finish reverted "the reload exited 0 (not confirmed: no way to see workers)"
i=0
while [ "$i" -lt 100 ]; do
  after=$(sh "$d/marker.sh" 2>/dev/null)
  if [ -n "$after" ] && [ "$after" != "$before" ]; then
    fresh=1
    for p in $after; do
      case " $(echo $before) " in *" $p "*) fresh=0 ;; esac
    done
    [ "$fresh" = 1 ] && finish reverted "new workers $(echo $after)"
  fi
  i=$((i + 1))
  sleep 0.1
done
finish reload-failed "the reload exited 0 but no new worker generation appeared within 10 s"
"""

_ARM = r"""
d=$1 live=$2 sha=$3 deadline=$4 meta=$5 reload=$6 marker=$7 script=$8
printf '%s\n' "$sha" > "$d/new.sha256" && printf '%s\n' "$meta" > "$d/meta.json" &&
printf '%s\n' "$reload" > "$d/reload.sh" && printf '%s' "$marker" > "$d/marker.sh" &&
printf '%s' "$script" > "$d/watchdog.sh" && printf '%s\n' "$deadline" > "$d/deadline" || exit 5
# Where systemd is PID 1, a transient service outlives the login session's scope (KillUserProcesses);
# elsewhere, or if systemd-run is refused (not root), its own session, detached from ours.
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && command -v systemd-run > /dev/null 2>&1 &&
   systemd-run --quiet --collect --unit="lbctl-watchdog-${d##*/}" sh "$d/watchdog.sh" "$d" "$live" > /dev/null 2>&1
then :
else
  setsid nohup sh "$d/watchdog.sh" "$d" "$live" > /dev/null 2>&1 < /dev/null &
fi
i=0
while ! [ -s "$d/pid" ] && [ "$i" -lt 50 ]; do sleep 0.02; i=$((i + 1)); done
[ -s "$d/pid" ] || { echo "the watchdog did not start" >&2; exit 6; }
"""

_SCAN = r"""
for d in "$1"/*/; do
  [ -f "${d}meta.json" ] || continue
  printf '=%s\n' "$(basename "$d")"
  printf 'M%s\n' "$(cat "${d}meta.json")"
  printf 'D%s\n' "$(cat "${d}deadline" 2>/dev/null)"
  [ -f "${d}result" ] && sed 's/^/R/' "${d}result"
  [ -d "${d}fired" ] && echo F
  pid=$(cat "${d}pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null && echo A
done
exit 0
"""

# Take `fired/` before the watchdog does; then stop it and remove its files. Exit 3: it fired first.
_DISARM = r"""
d=$1
[ -d "$d" ] || exit 4
mkdir "$d/fired" 2>/dev/null || exit 3
pid=$(cat "$d/pid" 2>/dev/null) && kill "$pid" 2>/dev/null
rm -rf -- "$d"
"""

_EXTEND = r"""
d=$1
[ -d "$d" ] && ! [ -d "$d/fired" ] || exit 3
printf '%s\n' "$2" > "$d/deadline.tmp" && mv -f "$d/deadline.tmp" "$d/deadline"
"""


@dataclass(frozen=True)
class Watch:
    """One watchdog's directory on the LB host, as `scan` read it."""

    event_id: str
    meta: dict[str, Any]
    deadline: float  # epoch seconds
    result: dict[str, str] = field(default_factory=dict)  # empty while it waits
    fired: bool = False
    alive: bool = False

    @property
    def pending(self) -> bool:
        return not self.result and not self.fired

    @property
    def outcome(self) -> str:
        return self.result.get("result", "")


def home(target: Target) -> str:
    path = target.path or ""
    return posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.lbctl-watchdog")


def refusal(target: Target, multi_file: bool) -> str | None:
    """Why a watchdog cannot be armed for `target` (None: it can)."""
    if target.kind == "caddy" or target.transport == "http":
        return (
            f"{target.name}: --confirm-within is not available for {target.kind} over {target.transport}: "
            "the watchdog is a script on the LB host that swaps files, and this target is changed through its API"
        )
    if multi_file:
        return f"{target.name}: --confirm-within covers a single config file; this target deploys a tree of includes"
    return None


def reload_command(kind: Kind, transport: Transport) -> str:
    """The kind's own reload, as a command line for `sh` on the LB host (the target's, else the default)."""
    argv = kind.reload_argv()
    if argv is not None:
        return shlex.join(argv)
    target = kind.target
    if target.kind == "haproxy":
        return f"echo reload | socat stdio {shlex.quote('unix-connect:' + (target.master_socket or ''))}"
    prefix = ["-p", target.prefix] if target.prefix else []
    return shlex.join(["nginx", "-s", "reload", *prefix, "-c", target.path or ""])


def marker_command(kind: Kind, transport: Transport) -> str:
    """A command printing the LB's current worker pids (a reload changes them); "" when there is none."""
    target = kind.target
    if target.kind == "haproxy":
        if target.master_socket:
            sock = shlex.quote("unix-connect:" + target.master_socket)
            return f"echo 'show proc' | socat stdio {sock} | awk '/^# old/{{exit}} $2==\"worker\"{{print $1}}'"
        if target.stats_socket:
            sock = shlex.quote("unix-connect:" + target.stats_socket)
            return f"echo 'show info' | socat stdio {sock} | sed -n 's/^Pid: //p'"
        return ""
    pid_path = kind.pid_path(transport)  # type: ignore[attr-defined]
    return (
        f"m=$(cat {shlex.quote(pid_path)}) && ps -o pid=,args= --ppid \"$m\" | grep -v 'shutting down' "
        "| awk '{print $1}'"
    )


def arm(
    transport: Transport,
    kind: Kind,
    *,
    event_id: str,
    seconds: float,
    previous: bytes,
    new: bytes,
    meta: dict[str, Any],
) -> float:
    """Upload and start the watchdog for the change `event_id`; return its deadline (epoch seconds)."""
    target = kind.target
    d = posixpath.join(home(target), event_id)
    deadline = time.time() + seconds
    transport.run(["mkdir", "-p", "--", d], check=True, timeout=30)
    transport.put_file(posixpath.join(d, "prev"), previous, like=target.path or "")
    meta = {**meta, "event_id": event_id, "armed": time.time(), "prev_sha256": sha256(previous).hexdigest()}
    argv = [
        "sh",
        "-c",
        _ARM,
        "lbctl-watchdog-arm",
        d,
        target.path or "",
        sha256(new).hexdigest(),
        str(int(deadline * 1000)),
        json.dumps(meta, sort_keys=True),
        reload_command(kind, transport),
        marker_command(kind, transport),
        WATCHDOG,
    ]
    result = transport.run(argv, timeout=30)
    if result.code != 0:
        raise CannotArm(
            f"{target.name}: could not start the watchdog on {transport.where}: {result.output[:300]}",
            hint="nothing was changed on the LB; check that sh, setsid, sha256sum and socat exist there",
        )
    return deadline


def scan(transport: Transport, target: Target) -> list[Watch]:
    """Every watchdog directory of `target` on the LB host, oldest event first."""
    result = transport.run(["sh", "-c", _SCAN, "lbctl-watchdog-scan", home(target)], timeout=30)
    watches: list[Watch] = []
    current: dict[str, Any] | None = None
    for line in result.stdout.splitlines():
        tag, rest = line[:1], line[1:]
        if tag == "=":
            current = {"event_id": rest, "meta": {}, "deadline": 0.0, "result": {}, "fired": False, "alive": False}
            watches.append(current)  # type: ignore[arg-type]
        elif current is None:
            continue
        elif tag == "M":
            try:
                current["meta"] = json.loads(rest)
            except ValueError:
                current["meta"] = {}
        elif tag == "D":
            current["deadline"] = int(rest) / 1000 if rest.strip().isdigit() else 0.0
        elif tag == "R" and "=" in rest:
            key, _, value = rest.partition("=")
            current["result"][key] = value
        elif tag == "F":
            current["fired"] = True
        elif tag == "A":
            current["alive"] = True
    found = [Watch(**w) for w in watches]  # type: ignore[arg-type]
    return sorted(found, key=lambda w: w.event_id)


def disarm(transport: Transport, target: Target, event_id: str) -> str:
    """Stop the watchdog of `event_id` and remove its files: `disarmed`, `fired` (too late) or `gone`."""
    d = posixpath.join(home(target), event_id)
    code = transport.run(["sh", "-c", _DISARM, "lbctl-watchdog-disarm", d], timeout=30).code
    return {0: "disarmed", 3: "fired"}.get(code, "gone")


def extend(transport: Transport, target: Target, event_id: str, seconds: float) -> float | None:
    """Move the deadline of `event_id` to now + `seconds`; None when it already fired."""
    d = posixpath.join(home(target), event_id)
    deadline = time.time() + seconds
    code = transport.run(["sh", "-c", _EXTEND, "lbctl-watchdog-extend", d, str(int(deadline * 1000))]).code
    return deadline if code == 0 else None


def forget(transport: Transport, target: Target, event_id: str) -> None:
    """Remove a fired watchdog's files once its result is in the journal."""
    transport.run(["rm", "-rf", "--", posixpath.join(home(target), event_id)], timeout=30)
