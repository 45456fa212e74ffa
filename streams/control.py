"""The control follower: every worker reads all of ``relctl.control`` into its ControlIndex.

It assigns itself every partition (no consumer group: each worker needs the whole log), reads
from the beginning, and sets ``ready`` once it has caught up, so the agents start judging only
with a complete index. When the index learns a guarded rollout (started, advanced, resumed) the
follower calls ``on_learned`` with its task, so that rollout is judged at once: evaluations that
reached the worker before the rollout did are then decided without waiting for more traffic or
for the next guard tick. A broker outage restarts the consumer; re-reading from the start is
harmless because the index skips events it has already applied.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from relctl.adapters import cloudevents
from relctl.adapters.config import Settings
from relctl.adapters.fetch_wait import AdaptiveFetchWait, Quiet
from relctl.adapters.retrying import fixed, retry_forever
from relctl.streams.control_index import ControlIndex
from relctl.streams.metrics import CONTROL_EVENTS, CONTROL_MALFORMED, ROLLOUT_STATE, STATE_CODE

logger = logging.getLogger(__name__)
# The follower's fetch wait while control events flow, and once idle. Not on the decision path
# (a decision is judged from stage-2 state); a rollout just started is learned, and judged by
# the learn hook, within about the idle wait on a broker that holds fetches.
BUSY_WAIT_MS = 50
IDLE_WAIT_MS = 250


OnLearned = Callable[[list[str]], Awaitable[None]]


async def _nothing(_: list[str]) -> None:
    return None


class ControlFollower:
    def __init__(self, settings: Settings, index: ControlIndex,
                 on_learned: OnLearned = _nothing, quiet: Quiet | None = None) -> None:
        self.settings = settings
        self.index = index
        self.on_learned = on_learned
        self.quiet = quiet  # told, after each fetch, whether any rollout is guarded
        self.ready = asyncio.Event()

    async def follow(self) -> None:
        """Follow all of relctl.control for the life of the worker; a broker outage restarts
        the consumer (re-reading from the start is harmless: events are de-duplicated)."""
        def restarting(exc: BaseException, _: float) -> None:
            logger.warning("control follower restarting after: %r", exc)

        # The guard must outlive a broker restart: retried every second, for ever (a
        # cancellation is not an error and ends it).
        await retry_forever(self.read, fixed(1.0), None, restarting)

    async def read(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    fetch_max_wait_ms=BUSY_WAIT_MS)
        await consumer.start()
        try:
            AdaptiveFetchWait(BUSY_WAIT_MS, IDLE_WAIT_MS, name="control").install(consumer)
            topic = self.settings.topic("control")
            tps = [TopicPartition(topic, p) for p in range(self.settings.control_partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batch = await consumer.getmany(timeout_ms=IDLE_WAIT_MS)
                for records in batch.values():
                    for record in records:
                        self.apply(record)
                CONTROL_EVENTS.set(self.index.applied)
                if self.quiet is not None:
                    self.quiet.note(self.index.any_guarded() or not self.ready.is_set())
                if not batch and not self.ready.is_set():
                    logger.info("control index caught up: %d events", self.index.applied)
                    self.ready.set()
                await self._judge_learned()
        finally:
            await consumer.stop()

    async def _judge_learned(self) -> None:
        """Have the rollouts the index just learned judged now (once caught up: before that
        the agents do not judge, and what was learned meanwhile is judged when it is ready)."""
        if not self.ready.is_set():
            return
        learned = self.index.take_learned()
        if learned:
            await self.on_learned(learned)

    def apply(self, record: Any) -> None:
        """Apply one control record; a malformed one is counted and skipped, never fatal
        (every worker re-reads the topic from the start, so a crash here would repeat)."""
        try:
            envelope = cloudevents.from_kafka(record.headers, record.value)
            if not self.index.apply(envelope):
                return
        except Exception as exc:  # one bad record must not blind the guard
            CONTROL_MALFORMED.inc()
            logger.warning("skipped malformed control record at %s/%s: %s", record.partition,
                           record.offset, exc)
            return
        rollout = self.index.rollouts.get(str(envelope.get("subject")))
        if rollout is not None:
            ROLLOUT_STATE.labels(rollout.id).set(STATE_CODE[rollout.state])
