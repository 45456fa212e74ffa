"""The relay: every stored control event, in store order, onto ``relctl.control``.

The event store is the source of truth; Kafka is transport. The relay reads the notification
log after its confirmed position, produces a batch, waits until the broker has acknowledged all
of it, and only then records the new position. A crash therefore loses nothing and duplicates at
most the last unconfirmed batch, with the same CloudEvents ids.

A broker that comes back empty (the embedded broker keeps topics in memory) is detected by
reading back, on each partition, the last record the broker acknowledged to this relay: on a
healthy broker it is still there at the same offset with the same event id. If it is gone, the
log was lost, and the relay recreates the topics and republishes from the start of the store.
(Reading records, not ListOffsets, because the embedded broker's end offsets are unreliable.)
"""

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge
from relctl.adapters import cloudevents
from relctl.adapters.config import Settings
from relctl.adapters.kafka import ensure_topics, existing_topics, ids_at, make_producer, topic_specs
from relctl.adapters.postgres import RelayPositions
from relctl.adapters.retrying import backoff, retry_forever
from relctl.application.service import ControlPlane

logger = logging.getLogger(__name__)

PUBLISHED = Counter("relctl_relay_events_published_total", "Control events confirmed by the broker")
REPUBLISHES = Counter("relctl_relay_republish_total", "Times the relay found the broker empty")
FAILURES = Counter("relctl_relay_failures_total", "Relay batches that failed and were retried")
POSITION = Gauge("relctl_relay_position", "Last notification id confirmed by the broker")
BROKER_ERRORS = (KafkaError, OSError, TimeoutError)


class Relay:
    def __init__(self, app: ControlPlane, positions: RelayPositions, settings: Settings,
                 name: str = "control") -> None:
        assert settings.kafka_bootstrap, "the relay needs a broker"
        self.app = app
        self.positions = positions
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap
        self.name = name
        self.topic = settings.topic("control")
        self.position, self.published, self.marks = positions.load_all(name)
        self.broker_ok = False
        self.republishes = 0
        self._wake = asyncio.Event()
        self._producer: Any = None
        self._next_check = 0.0

    def wake(self) -> None:
        """Called when new events were stored, so the relay need not wait for its poll."""
        self._wake.set()

    async def _start_producer(self) -> None:
        self._producer = make_producer(self.bootstrap)
        await self._producer.start()

    async def _stop_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    async def check_broker(self) -> bool:
        """Return True (after resetting the position) when the broker lost the control log."""
        present = await existing_topics(self.bootstrap)
        specs = topic_specs(self.settings)
        if self.topic in present:
            found = await ids_at(self.bootstrap, self.topic,
                                 {p: mark[0] for p, mark in self.marks.items()})
            lost = any(found[p] != mark[1] for p, mark in self.marks.items())
        else:
            lost = self.published > 0
        await ensure_topics(self.bootstrap, specs)
        if lost:
            logger.warning("broker lost %s (had %d confirmed events); republishing from the store",
                           self.topic, self.published)
            REPUBLISHES.inc()
            self.republishes += 1
            self.position, self.published, self.marks = 0, 0, {}
            await asyncio.to_thread(self.positions.save, self.name, 0, 0, {})
        return lost

    async def publish_batch(self) -> int:
        """Publish the next batch after the confirmed position; return how many were sent."""
        notifications = await asyncio.to_thread(
            self.app.recorder.select_notifications,
            start=self.position + 1, limit=self.settings.relay_batch_size,
        )
        if not notifications:
            return 0
        futures, ids = [], []
        for notification in notifications:
            domain_event = self.app.mapper.to_domain_event(notification)
            key, value, headers = cloudevents.to_kafka(domain_event, notification.id)
            ids.append(dict(headers)["ce_id"].decode())
            futures.append(await self._producer.send(self.topic, value=value, key=key,
                                                     headers=headers))
        acknowledged = await asyncio.gather(*futures)
        for event_id, metadata in zip(ids, acknowledged, strict=True):
            self.marks[metadata.partition] = (metadata.offset, event_id)
        self.position = notifications[-1].id
        self.published += len(notifications)
        await asyncio.to_thread(self.positions.save, self.name, self.position, self.published,
                                dict(self.marks))
        PUBLISHED.inc(len(notifications))
        POSITION.set(self.position)
        return len(notifications)

    async def _step(self) -> None:
        """One round: (re)connect, check the broker when due, publish a batch or idle briefly.
        A broker error drops the producer and forces a broker check on the next round."""
        try:
            if self._producer is None:
                await self._start_producer()
            if time.monotonic() >= self._next_check:
                await self.check_broker()
                self._next_check = time.monotonic() + self.settings.relay_check_interval
            self.broker_ok = True
            sent = await self.publish_batch()
        except BROKER_ERRORS:
            self.broker_ok = False
            FAILURES.inc()
            await self._stop_producer()
            self._next_check = 0.0
            raise
        except Exception:
            FAILURES.inc()
            raise
        if sent == 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.25)

    @staticmethod
    def _on_retry(exc: BaseException, wait: float) -> None:
        if isinstance(exc, BROKER_ERRORS):
            logger.warning("relay batch failed (%s); retrying in %.1fs", exc, wait)
        else:
            logger.error("relay failed; retrying in %.1fs", wait, exc_info=exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set, surviving broker and database outages: each round is
        retried with a backoff of 0.2 s doubling to 5 s, which starts afresh after a round
        succeeds."""
        self._next_check = 0.0
        while not stop.is_set():
            await retry_forever(self._step, backoff(0.2, 5.0), stop, self._on_retry)
        await self._stop_producer()
