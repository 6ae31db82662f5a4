"""A tree's stage, swap and restore on real files (local transport): all or nothing, and repeatable.

The ssh transport re-runs a step whose answer was lost; these run each step twice to show
that a repeat changes nothing more.
"""

from __future__ import annotations

from pathlib import Path

from lbctl.config import Target
from lbctl.drivers.placement import FilePlacement, TreePlacement, placement
from lbctl.store.bundle import Bundle
from lbctl.transports.local import LocalTransport


def _live(tmp_path: Path) -> Path:
    live = tmp_path / "etc" / "nginx"
    (live / "upstreams").mkdir(parents=True)
    (live / "nginx.conf").write_text("old main\n")
    (live / "upstreams" / "a.conf").write_text("old a\n")
    (live / "upstreams" / "gone.conf").write_text("managed before, dropped now\n")
    (live / "upstreams" / "host.conf").write_text("the host's own\n")
    (live / "mime.types").write_text("types {}\n")
    return live


def _files(live: Path) -> dict[str, str]:
    return {
        p.relative_to(live).as_posix(): p.read_text()
        for p in sorted(live.rglob("*"))
        if p.is_file() and ".lbctl" not in p.relative_to(live).as_posix()
    }


def _transport() -> LocalTransport:
    return LocalTransport(Target(name="t", kind="nginx", source="nginx.conf", path="/x"))


def test_a_tree_is_staged_as_a_mirror_then_swapped_and_restored_whole(tmp_path: Path) -> None:
    live = _live(tmp_path)
    before = _files(live)
    bundle = Bundle.of(b"new main\n", {"upstreams/a.conf": b"new a\n", "upstreams/b.conf": b"new b\n"})
    place = placement(_transport(), str(live / "nginx.conf"), bundle, ["upstreams/a.conf", "upstreams/gone.conf"])
    assert isinstance(place, TreePlacement)

    staged = Path(place.stage())
    stage = staged.parent
    assert staged.read_text() == "new main\n" and (stage / "upstreams" / "b.conf").read_text() == "new b\n"
    assert (stage / "mime.types").resolve() == live / "mime.types"  # the host's files, by symlink
    assert (stage / "upstreams" / "host.conf").is_symlink()
    assert not (stage / "upstreams" / "gone.conf").exists()  # dropped: the staged tree must not see it
    assert _files(live) == before  # staging touched nothing live

    place.swap()
    place.swap()  # a repeat (lost answer) keeps the first keep and moves nothing more
    after = {**before, "nginx.conf": "new main\n", "upstreams/a.conf": "new a\n", "upstreams/b.conf": "new b\n"}
    del after["upstreams/gone.conf"]
    assert _files(live) == after
    assert not stage.exists()

    place.restore()
    place.restore()
    assert _files(live) == before  # every file back, b.conf (new) removed, gone.conf back


def test_a_failed_validation_leaves_nothing_behind(tmp_path: Path) -> None:
    live = _live(tmp_path)
    before = _files(live)
    place = placement(_transport(), str(live / "nginx.conf"), Bundle.of(b"x\n", {"upstreams/a.conf": b"y\n"}), [])
    place.stage()
    place.discard()
    place.discard()
    assert _files(live) == before
    assert not [p for p in live.rglob("*") if "lbctl" in p.name]


def test_a_file_without_includes_is_placed_as_before(tmp_path: Path) -> None:
    live = _live(tmp_path)
    place = placement(_transport(), str(live / "nginx.conf"), Bundle(b"new main\n"), [])
    assert isinstance(place, FilePlacement)
    place.stage()
    place.swap()
    assert (live / "nginx.conf").read_text() == "new main\n"
    assert (live / "nginx.conf.lbctl-prev").read_text() == "old main\n"
