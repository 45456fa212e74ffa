"""A short grace period for evaluations of releases the worker's control index does not know.

A producer can run a release moments after it was created, and its evaluations can reach the
worker before the control event that admitted the release does. Rejecting them at once would
send good evaluations to the dead-letter topic; holding them briefly lets the control index
catch up. Only what is still unknown after the grace period is dead-lettered.
"""

from collections import deque
from collections.abc import Callable
from typing import Any

GRACE_SECONDS = 10.0
CAPACITY = 10_000


class Grace:
    def __init__(self, seconds: float = GRACE_SECONDS, capacity: int = CAPACITY) -> None:
        self.seconds = seconds
        self.capacity = capacity
        self.held: deque[tuple[float, Any, str]] = deque()

    def __len__(self) -> int:
        return len(self.held)

    def hold(self, record: Any, source: str, now: float) -> list[tuple[Any, str]]:
        """Hold one record; returns what overflowed (oldest first), to be dead-lettered."""
        self.held.append((now, record, source))
        overflow = []
        while len(self.held) > self.capacity:
            _, old, old_source = self.held.popleft()
            overflow.append((old, old_source))
        return overflow

    def release(self, known: Callable[[str, int], bool],
                now: float) -> tuple[list[Any], list[tuple[Any, str]]]:
        """(records whose release is now known, (record, source) pairs whose grace expired)."""
        ready: list[Any] = []
        expired: list[tuple[Any, str]] = []
        keep: deque[tuple[float, Any, str]] = deque()
        for since, record, source in self.held:
            if known(record.task, record.release):
                ready.append(record)
            elif now - since >= self.seconds:
                expired.append((record, source))
            else:
                keep.append((since, record, source))
        self.held = keep
        return ready, expired
