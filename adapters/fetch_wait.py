"""Adaptive fetch waits: short while records flow, long once a consumer has been idle a while.

A Kafka fetch names a maximum wait (``fetch_max_wait_ms``): how long the broker may hold the
request while it has no data. Apache Kafka answers as soon as data arrives, so a long wait costs
nothing; the embedded Tansu broker (measured, ``bench/bench_latency.py`` and the README's
"Idle CPU") answers a fetch that names **one** partition as soon as data arrives too, but holds
a fetch that names several partitions for a good part of its wait (with a 100 ms wait, data on
one of four partitions came back after 15 ms median and up to 71 ms; with 500 ms, 57 ms median
and up to 460 ms). Every empty fetch costs both sides CPU, about 0.05 % of a core per fetch/s
on the broker alone, so a 10 ms wait on an idle consumer keeps the broker busy answering
~100 empty fetches per second.

:class:`AdaptiveFetchWait` switches one consumer between the two: ``busy_ms`` while its fetches
return records (and for ``linger`` seconds after the last one), ``idle_ms`` afterwards, or
``quiet_ms`` (long) once nothing has been guarded for a while (:class:`Quiet`: no decision
can come), or ``single_idle_ms`` while the consumer is assigned exactly one partition (its
fetches then name one partition, which brokers answer as soon as data arrives: the wait costs
no latency; but see the README's "Idle CPU": measured on Tansu 0.6 in a group of four members,
a 1,000 ms wait delivered a record 219 ms after its acknowledgement at the median). It hooks
aiokafka's fetcher (``Fetcher._proc_fetch_request``, which returns whether a response carried
records, and ``Fetcher._fetch_max_wait_ms``, read for every request it builds): private names of
the pinned aiokafka 0.14, checked at install time so a change fails loudly instead of silently
falling back to one wait.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter

logger = logging.getLogger(__name__)

FETCHES = Counter("relctl_kafka_fetches_total",
                  "Fetch responses per consumer, with records or empty (an idle consumer's empty "
                  "fetches are what it costs the broker)", ["consumer", "records"])

# The wait while records flow: every hop of a decision pays at most about this on a broker that
# holds fetches.
BUSY_WAIT_MS = 10
# How long a consumer keeps the busy wait after its last records: longer than the gap between
# the records of one burst, shorter than the guard tick (1 s), so a tick alone does not keep an
# idle worker on the busy wait.
LINGER_SECONDS = 0.5
# The wait of an idle consumer while nothing can be decided (``RELCTL_FETCH_QUIET_WAIT_MS``
# sets it; as low as the idle wait turns it off): no rollout has been guarded for
# QUIET_AFTER_SECONDS (see :class:`Quiet`). Decisions need a guarded rollout, so on the
# decision path this costs latency only to a decision taken within about this long after the
# first rollout of a quiet spell started; a platform alert's first record after a quiet spell
# is seen up to this much later. One empty fetch per second per consumer instead of ~20.
QUIET_WAIT_MS = 1000
QUIET_AFTER_SECONDS = 5.0


class Quiet:
    """Whether nothing has been guarded for a while (``note`` it each time it is looked at).

    Read from the consumer's fetch loop, possibly in another thread (Faust's consumer thread):
    a float written and read whole."""

    def __init__(self, after: float = QUIET_AFTER_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.after = after
        self.clock = clock
        self.told = False  # never quiet before the first note (the watcher may be starting)
        self.last_guarded = clock()

    def note(self, guarded: bool) -> None:
        if guarded or not self.told:
            self.last_guarded = self.clock()
        self.told = True

    def __call__(self) -> bool:
        return self.told and self.clock() - self.last_guarded >= self.after


class AdaptiveFetchWait:
    """Short fetch waits while a consumer receives records, long ones while it is idle."""

    def __init__(self, busy_ms: int, idle_ms: int, linger: float = LINGER_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 single_idle_ms: int | None = None, name: str = "consumer",
                 quiet: Quiet | None = None, quiet_ms: int = QUIET_WAIT_MS) -> None:
        self.name = name
        self.quiet = quiet
        self.quiet_ms = max(quiet_ms, idle_ms)
        self.busy_ms = busy_ms
        self.idle_ms = max(idle_ms, busy_ms)
        self.single_idle_ms = max(single_idle_ms or self.idle_ms, self.idle_ms)
        self.linger = linger
        self.clock = clock
        self.last_records = float("-inf")

    def wait_ms(self, partitions: int = 0) -> int:
        """The wait the next fetch should name, for a consumer of ``partitions`` partitions."""
        if self.clock() - self.last_records < self.linger:
            return self.busy_ms
        if self.quiet is not None and self.quiet():
            return self.quiet_ms
        return self.single_idle_ms if partitions == 1 else self.idle_ms

    def saw(self, records: bool, partitions: int = 0) -> int:
        """A fetch came back (with records or not); returns the wait for the next one."""
        if records:
            self.last_records = self.clock()
        return self.wait_ms(partitions)

    def install(self, consumer: Any) -> None:
        """Hook a started ``AIOKafkaConsumer`` (its fetcher exists only after ``start()``)."""
        fetcher = getattr(consumer, "_fetcher", None)
        original: Callable[..., Awaitable[bool]] | None = getattr(
            fetcher, "_proc_fetch_request", None)
        if fetcher is None or original is None or not hasattr(fetcher, "_fetch_max_wait_ms"):
            raise RuntimeError("aiokafka's fetcher changed: adaptive fetch waits need "
                               "Fetcher._proc_fetch_request and _fetch_max_wait_ms")

        with_records, empty = FETCHES.labels(self.name, "yes"), FETCHES.labels(self.name, "no")

        async def fetch(*args: Any, **kwargs: Any) -> bool:
            got = await original(*args, **kwargs)
            (with_records if got else empty).inc()
            fetcher._fetch_max_wait_ms = self.saw(bool(got), len(consumer.assignment()))
            return got

        fetcher._fetch_max_wait_ms = self.wait_ms(len(consumer.assignment()))
        fetcher._proc_fetch_request = fetch
