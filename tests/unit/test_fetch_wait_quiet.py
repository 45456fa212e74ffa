"""Quiet fetch waits: while no rollout has been guarded for a while, no decision can come, so an
idle consumer fetches rarely; records, or a guarded rollout, bring the short waits back."""

from relctl.adapters.fetch_wait import AdaptiveFetchWait, Quiet
from relctl.streams.control_index import ControlIndex


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_quiet_only_once_nothing_was_guarded_for_a_while() -> None:
    clock = Clock()
    quiet = Quiet(after=5.0, clock=clock)
    clock.now += 60.0
    assert not quiet(), "never quiet before the watcher said anything"
    quiet.note(False)
    assert not quiet(), "the first note starts the 5 s"
    clock.now += 5.0
    assert quiet()
    quiet.note(True)
    assert not quiet()
    clock.now += 4.9
    quiet.note(False)
    assert not quiet()
    clock.now += 0.1
    assert quiet()


def test_an_idle_consumer_waits_long_while_quiet() -> None:
    clock = Clock()
    quiet = Quiet(after=5.0, clock=clock)
    wait = AdaptiveFetchWait(10, 50, linger=0.5, clock=clock, single_idle_ms=50, quiet=quiet,
                             quiet_ms=1000)
    quiet.note(False)
    assert wait.wait_ms(partitions=1) == 50
    clock.now += 5.0
    assert wait.wait_ms(partitions=1) == 1000 and wait.wait_ms(partitions=4) == 1000
    assert wait.saw(records=True) == 10, "records flowing: short waits, quiet or not"
    clock.now += 0.6
    assert wait.saw(records=False) == 1000
    quiet.note(True)
    assert wait.wait_ms() == 50, "a rollout is guarded again: back to the idle wait"


def test_the_quiet_wait_is_never_shorter_than_the_idle_one() -> None:
    clock = Clock()
    quiet = Quiet(after=0.0, clock=clock)
    quiet.note(False)
    assert AdaptiveFetchWait(10, 500, clock=clock, quiet=quiet, quiet_ms=100).wait_ms() == 500


def test_the_index_says_whether_anything_is_guarded() -> None:
    assert ControlIndex().any_guarded() is False


def test_a_running_rollout_is_guarded() -> None:
    from tests.unit.stream_support import Control

    control = Control()
    control.running()
    assert control.index.any_guarded() is True
