"""The store's git remote is part of the store: fetch before reading, push after recording.

With `[store] sync = "auto"` (the default) and a remote (`[store] remote`, else the branch's
upstream), commands that read state first fetch the branch and `refs/lbctl/*` (bounded by
`[store] timeout`; unreachable means "go on with the local view, and say it may be stale"),
and the commands that change a target push the branch and the journal after recording.

The remote's lbctl refs are fetched beside the local ones, under `refs/lbctl-remotes/REMOTE/`,
never over them: the local journal may hold events the remote has not got yet. Integrating is
then a fast-forward, or (both sides appended) a replay of this clone's own events on top of the
remote's, which is always possible because each event only rewrites its own target's state.
Nothing here ever force-pushes: a push the remote refuses is fetched, replayed and retried.

Without a remote, or with `sync = "off"`, nothing here runs git or imports GitPython.
"""

from __future__ import annotations

import contextlib
import json
import re
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lbctl.errors import Refused
from lbctl.store.journal import JOURNAL_REF, TargetState

if TYPE_CHECKING:
    from lbctl.store.repo import Store
    from lbctl.store.workspace import Workspace

TRACKING = "refs/lbctl-remotes"
_ZERO = "0" * 40
_PUSH_ATTEMPTS = 6
_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}


@dataclass(frozen=True)
class Remote:
    """The remote a store is shared through, and its branch."""

    name: str
    branch: str
    timeout: float

    @property
    def tracking_branch(self) -> str:
        return f"refs/remotes/{self.name}/{self.branch}"

    def tracking(self, ref: str) -> str:
        """Where this clone keeps the remote's copy of `ref` (an `refs/lbctl/...` name)."""
        return f"{TRACKING}/{self.name}/{ref.removeprefix('refs/lbctl/')}"


@dataclass(frozen=True)
class SyncReport:
    """What a fetch or a push did: whether the remote answered, what went, what to tell the user."""

    remote: str | None
    reached: bool = True
    pushed: tuple[str, ...] = ()
    replayed: int = 0
    warnings: tuple[str, ...] = field(default_factory=tuple)
    released: bool = False  # the lease handed to `publish` was deleted with the journal push


class RemoteError(Exception):
    """git could not talk to the remote, or the remote refused (`rejected`)."""

    def __init__(self, message: str, *, rejected: bool) -> None:
        super().__init__(message)
        self.rejected = rejected


# -- which remote ---------------------------------------------------------------------------


def remote_of(ws: Workspace) -> Remote | None:
    """The remote to sync with, or None (`sync = "off"`, or no remote): read from files, no git."""
    settings = ws.config.store
    if settings.sync == "off":
        return None
    sections = _git_config(ws.store.plumbing.common_dir / "config")
    branch = local_branch(ws.store.git_dir)
    upstream = sections.get(("branch", branch or ""), {})
    # A CI job's checkout is often a detached HEAD: then `origin` is the remote.
    name = settings.remote or upstream.get("remote") or (None if branch else "origin")
    if not name or name == "." or ("remote", name) not in sections:
        return None
    merge = upstream.get("merge", "") if upstream.get("remote") == name else ""
    remote_branch = settings.branch or merge.removeprefix("refs/heads/") or branch or _remote_head(ws, name)
    return Remote(name=name, branch=remote_branch, timeout=settings.timeout)


def _remote_head(ws: Workspace, name: str) -> str:
    """The remote's default branch as the clone recorded it (`refs/remotes/NAME/HEAD`), else main."""
    try:
        text = (ws.store.plumbing.common_dir / "refs" / "remotes" / name / "HEAD").read_text(encoding="utf-8")
    except OSError:
        return "main"
    return text.strip().removeprefix(f"ref: refs/remotes/{name}/") if text.startswith("ref:") else "main"


def local_branch(git_dir: Path) -> str | None:
    """The checked-out branch's name, or None on a detached HEAD."""
    try:
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return head.removeprefix("ref: refs/heads/") if head.startswith("ref: refs/heads/") else None


def _git_config(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    """`[section "sub"]` → {key: value} of a git config file: enough for remotes and branches."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return found
    current: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        header = re.match(r'^\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]', line)
        if header:
            current = found.setdefault((header.group(1).lower(), header.group(2) or ""), {})
            continue
        pair = re.match(r"^([A-Za-z][A-Za-z0-9-]*)\s*=\s*(.*)$", line)
        if pair:
            current[pair.group(1).lower()] = pair.group(2).strip().strip('"')
    return found


# -- talking to the remote ------------------------------------------------------------------


def run_git(store: Store, *args: str, timeout: float) -> str:
    """git ARGS through GitPython, killed after `timeout` seconds; `RemoteError` on failure."""
    import os

    import git

    env = dict(_ENV)
    if "GIT_SSH_COMMAND" not in os.environ:
        env["GIT_SSH_COMMAND"] = f"ssh -o BatchMode=yes -o ConnectTimeout={max(1, int(timeout))}"
    try:
        out = store.repo.git.execute(["git", *args], kill_after_timeout=timeout, env=env, with_extended_output=False)
    except git.GitCommandError as exc:
        text = (str(exc.stderr or "") or str(exc)).strip().removeprefix("stderr:").strip().strip("'")
        rejected = any(
            word in text
            for word in ("rejected", "declined", "protected", "stale info", "failed to update ref", "non-fast-forward")
        )
        if text.startswith("Timeout:"):  # GitPython killed it (kill_after_timeout)
            text = f"no answer within {timeout:g} s"
        return _raise(text or f"git {args[0]} failed", rejected=rejected)
    return out if isinstance(out, str) else str(out)


def _raise(message: str, *, rejected: bool) -> str:
    raise RemoteError(message, rejected=rejected)


# Stores (opened for one command) whose remote did not answer, and why.
_DOWN: weakref.WeakKeyDictionary[Store, str] = weakref.WeakKeyDictionary()


def require_up(ws: Workspace) -> None:
    """Fail at once when the remote already did not answer during this command: an operation pays
    the remote's timeout once, not at every step (on-call, with the network down)."""
    if ws.store in _DOWN:
        raise RemoteError(_DOWN[ws.store], rejected=False)


def fetch(ws: Workspace, remote: Remote, *, journal_only: bool = False) -> None:
    """Bring the remote's branch, its `lbctl/*` branches and its `refs/lbctl/*` here (beside ours)."""
    specs = [f"+refs/lbctl/*:{TRACKING}/{remote.name}/*"]
    if not journal_only:
        specs += [
            f"+refs/heads/{remote.branch}:{remote.tracking_branch}",
            f"+refs/heads/lbctl/*:refs/remotes/{remote.name}/lbctl/*",
        ]
    try:
        run_git(ws.store, "fetch", "--quiet", "--prune", "--no-tags", remote.name, *specs, timeout=remote.timeout)
    except RemoteError as exc:
        if "couldn't find remote ref" not in str(exc) or journal_only:
            raise
        # A new remote without the branch yet: its lbctl refs are still worth having.
        run_git(ws.store, "fetch", "--quiet", "--prune", "--no-tags", remote.name, specs[0], timeout=remote.timeout)


def refresh(ws: Workspace) -> SyncReport:
    """Before reading state: fetch, integrate the remote's journal, push what an earlier run could not."""
    remote = remote_of(ws)
    if remote is None:
        return SyncReport(remote=None)
    try:
        require_up(ws)
        fetch(ws, remote)
    except RemoteError as exc:
        _DOWN[ws.store] = str(exc)
        return SyncReport(
            remote=remote.name,
            reached=False,
            warnings=(f"could not fetch from {remote.name} ({_first_line(exc)}): this view may be stale",),
        )
    replayed = integrate(ws, remote)
    pending = _pending(ws)
    if ws.store.ref(JOURNAL_REF) != ws.store.ref(remote.tracking(JOURNAL_REF)) or pending is not None:
        later = publish(ws, remote, pending=pending)
        return SyncReport(remote.name, later.reached, later.pushed, replayed + later.replayed, later.warnings)
    return SyncReport(remote=remote.name, replayed=replayed)


# -- the journal ----------------------------------------------------------------------------


def integrate(ws: Workspace, remote: Remote) -> int:
    """Make the local journal contain the remote's: fast-forward, or replay our events on theirs.

    Returns how many of this clone's events were replayed."""
    store = ws.store
    theirs = store.ref(remote.tracking(JOURNAL_REF))
    if theirs is None:
        return 0
    with store.writing():
        ours = store.ref(JOURNAL_REF)
        if ours == theirs or (ours is not None and _is_ancestor(store, theirs, ours)):
            return 0  # nothing new there (ours may have events to push)
        if ours is None or _is_ancestor(store, ours, theirs):
            store.plumbing.git("update-ref", "-m", "lbctl: fetched journal", JOURNAL_REF, theirs, ours or _ZERO)
            return 0
        tip, count = _replay(store, ours, theirs)
        store.plumbing.git("update-ref", "-m", "lbctl: journal replayed on the remote's", JOURNAL_REF, tip, ours)
        return count


def _replay(store: Store, ours: str, theirs: str) -> tuple[str, int]:
    """Our events since the fork, re-recorded in order on top of `theirs`; (new tip, count)."""
    plumbing = store.plumbing
    from lbctl.store.gitio import GitError

    try:
        base: str | None = plumbing.git("merge-base", ours, theirs).strip()
    except GitError:  # two journals begun apart (two first deploys at once): nothing in common
        base = None
    mine = plumbing.git("rev-list", "--reverse", "--topo-order", f"{theirs}..{ours}").split()
    their_changes = _changed(store, _tree_of(store, base) if base else None, _tree_of(store, theirs))
    tip = theirs
    for sha in mine:
        info = plumbing.commit(sha)
        if info is None:
            continue
        parent_tree = _tree_of(store, info.parents[0]) if info.parents else None
        changes: dict[str, bytes | None] = dict(_changed(store, parent_tree, info.tree))
        for path, content in list(changes.items()):
            if path in their_changes and content is not None:
                changes[path] = _keep_their_failures(content, their_changes[path])
        tree = plumbing.write_tree(_tree_of(store, tip), changes)
        tip = plumbing.write_commit(tree, tip, info.author, info.message)
    return tip, len(mine)


def _keep_their_failures(ours: bytes, theirs: bytes | None) -> bytes:
    """Both sides changed a target's state: ours is newer here, but a revision either side saw
    fail stays marked failed, so `last-good` and CI never pick it again."""
    if theirs is None:
        return ours
    try:
        mine, other = json.loads(ours), json.loads(theirs)
        state = TargetState.from_json(mine)
        bad = [*state.bad, *[b for b in other.get("bad", ()) if b not in state.bad and b != state.live]]
        good = [g for g in state.good if g not in bad]
        mine.update(bad=bad, good=good, last_good=good[0] if good else None)
        return json.dumps(mine, indent=1).encode()
    except (ValueError, KeyError, TypeError, AttributeError):
        return ours


def _tree_of(store: Store, commit: str) -> str | None:
    info = store.plumbing.commit(commit)
    return info.tree if info is not None else None


def _changed(store: Store, old_tree: str | None, new_tree: str | None) -> dict[str, bytes | None]:
    """Top-level files (the journal's `<target>.json`) that differ between two trees."""
    old = store.plumbing.tree(old_tree) if old_tree else {}
    new = store.plumbing.tree(new_tree) if new_tree else {}
    changed: dict[str, bytes | None] = {}
    for name in set(old) | set(new):
        if old.get(name) != new.get(name):
            entry = new.get(name)
            changed[name.decode()] = store.blob(entry[1]) if entry is not None else None
    return changed


def _is_ancestor(store: Store, older: str, newer: str) -> bool:
    from lbctl.store.gitio import GitError

    try:
        store.plumbing.git("merge-base", "--is-ancestor", older, newer)
        return True
    except GitError:
        return False


def _first_line(exc: Exception) -> str:
    """git's own reason: its first `fatal:`/`error:` line, else its first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line.removeprefix(prefix)
    return lines[0] if lines else type(exc).__name__


# -- pushing --------------------------------------------------------------------------------


def publish_after(ws: Workspace, *, op: str, target: str, release: tuple[str, str] | None = None) -> SyncReport:
    """After recording: push the branch (or, if the remote refuses it, `lbctl/OP/TARGET`) and the
    journal; `release` (a lease ref and the sha this clone holds it at) is deleted in the same push."""
    remote = remote_of(ws)
    if remote is None:
        return SyncReport(remote=None)
    return publish(ws, remote, pending={"op": op, "target": target}, release=release)


def publish(
    ws: Workspace, remote: Remote, *, pending: dict[str, str] | None, release: tuple[str, str] | None = None
) -> SyncReport:
    store = ws.store
    pushed: list[str] = []
    warnings: list[str] = []
    replayed = 0
    reached = True
    released = False
    if ws.store in _DOWN:
        if pending is not None:
            _remember_pending(ws, pending)
        why = _first_line(RemoteError(_DOWN[ws.store], rejected=False))
        return SyncReport(
            remote.name,
            reached=False,
            warnings=(
                f"{remote.name} did not answer ({why}): the records are here; the next lbctl command pushes them",
            ),
        )
    if pending is not None:
        try:
            where = _push_branch(ws, remote, op=pending.get("op", "deploy"), target=pending.get("target", "store"))
            if where is not None:
                pushed.append(where)
                if where != remote.branch:
                    warnings.append(
                        f"{remote.name} refused {remote.branch}, so this clone's commits went to branch {where}: "
                        f"merge it into {remote.branch} (a pull request, or `git pull && git push`)"
                    )
            _clear_pending(ws)
        except RemoteError as exc:
            reached = exc.rejected
            _remember_pending(ws, pending)
            warnings.append(
                f"could not push the branch to {remote.name} ({_first_line(exc)}): lbctl pushes it next time"
            )
    for _ in range(_PUSH_ATTEMPTS):
        ours, theirs = store.ref(JOURNAL_REF), store.ref(remote.tracking(JOURNAL_REF))
        if ours is None or ours == theirs or (theirs is not None and _is_ancestor(store, ours, theirs)):
            break
        # The lease goes in the same atomic push (one round trip), while it is still ours.
        lease = release if release and store.ref(remote.tracking(release[0])) == release[1] else None
        lease_args = [f"--force-with-lease={lease[0]}:{lease[1]}"] if lease else []
        try:
            run_git(
                store,
                "push",
                "--quiet",
                "--atomic",
                *lease_args,
                remote.name,
                f"{ours}:{JOURNAL_REF}",
                *([f":{lease[0]}"] if lease else []),
                timeout=remote.timeout,
            )
            if lease:
                store.plumbing.git("update-ref", "-d", remote.tracking(lease[0]))
                released = True
        except RemoteError as exc:
            if not exc.rejected:
                reached = False
                warnings.append(
                    f"could not push the journal to {remote.name} ({_first_line(exc)}): "
                    "it is recorded here, and the next lbctl command with the remote in reach pushes it"
                )
                break
            try:  # someone appended meanwhile: take theirs, put ours on top, try again
                fetch(ws, remote, journal_only=True)
            except RemoteError:
                continue
            replayed += integrate(ws, remote)
            continue
        store.plumbing.git("update-ref", remote.tracking(JOURNAL_REF), ours)
        pushed.append(JOURNAL_REF)
    else:
        warnings.append(f"the journal on {remote.name} kept moving: run any lbctl command to push it again")
    return SyncReport(remote.name, reached, tuple(pushed), replayed, tuple(warnings), released)


def _push_branch(ws: Workspace, remote: Remote, *, op: str, target: str) -> str | None:
    """Push HEAD to the remote's branch. If the branch moved on meanwhile (another clone recorded
    a change of another target), merge it, as `git pull` would, and push again; if the remote
    refuses it anyway (protected), push to `lbctl/OP/TARGET` instead.

    Returns the branch that got it, or None when there was nothing to push."""
    store = ws.store
    for _ in range(3):
        head = store.ref("HEAD")
        known = store.ref(remote.tracking_branch)
        if head is None or head == known or (known is not None and _is_ancestor(store, head, known)):
            return None
        try:
            run_git(store, "push", "--quiet", remote.name, f"{head}:refs/heads/{remote.branch}", timeout=remote.timeout)
            store.plumbing.git("update-ref", remote.tracking_branch, head)
            return remote.branch
        except RemoteError as exc:
            if not exc.rejected:
                raise
        fetch(ws, remote)
        known = store.ref(remote.tracking_branch)
        if known is None or _is_ancestor(store, known, head) or not _merge(ws, remote):
            break  # refused though it was a fast-forward (protected), or no clean merge
    head = store.ref("HEAD") or ""
    info = store.plumbing.commit(head)
    if info is not None and "\nLbctl-Rollback-Of: " in info.message:
        op = "rollback"  # a rollback's forward commit, automatic ones included
    side = f"lbctl/{op}/{target}"
    run_git(store, "push", "--quiet", remote.name, f"{head}:refs/heads/{side}", timeout=remote.timeout)
    return side


def _merge(ws: Workspace, remote: Remote) -> bool:
    """Merge the remote's branch into HEAD (index and work tree too); False, and nothing changed,
    when git cannot do it cleanly (a conflict, or local edits in the way)."""
    from lbctl.store.gitio import GitError

    store = ws.store
    store.identity()
    with store.writing():
        try:
            store.plumbing.git(
                "-c",
                "core.hooksPath=/dev/null",
                "merge",
                "--quiet",
                "--no-edit",
                "-m",
                f"Merge {remote.name}/{remote.branch} (lbctl: changes of other targets recorded meanwhile)",
                remote.tracking_branch,
            )
            return True
        except GitError:
            with contextlib.suppress(GitError):
                store.plumbing.git("merge", "--abort")
            return False


def _pending_file(ws: Workspace) -> Path:
    return ws.store.git_dir / "lbctl" / "unpushed.json"


def _pending(ws: Workspace) -> dict[str, str] | None:
    try:
        data = json.loads(_pending_file(ws).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _remember_pending(ws: Workspace, pending: dict[str, str]) -> None:
    path = _pending_file(ws)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(pending))


def _clear_pending(ws: Workspace) -> None:
    _pending_file(ws).unlink(missing_ok=True)


# -- stale views ----------------------------------------------------------------------------


def require_fresh(ws: Workspace, target: str, *, force: bool) -> SyncReport:
    """Before a deploy: refuse (exit 4) when the remote has commits or events for `target` that
    this clone lacks, since deploying from here would undo them. Unreachable: refused too,
    unless `--force` (the deploy then goes on this clone's view)."""
    remote = remote_of(ws)
    if remote is None:
        return SyncReport(remote=None)
    report = refresh(ws)
    if not report.reached:
        if force:
            return report
        raise Refused(
            f"cannot reach {remote.name} to check that this clone's view of {target} is current; nothing was pushed",
            hint=f"retry when {remote.name} answers, or pass --force to deploy on this clone's view "
            "(a rollback never needs the remote)",
        )
    store = ws.store
    known = store.ref(remote.tracking_branch)
    head = store.ref("HEAD")
    if known is None or head is None:
        return report
    from lbctl.kinds import kind_for
    from lbctl.store.bundle import store_paths

    config = ws.target(target)
    paths = [*store_paths(store, kind_for(config), config), "lbctl.toml"]
    missing = store.plumbing.git("log", "--format=%h %s", f"{head}..{known}", "--", *paths).splitlines()
    live = ws.journal.state(target).live
    live_missing = (
        live is not None
        and store.plumbing.commit(live) is not None
        and _is_ancestor(store, live, known)
        and not _is_ancestor(store, live, head)
    )
    if missing or live_missing:
        what = (
            f"{len(missing)} commit(s) for {target} on {remote.name}/{remote.branch} that this clone lacks "
            f"({'; '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})"
            if missing
            else f"{target} runs {live[:10] if live else '?'}, which this clone's branch does not contain"
        )
        raise Refused(
            f"this clone's view of {target} is stale: {what}; deploying from here would undo them. Nothing was pushed",
            hint="run `git pull` (then check the plan again) and deploy from the up-to-date branch",
        )
    return report
