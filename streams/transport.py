"""Faust's aiokafka transport with adaptive fetch waits.

Faust hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer. On a broker that does not
answer a waiting fetch as soon as data arrives (the embedded Tansu broker holds a fetch naming
several partitions for a good part of its wait), that wait is added to every hop and the guard
reacts in seconds instead of milliseconds; a short wait on an idle worker, though, keeps the
broker answering empty fetches. This transport's worker consumer uses a short wait while
records flow and a longer one once it has been idle for a moment
(:class:`~relctl.adapters.fetch_wait.AdaptiveFetchWait`). The broker URL scheme
``relctl-kafka://`` selects it.

Its producer's ``flush`` (which Faust calls before committing offsets) makes the table changes
sent so far recoverable, which Faust's own does not quite do here, for two reasons:

- Faust's flush gives up on its send buffer after 0.1 s without a send
  (``ProducerBuffer.flush_atmost``), so under load a commit could pass changes still buffered.
- The embedded broker reports a partition's end offset as its last record batch's base offset
  + 1 (four records at offsets 196-199 end at 197), and Faust's table recovery reads the
  changelog only up to that end: the rest of the newest batch is not recovered. After a
  SIGKILL the guard then forgot a breach's start, or evidence whose input was committed.
  So each flush ends with a one-record batch (a tombstone of a key no scope uses) on every
  changelog partition written since the last flush: whatever was acked before it lies below
  the end offset the broker reports.
"""

import asyncio
from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers.aiokafka import (
    AIOKafkaConsumerThread,
    Consumer,
    Producer,
    Transport,
)
from relctl.adapters.fetch_wait import QUIET_WAIT_MS, AdaptiveFetchWait, Quiet

SCHEME = "relctl-kafka"


class LowLatencyConsumerThread(AIOKafkaConsumerThread):
    fetch_max_wait_ms = 10
    fetch_idle_wait_ms = 10
    quiet: Quiet | None = None
    fetch_quiet_wait_ms = QUIET_WAIT_MS

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms  # read by aiokafka at start()
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        AdaptiveFetchWait(self.fetch_max_wait_ms, self.fetch_idle_wait_ms,
                          name="worker", quiet=self.quiet,
                          quiet_ms=self.fetch_quiet_wait_ms).install(self._consumer)


class LowLatencyConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return LowLatencyConsumerThread(self, loop=self.loop, beacon=self.beacon)


# The key of the marker that closes each flushed changelog partition (its value is None: Faust
# deletes the key on recovery, and no guard scope starts with it).
FLUSH_MARKER = b"\x00relctl-flushed"


class DurableFlushProducer(Producer):
    """Faust's producer, whose ``flush`` returns once every table change sent so far is acked
    and below the end offset a recovery will read to."""

    def send_soon(self, fut: Any) -> None:
        # Table changes (changelog records) come through here; keep each until it is acked.
        unsent: set[Any] = self.__dict__.setdefault("_unsent", set())
        unsent.add(fut)
        fut.add_done_callback(unsent.discard)
        message = fut.message
        if message.partition is not None:
            written: set[tuple[str, int]] = self.__dict__.setdefault("_written", set())
            written.add((message.channel.get_topic_name(), message.partition))
        super().send_soon(fut)

    async def flush(self) -> None:
        while self.buffer.size:  # one pass of Faust's flush may leave some behind
            await self.buffer.flush()
        unsent = list(self.__dict__.get("_unsent", ()))
        if unsent:  # taken off the buffer, possibly not yet handed to aiokafka
            await asyncio.wait(unsent)
        await super().flush()
        written: set[tuple[str, int]] = self.__dict__.get("_written", set())
        self.__dict__["_written"] = set()
        for topic, partition in sorted(written):
            await self.send_and_wait(topic, FLUSH_MARKER, None, partition, None, None)


class LowLatencyTransport(Transport):
    Consumer = LowLatencyConsumer
    Producer = DurableFlushProducer
    default_port = 9092
    driver_version = Transport.driver_version


def register(fetch_max_wait_ms: int = 10, fetch_idle_wait_ms: int | None = None,
             quiet: Quiet | None = None, fetch_quiet_wait_ms: int = QUIET_WAIT_MS) -> str:
    """Make ``relctl-kafka://`` resolve to this transport; returns the scheme.

    ``fetch_max_wait_ms`` is the wait while records flow, ``fetch_idle_wait_ms`` (default: the
    same) the wait once the worker has been idle; see the README's "Idle CPU" for what each
    costs in latency and CPU. With ``quiet`` the idle worker waits longer still while no
    rollout is guarded."""
    LowLatencyConsumerThread.quiet = quiet
    LowLatencyConsumerThread.fetch_quiet_wait_ms = fetch_quiet_wait_ms
    LowLatencyConsumerThread.fetch_max_wait_ms = fetch_max_wait_ms
    LowLatencyConsumerThread.fetch_idle_wait_ms = fetch_idle_wait_ms or fetch_max_wait_ms
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:LowLatencyTransport"
    return SCHEME
