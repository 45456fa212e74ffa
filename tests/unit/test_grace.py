"""Evaluations of a release the control index does not know yet are held, then settled."""

from types import SimpleNamespace
from typing import Any

from relctl.streams.grace import Grace


def record(task: str, release: int) -> Any:
    return SimpleNamespace(task=task, release=release)


def test_a_release_learned_within_the_grace_period_lets_its_evaluations_through() -> None:
    grace = Grace(seconds=10)
    known: set[tuple[str, int]] = set()
    assert grace.hold(record("csat", 3), "kafka:e/0@1", now=0.0) == []
    assert grace.release(lambda t, n: (t, n) in known, now=5.0) == ([], [])
    known.add(("csat", 3))
    ready, expired = grace.release(lambda t, n: (t, n) in known, now=6.0)
    assert [(r.task, r.release) for r in ready] == [("csat", 3)]
    assert expired == []
    assert len(grace) == 0


def test_what_is_still_unknown_after_the_grace_period_expires() -> None:
    grace = Grace(seconds=10)
    grace.hold(record("csat", 9), "kafka:e/0@1", now=0.0)
    grace.hold(record("csat", 9), "kafka:e/0@2", now=8.0)
    ready, expired = grace.release(lambda t, n: False, now=10.0)
    assert ready == []
    assert [source for _, source in expired] == ["kafka:e/0@1"]
    assert len(grace) == 1


def test_overflow_dead_letters_the_oldest() -> None:
    grace = Grace(seconds=10, capacity=2)
    assert grace.hold(record("a", 1), "s1", 0.0) == []
    assert grace.hold(record("a", 1), "s2", 0.0) == []
    overflow = grace.hold(record("a", 1), "s3", 0.0)
    assert [source for _, source in overflow] == ["s1"]
    assert len(grace) == 2
