"""Reading topics back in tests, with the real aiokafka client."""

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from relctl.adapters import cloudevents


async def _records(bootstrap: str, topic: str, partitions: int, minimum: int,
                   wait_seconds: float) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[Any] = []
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                found += records
            if len(found) >= minimum and not batch:
                break
        return found
    finally:
        await consumer.stop()


def read_records(bootstrap: str, topic: str, partitions: int, minimum: int,
                 timeout: float = 20.0) -> list[Any]:
    """Every record of ``topic`` (aiokafka ConsumerRecords), once at least ``minimum`` came."""
    return asyncio.run(_records(bootstrap, topic, partitions, minimum, timeout))


def read_topic(bootstrap: str, topic: str, partitions: int, minimum: int,
               timeout: float = 20.0, raw: bool = False) -> list[dict[str, Any]]:
    """Every record of ``topic`` as CloudEvents dicts (or, ``raw``, headers plus ``_value``),
    once at least ``minimum`` have arrived."""
    result = []
    for record in read_records(bootstrap, topic, partitions, minimum, timeout):
        if raw:
            env: dict[str, Any] = {k: v.decode(errors="replace") for k, v in record.headers}
            env["_value"] = record.value
        else:
            env = cloudevents.from_kafka(record.headers, record.value)
        env["_key"] = record.key.decode() if record.key else None
        env["_partition"] = record.partition
        env["_offset"] = record.offset
        result.append(env)
    return result


def first_seen_ids_by_key(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Per aggregate (Kafka key), the event ids in the order first seen (duplicates dropped)."""
    by_key: dict[str, list[str]] = {}
    for record in records:
        ids = by_key.setdefault(record["_key"], [])
        if record["id"] not in ids:
            ids.append(record["id"])
    return by_key
