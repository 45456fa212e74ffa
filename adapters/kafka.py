"""Kafka topics and clients, coded to the Kafka protocol only (no broker-specific calls).

Every topic is created explicitly with its partition count before anything produces to it: a
broker that auto-creates topics on a metadata request would otherwise pick its own count, and
Faust refuses tables whose changelog partitions differ from their source.
"""

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from relctl.adapters.config import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compact: bool = False  # keep the latest value per key (table changelogs)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    return [
        TopicSpec(settings.topic("control"), settings.control_partitions),
        TopicSpec(settings.topic("evaluations"), settings.evaluation_partitions),
        TopicSpec(settings.topic("alerts"), 1),
        TopicSpec(settings.topic("commands"), settings.command_partitions),
        TopicSpec(settings.topic("dlq"), 1),
        # Guard verdict changes, keyed by rollout (the control plane keeps the latest per rule).
        TopicSpec(settings.topic("verdicts"), settings.control_partitions),
        # Internal: stage-1 partial aggregates keyed by scope, co-partitioned with the guard
        # table's changelog (Faust requires equal partition counts).
        TopicSpec(settings.topic("guard-partials"), settings.evaluation_partitions),
    ]


async def existing_topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def ensure_topics(bootstrap: str, specs: list[TopicSpec], replication: int = 1) -> list[str]:
    """Create the missing topics; return the names created."""
    present = await existing_topics(bootstrap)
    missing = [spec for spec in specs if spec.name not in present]
    if not missing:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        for spec in missing:
            try:
                configs = {"cleanup.policy": "compact"} if spec.compact else {}
                await admin.create_topics([NewTopic(spec.name, spec.partitions, replication,
                                                    topic_configs=configs)])
            except TopicAlreadyExistsError:
                continue
        logger.info("created topics %s", [spec.name for spec in missing])
        return [spec.name for spec in missing]
    finally:
        await admin.close()


async def ids_at(bootstrap: str, topic: str, offsets: dict[int, int],
                 wait_seconds: float = 3.0) -> dict[int, str | None]:
    """The CloudEvents id of the record at each (partition, offset), or None if it is gone.

    Reads the records themselves rather than trusting ListOffsets: it is the one check that
    means the same on every Kafka-protocol broker.
    """
    found: dict[int, str | None] = dict.fromkeys(offsets)
    if not offsets:
        return found
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=5000)
    await consumer.start()
    try:
        tps = {p: TopicPartition(topic, p) for p in offsets}
        consumer.assign(list(tps.values()))
        for partition, offset in offsets.items():
            consumer.seek(tps[partition], offset)
        pending = set(offsets)
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while pending and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(*[tps[p] for p in pending], timeout_ms=200,
                                           max_records=1)
            for tp, records in batch.items():
                if records and tp.partition in pending:
                    record = records[0]
                    headers = dict(record.headers)
                    if record.offset == offsets[tp.partition] and "ce_id" in headers:
                        found[tp.partition] = headers["ce_id"].decode()
                    pending.discard(tp.partition)
        return found
    finally:
        await consumer.stop()


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    # enable_idempotence stays off: not every Kafka-protocol broker supports InitProducerId
    # (the embedded one does not); consumers de-duplicate on the stable CloudEvents id instead.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=2, request_timeout_ms=10000,
        max_batch_size=256 * 1024,
    )
