"""A small producer for evaluation pipelines written in Python.

It sends exactly what :func:`relctl.adapters.ingest.decode` reads: one binary-mode CloudEvent per
record, or one CloudEvents batch per tenant, keyed by tenant. Records are validated here first,
so a producer learns about a bad record from an exception at the call site instead of from the
DLQ later::

    async with EvaluationProducer("127.0.0.1:9092") as producer:
        await producer.send(record)
        await producer.send_batch(records)
"""

import asyncio
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from aiokafka.structs import RecordMetadata
from relctl.adapters.ingest import batch_to_kafka, to_kafka
from relctl.adapters.kafka import make_producer
from relctl.domain.evaluation import MAX_BATCH_RECORDS, EvaluationRecord

DEFAULT_TOPIC = "relctl.evaluations"
# Below the Kafka clients' and brokers' default 1 MiB message limit, with room for the headers.
MAX_MESSAGE_BYTES = 900 * 1024


def as_record(record: EvaluationRecord | Mapping[str, Any]) -> EvaluationRecord:
    """``record`` validated (raises pydantic's ValidationError, a ValueError, if it is bad)."""
    if isinstance(record, EvaluationRecord):
        return record
    return EvaluationRecord.from_mapping(record)


class EvaluationProducer:
    def __init__(self, bootstrap: str, topic: str = DEFAULT_TOPIC) -> None:
        self.topic = topic
        self._producer = make_producer(bootstrap)
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await self._producer.start()
            self._started = True

    async def stop(self) -> None:
        if self._started:
            await self._producer.stop()
            self._started = False

    async def __aenter__(self) -> "EvaluationProducer":
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if kind is None:
                await self.flush()
        finally:
            await self.stop()

    async def send(self, record: EvaluationRecord | Mapping[str, Any],
                   ) -> "asyncio.Future[RecordMetadata]":
        """Queue one record; await the returned future for the broker's acknowledgement."""
        key, value, headers = to_kafka(as_record(record))
        future: asyncio.Future[RecordMetadata] = await self._producer.send(
            self.topic, value=value, key=key, headers=headers)
        return future

    async def send_batch(self, records: Iterable[EvaluationRecord | Mapping[str, Any]],
                         ) -> list["asyncio.Future[RecordMetadata]"]:
        """Queue the records as one batch message per tenant (split only if it is too large).

        Every record is validated before anything is sent, so a bad one sends nothing.
        """
        by_tenant: dict[str, list[EvaluationRecord]] = {}
        for record in map(as_record, records):
            by_tenant.setdefault(record.tenant, []).append(record)
        futures = []
        for group in by_tenant.values():
            for start in range(0, len(group), MAX_BATCH_RECORDS):
                for key, value, headers in _messages(group[start:start + MAX_BATCH_RECORDS]):
                    futures.append(await self._producer.send(
                        self.topic, value=value, key=key, headers=headers))
        return futures

    async def flush(self) -> None:
        """Wait until every queued record has been acknowledged by the broker."""
        await self._producer.flush()


def _messages(records: list[EvaluationRecord]) -> list[tuple[bytes | None, bytes,
                                                             list[tuple[str, bytes]]]]:
    """One batch message, or halves of it until each fits MAX_MESSAGE_BYTES."""
    message = batch_to_kafka(records)
    if len(message[1]) <= MAX_MESSAGE_BYTES or len(records) == 1:
        return [message]
    middle = len(records) // 2
    return _messages(records[:middle]) + _messages(records[middle:])
