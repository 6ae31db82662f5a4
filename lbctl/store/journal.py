"""Deploy events and per-target state, recorded in git itself.

`refs/lbctl/journal` is an append-only chain of commits, one per event. Each commit's
message holds the event as JSON; its tree holds one `<target>.json` blob per target
with that target's state after the event. So:

- pushing the ref (`git push origin refs/lbctl/*`) carries every event;
- reading a target's state is one blob read, however long the history (PRODUCT.md §6);
- appending is compare-and-swap on the ref (`update-ref NEW OLD`), so two writers
  cannot lose each other's events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lbctl.clock import now
from lbctl.clock import timestamp as timestamp  # where the commands have always found it
from lbctl.errors import DamagedStore, StoreError

if TYPE_CHECKING:
    from lbctl.store.repo import Store

JOURNAL_REF = "refs/lbctl/journal"
HISTORY_KEPT = 200  # live changes kept in state; older ones are found by walking the journal
GOOD_KEPT = 50


@dataclass(frozen=True)
class Stage:
    name: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class Event:
    """What happened when a revision went to a target."""

    id: str
    op: str  # deploy | rollback | auto-rollback
    target: str
    who: str
    started: str
    finished: str
    from_rev: str | None
    to_rev: str | None
    verdict: str  # good | failed | validation-failed | rolled-back | interrupted | restore-failed
    stages: tuple[Stage, ...] = ()
    checks: tuple[dict[str, Any], ...] = ()
    message: str = ""
    diff: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # a rollout's members and batches (`lbctl.fleet`)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = [asdict(s) for s in self.stages]
        data["checks"] = list(self.checks)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        fields = dict(data)
        fields["stages"] = tuple(Stage(**s) for s in data.get("stages", ()))
        fields["checks"] = tuple(data.get("checks", ()))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in fields.items() if k in known})


@dataclass(frozen=True)
class LiveEntry:
    rev: str | None
    at: str
    event: str


@dataclass(frozen=True)
class TargetState:
    """What lbctl knows of one target, as of its newest event."""

    target: str
    live: str | None = None  # revision live on the target, per lbctl's last operation
    live_blob: str | None = None  # git blob id of the content lbctl left live (drift detection)
    status: str = "unknown"  # good | unverified | interrupted | failed | restore-failed | unknown
    last_good: str | None = None
    good: tuple[str, ...] = ()  # revisions verified good here, newest first
    good_blobs: tuple[str, ...] = ()  # content (git blob ids) verified good here, newest first
    bad: tuple[str, ...] = ()  # revisions that failed here: last-good never picks them
    history: tuple[LiveEntry, ...] = ()  # live changes, newest first
    last_event: str | None = None
    updated: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["history"] = [asdict(h) for h in self.history]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TargetState:
        return cls(
            target=data["target"],
            live=data.get("live"),
            live_blob=data.get("live_blob"),
            status=data.get("status", "unknown"),
            last_good=data.get("last_good"),
            good=tuple(data.get("good", ())),
            good_blobs=tuple(data.get("good_blobs", ())),
            bad=tuple(data.get("bad", ())),
            history=tuple(LiveEntry(**h) for h in data.get("history", ())),
            last_event=data.get("last_event"),
            updated=data.get("updated"),
        )

    def moved_to(self, rev: str | None, blob: str | None, status: str, event_id: str, at: str) -> TargetState:
        """The state after `rev` became live (or stayed live) with `status`."""
        history = self.history
        if rev != self.live or blob != self.live_blob or not history:
            history = (LiveEntry(rev=rev, at=at, event=event_id), *history)[:HISTORY_KEPT]
        good, bad, good_blobs = self.good, self.bad, self.good_blobs
        if status == "good" and rev:
            good = (rev, *[g for g in good if g != rev])[:GOOD_KEPT]
            bad = tuple(b for b in bad if b != rev)
        if status == "good" and blob:
            good_blobs = (blob, *[g for g in good_blobs if g != blob])[:GOOD_KEPT]
        return replace(
            self,
            live=rev,
            live_blob=blob,
            status=status,
            last_good=good[0] if good else None,
            good=good,
            good_blobs=good_blobs,
            bad=bad,
            history=history,
            last_event=event_id,
            updated=at,
        )

    def marked_bad(self, rev: str | None) -> TargetState:
        if not rev:
            return self
        good = tuple(g for g in self.good if g != rev)
        bad = (rev, *[b for b in self.bad if b != rev])
        return replace(self, good=good, bad=bad, last_good=good[0] if good else None)


class Journal:
    def __init__(self, store: Store) -> None:
        self.store = store

    def tip(self) -> str | None:
        tip = self.store.ref(JOURNAL_REF)
        if tip is None and self.store.plumbing.ref_text(JOURNAL_REF) is not None:
            ref_file = self.store.plumbing.common_dir / JOURNAL_REF
            raise damaged(
                f"it holds {self.store.plumbing.ref_text(JOURNAL_REF)!r}, not a commit id",
                remove=f"rm -- {ref_file}" if ref_file.is_file() else None,
            )
        return tip

    def state(self, target: str) -> TargetState:
        from lbctl.store.gitio import GitError

        tip = self.tip()
        if tip is None:
            return TargetState(target=target)
        try:
            self._readable(tip)
            data = self.store.content_at(tip, f"{target}.json")
        except GitError as exc:
            raise damaged(str(exc)) from None
        if data is None:
            return TargetState(target=target)
        try:
            return TargetState.from_json(json.loads(data))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"the journal's state for {target} is corrupted ({exc})",
                hint=f"inspect it with `git show {JOURNAL_REF}:{target}.json`",
            ) from None

    def _readable(self, tip: str) -> None:
        """The tip is a commit whose tree this store has, or `DamagedStore` says what is wrong."""
        from lbctl.store.gitio import GitError

        try:
            commit = self.store.plumbing.commit(tip)
            if commit is None:
                raise damaged(f"it points at {tip}, which this store does not have (or not as a commit)")
            self.store.plumbing.tree(commit.tree)
        except GitError as exc:
            raise damaged(str(exc)) from None

    def append(self, event: Event, state: TargetState) -> str:
        """Record `event` and `state` as one new journal commit; returns its sha.

        Appends from other lbctl processes (other targets, other operators) are never lost:
        the ref moves by compare-and-swap, retried on a fresh tip. This only stores: lbctl records
        its events through `lbctl.engine.record`, which runs what follows an event (notifications).
        """
        from lbctl.store.gitio import GitError

        name, email = self.store.identity()
        with self.store.writing():
            for _ in range(10):
                parent = self.tip()
                commit = self._commit(event, state, parent, name, email)
                try:
                    self.store.plumbing.git(
                        "update-ref", "-m", f"lbctl: {event.op} {event.target}", JOURNAL_REF, commit, parent or "0" * 40
                    )
                    return commit
                except GitError:
                    continue  # someone appended since we read the tip: rebuild on theirs
        raise StoreError(f"could not append to {JOURNAL_REF}: it kept moving", hint="run the command again")

    def _commit(self, event: Event, state: TargetState, parent: str | None, name: str, email: str) -> str:
        plumbing = self.store.plumbing
        base = plumbing.commit(parent) if parent else None
        state_json = json.dumps(state.to_json(), indent=1).encode()
        tree_sha = plumbing.write_tree(base.tree if base else None, {f"{state.target}.json": state_json})
        from lbctl.masking import mask_json
        from lbctl.store.gitio import ident

        # Pushed with the store (refs/lbctl/*): an event never carries a secret from a config.
        body = mask_json(event.to_json())
        message = f"{event.op} {event.target}: {event.verdict}\n\n{json.dumps(body, indent=1)}\n"
        return plumbing.write_commit(tree_sha, parent, ident(name, email, now().timestamp()), message)

    def events(self, target: str | None = None) -> Iterator[Event]:
        """Events newest first (optionally for one target), streamed from the journal."""
        tip = self.tip()
        if tip is None:
            return
        self._readable(tip)
        proc = self.store.repo.git.log(JOURNAL_REF, "--format=%x1e%B", as_process=True)
        buffer = ""
        try:
            for chunk in iter(lambda: proc.stdout.read(65536), b""):
                buffer += chunk.decode("utf-8", "replace")
                *records, buffer = buffer.split("\x1e")
                for record in records:
                    event = _event_from_message(record)
                    if event and (target is None or event.target == target):
                        yield event
            last = _event_from_message(buffer)
            if proc.proc is not None and proc.proc.wait() != 0:
                error = proc.proc.stderr.read().decode("utf-8", "replace") if proc.proc.stderr else ""
                raise damaged(error.strip().splitlines()[0] if error.strip() else "git log could not walk it")
            if last and (target is None or last.target == target):
                yield last
        finally:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.kill()  # the caller stopped early (log -n N): don't read the rest


def damaged(what: str, *, remove: str | None = None) -> DamagedStore:
    """The journal cannot be read: say which ref, what is wrong, and how to get it back.

    `remove` is the command that drops the broken ref when git itself cannot (a garbage ref file).
    """
    drop = remove or f"git update-ref -d {JOURNAL_REF}"
    return DamagedStore(
        f"the journal {JOURNAL_REF} is damaged: {what}",
        hint=f"get it again from the store's remote: `{drop} && git fetch origin '+refs/lbctl/*:refs/lbctl/*'` "
        "(with no copy anywhere, the first command alone starts an empty journal: its history is lost)",
    )


def _event_from_message(message: str) -> Event | None:
    _, _, body = message.partition("\n\n")
    body = body.strip()
    if not body:
        return None
    try:
        return Event.from_json(json.loads(body))
    except (ValueError, TypeError):
        return None


def new_event_id() -> str:
    import secrets

    return now().strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def blob_id(content: bytes) -> str:
    """git's blob id of `content` (what `git hash-object` prints), computed without git."""
    from lbctl.store.gitio import object_id

    return object_id("blob", content)
