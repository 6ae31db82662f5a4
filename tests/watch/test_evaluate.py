"""The pure judgement of `lbctl watch`: windows, resets, inconclusive traffic, `for` durations."""

from __future__ import annotations

from lbctl.checks.counters import ServerCounters, Snapshot
from lbctl.watch.evaluate import AlertBook, Limits, Pool, Sample, advance, evaluate, is_reset, traffic

LIMITS = Limits(min_requests=30, share_deviation=0.25, max_share=0.6, max_5xx_ratio=0.05)
EVEN = {"web": Pool({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})}


def snap(process: str, sessions: dict[str, int], *, weights: dict[str, int] | None = None, **kw: object) -> Snapshot:
    servers = tuple(
        ServerCounters("web", name, n, "UP", (weights or {}).get(name, 100), **kw)  # type: ignore[arg-type]
        for name, n in sessions.items()
    )
    total = sum(sessions.values())
    return Snapshot(process, servers, {"web": total}, {"web": 0}, {"web": total})


def window(*snaps: Snapshot, step: float = 1.0) -> list[Sample]:
    return [Sample(i * step, s) for i, s in enumerate(snaps)]


def test_shares_are_judged_against_what_the_config_intends() -> None:
    samples = window(snap("1", {"a": 0, "b": 0, "c": 0}), snap("1", {"a": 50, "b": 0, "c": 50}, weights={"b": 0}))
    report = evaluate("edge", samples, EVEN, LIMITS)
    [backend] = report.backends
    assert backend.verdict == "alerting"
    b = next(s for s in backend.servers if s.name == "b")
    assert (b.actual, b.intended, b.deviation, b.weight) == (0.0, 0.3333, 1.0, 0)
    rules = {(c.rule, c.server) for c in backend.conditions}
    assert ("share-deviation", "b") in rules
    assert ("share-deviation", "a") in rules  # a and c take 50 % where 33 % is meant


def test_within_bounds_is_ok() -> None:
    samples = window(snap("1", {"a": 10, "b": 10, "c": 10}), snap("1", {"a": 40, "b": 38, "c": 42}))
    assert evaluate("edge", samples, EVEN, LIMITS).verdict == "ok"


def test_too_little_traffic_is_inconclusive() -> None:
    samples = window(snap("1", {"a": 0, "b": 0, "c": 0}), snap("1", {"a": 20, "b": 0, "c": 0}))
    report = evaluate("edge", samples, EVEN, LIMITS)
    assert report.verdict == "inconclusive"
    assert report.conditions == ()


def test_a_new_worker_is_a_reset_not_traffic() -> None:
    before, reloaded = snap("1", {"a": 900, "b": 900, "c": 900}), snap("2", {"a": 5, "b": 0, "c": 0})
    assert is_reset(before, reloaded)
    assert is_reset(snap("1", {"a": 10, "b": 10, "c": 10}), snap("1", {"a": 1, "b": 10, "c": 10}))
    after = snap("2", {"a": 15, "b": 10, "c": 10})
    seen = traffic(window(snap("1", {"a": 0, "b": 0, "c": 0}), before, reloaded, after))
    assert seen.resets == 1
    assert dict(seen.sessions) == {("web", "a"): 900 + 10, ("web", "b"): 900 + 10, ("web", "c"): 900 + 10}


def test_hash_based_pools_are_not_judged_on_shares() -> None:
    samples = window(snap("1", {"a": 0, "b": 0, "c": 0}), snap("1", {"a": 100, "b": 0, "c": 0}))
    pools = {"web": Pool({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, approximate=True)}
    report = evaluate("edge", samples, pools, LIMITS)
    assert {c.rule for c in report.conditions} == {"max-share"}


def test_5xx_ratio_and_saturation() -> None:
    start = snap("1", {"a": 0, "b": 0, "c": 0})
    end = snap("1", {"a": 20, "b": 20, "c": 20}, limit=10, current=10, queued=2)
    end = Snapshot("1", end.servers, {"web": 60}, {"web": 12}, {"web": 60})
    rules = {c.rule for c in evaluate("edge", window(start, end), EVEN, LIMITS).conditions}
    assert rules == {"5xx-ratio", "saturated"}


def test_an_alert_fires_after_for_and_resolves_when_it_clears() -> None:
    bad = [snap("1", {"a": 0, "b": 0, "c": 0}), snap("1", {"a": 50, "b": 0, "c": 50}, weights={"b": 0})]
    book = AlertBook()
    book, changes = advance(book, evaluate("edge", window(*bad), EVEN, LIMITS), 2.0)
    assert changes == [] and len(book.alerts) == 3  # pending: a, b and c
    later = window(*bad, step=3.0)
    book, changes = advance(book, evaluate("edge", later, EVEN, LIMITS), 2.0)
    assert sorted((c.what, c.alert.server) for c in changes) == [("firing", s) for s in "abc"]
    quiet = window(snap("1", {"a": 0, "b": 0, "c": 0}), snap("1", {"a": 20, "b": 20, "c": 20}), step=5.0)
    # No traffic: the firing alerts are held, neither cleared nor renewed by missing evidence.
    idle = window(snap("1", {"a": 0, "b": 0, "c": 0}), snap("1", {"a": 1, "b": 0, "c": 0}), step=4.0)
    book, changes = advance(book, evaluate("edge", idle, EVEN, LIMITS), 2.0)
    assert changes == [] and len(book.firing) == 3
    book, changes = advance(book, evaluate("edge", quiet, EVEN, LIMITS), 2.0)
    assert sorted((c.what, c.alert.server) for c in changes) == [("resolved", s) for s in "abc"]
    assert book.alerts == {}
