"""Whether an evaluation's ``occurred_at`` is one the guard can use.

The guard keeps windows for its retention (the longest window any rule needs); a record dated
before that can never be counted, and one dated in the future is a producer clock problem (or
a wrong timezone) that would otherwise sit in a bucket no window has reached yet. Both are
refused with a reason, never dropped silently. Clocks disagree a little: a record up to
``CLOCK_SKEW_SECONDS`` ahead of the worker's clock is counted at the worker's "now".
"""

from collections.abc import Iterable
from enum import StrEnum

CLOCK_SKEW_SECONDS = 300.0
DEFAULT_RETENTION_SECONDS = 1200.0


class TimeProblem(StrEnum):
    STALE = "stale"
    FUTURE = "future"


def retention_seconds(windows: Iterable[float], bucket_seconds: float) -> float:
    """How far back the guard keeps buckets: the longest window in use (at least the default),
    plus one bucket, because a window includes the whole bucket that holds its start."""
    return max([DEFAULT_RETENTION_SECONDS, *windows]) + bucket_seconds


def time_problem(occurred: float, now: float, retention: float,
                 skew: float = CLOCK_SKEW_SECONDS) -> TimeProblem | None:
    if occurred > now + skew:
        return TimeProblem.FUTURE
    if occurred < now - retention:
        return TimeProblem.STALE
    return None


def explain(problem: TimeProblem, occurred: float, now: float, retention: float,
            skew: float = CLOCK_SKEW_SECONDS) -> str:
    if problem is TimeProblem.FUTURE:
        return (f"occurred_at is {occurred - now:.0f}s ahead of the worker's clock; the allowed "
                f"clock skew is {skew:.0f}s")
    return (f"occurred_at is {now - occurred:.0f}s old; the guard keeps {retention:.0f}s, so "
            "it could never be counted")
