"""Adaptive fetch waits: short while records flow, long once idle (the policy alone)."""

from relctl.adapters.fetch_wait import AdaptiveFetchWait


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_consumer_starts_idle_and_waits_long() -> None:
    assert AdaptiveFetchWait(10, 500, clock=Clock()).wait_ms() == 500


def test_records_switch_to_the_short_wait_until_the_linger_passes() -> None:
    clock = Clock()
    wait = AdaptiveFetchWait(10, 500, linger=0.5, clock=clock)
    assert wait.saw(records=True) == 10
    clock.now += 0.4
    assert wait.saw(records=False) == 10, "an empty fetch inside the linger stays short"
    clock.now += 0.2
    assert wait.saw(records=False) == 500
    assert wait.saw(records=True) == 10


def test_the_idle_wait_is_never_shorter_than_the_busy_one() -> None:
    assert AdaptiveFetchWait(50, 10, clock=Clock()).wait_ms() == 50


def test_a_single_partition_consumer_may_wait_longer_once_idle() -> None:
    clock = Clock()
    wait = AdaptiveFetchWait(10, 50, linger=0.5, clock=clock, single_idle_ms=1000)
    assert wait.wait_ms(partitions=1) == 1000
    assert wait.wait_ms(partitions=2) == 50, "a fetch naming several partitions may be held"
    assert wait.saw(records=True, partitions=1) == 10
