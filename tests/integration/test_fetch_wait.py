"""Adaptive fetch waits on a real aiokafka consumer against the real broker."""

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from relctl.adapters.fetch_wait import AdaptiveFetchWait
from relctl.adapters.kafka import TopicSpec, ensure_topics, make_producer
from relctl.infra.embedded import EmbeddedBroker

pytestmark = pytest.mark.integration


async def test_the_hooked_fetcher_delivers_and_follows_the_traffic(
    broker: EmbeddedBroker, unique: str,
) -> None:
    topic = f"fetch-wait-{unique}"
    await ensure_topics(broker.bootstrap, [TopicSpec(topic, 4)])
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, fetch_max_wait_ms=10)
    producer = make_producer(broker.bootstrap)
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(4)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        wait = AdaptiveFetchWait(10, 300, linger=0.2)
        wait.install(consumer)
        fetcher = consumer._fetcher
        await consumer.getmany(timeout_ms=700)  # nothing there: idle
        assert fetcher._fetch_max_wait_ms == 300
        await producer.send_and_wait(topic, b"one", partition=2)
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
        assert record.value == b"one"
        assert wait.wait_ms() == 10, "records flowed: the next fetches wait briefly"
        await producer.send_and_wait(topic, b"two", partition=0)
        assert (await asyncio.wait_for(consumer.getone(), timeout=30)).value == b"two"
    finally:
        await consumer.stop()
        await producer.stop()
