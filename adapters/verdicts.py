"""The latest guard verdict per (rollout, rule), kept in PostgreSQL from ``relctl.verdicts``.

Stage 2 publishes a :class:`~relctl.domain.verdicts.RuleVerdict` whenever a rule's verdict
changes. The control plane's :class:`VerdictConsumer` folds them into ``relctl_rule_verdicts``
and writes the next Kafka offset of each partition into ``relctl_verdict_offsets`` in the same
transaction, then resumes from those offsets (no consumer group): a restart neither loses a
change nor applies one twice. ``changes`` counts the records applied per rule, which makes a
doubled record visible. :class:`VerdictBoard` is what the API reads (``latest``).
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pydantic
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Counter
from psycopg.types.json import Jsonb
from relctl.adapters.config import Settings
from relctl.adapters.postgres import Database
from relctl.adapters.retrying import fixed, retry_forever
from relctl.domain.verdicts import RuleVerdict

logger = logging.getLogger(__name__)
# Verdicts are for people and the API, not on the decision path: a long fetch wait keeps the
# idle consumer from costing the broker ~100 empty fetches a second (a change can then take up
# to about this long to show on a broker that holds fetches).
FETCH_WAIT_MS = 500

APPLIED = Counter("relctl_verdict_records_total", "Verdict records read from relctl.verdicts",
                  ["result"])

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS relctl_rule_verdicts ("
    " rollout_id text NOT NULL, rule text NOT NULL, verdict jsonb NOT NULL,"
    " at timestamptz NOT NULL, changes bigint NOT NULL DEFAULT 1,"
    " updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (rollout_id, rule));"
    "CREATE TABLE IF NOT EXISTS relctl_verdict_offsets ("
    " topic text NOT NULL, partition integer NOT NULL, next_offset bigint NOT NULL,"
    " PRIMARY KEY (topic, partition))"
)
# A record from a worker that judged earlier (two workers around a rebalance) never replaces a
# newer verdict; it still counts as applied.
_UPSERT = (
    "INSERT INTO relctl_rule_verdicts AS v (rollout_id, rule, verdict, at)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (rollout_id, rule) DO UPDATE SET"
    " verdict = CASE WHEN excluded.at >= v.at THEN excluded.verdict ELSE v.verdict END,"
    " at = GREATEST(excluded.at, v.at), changes = v.changes + 1, updated_at = now()"
)
_POSITION = (
    "INSERT INTO relctl_verdict_offsets (topic, partition, next_offset) VALUES (%s, %s, %s)"
    " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset"
)


@dataclass(frozen=True)
class VerdictRecord:
    """One record of ``relctl.verdicts`` as read from Kafka."""

    partition: int
    offset: int
    value: bytes


class VerdictBoard:
    """The verdict table: apply records with their offsets atomically, read the latest."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.execute(_SCHEMA)

    def positions(self, topic: str) -> dict[int, int]:
        """The next offset to read, per partition of ``topic`` (absent: from the start)."""
        rows = self.db.execute(
            "SELECT partition, next_offset FROM relctl_verdict_offsets WHERE topic = %s",
            (topic,))
        return {int(r["partition"]): int(r["next_offset"]) for r in rows}

    def apply(self, topic: str, records: list[VerdictRecord]) -> int:
        """Fold ``records`` in and advance the offsets, in one transaction; a record that is
        not a verdict is skipped (counted, logged) but its offset still advances. Returns how
        many verdicts were applied."""
        if not records:
            return 0
        applied = 0
        with self.db.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            for record in records:
                try:
                    verdict = RuleVerdict.model_validate_json(record.value)
                except pydantic.ValidationError as exc:
                    APPLIED.labels("malformed").inc()
                    logger.warning("skipped malformed verdict at %s/%s@%s: %s", topic,
                                   record.partition, record.offset, exc)
                    continue
                cur.execute(_UPSERT, (verdict.rollout_id, verdict.rule,
                                      Jsonb(verdict.model_dump(mode="json")),
                                      datetime.fromisoformat(verdict.at)))
                applied += 1
            last: dict[int, int] = {}
            for record in records:
                last[record.partition] = max(last.get(record.partition, -1), record.offset)
            for partition, offset in last.items():
                cur.execute(_POSITION, (topic, partition, offset + 1))
        APPLIED.labels("applied").inc(applied)
        return applied

    def latest(self, rollout_id: str, now: datetime | None = None) -> list[RuleVerdict]:
        """The latest verdict of each rule of the rollout, by rule name; a Pending verdict's
        ``time_left_seconds`` is counted from ``now`` (default: the current time)."""
        rows = self.db.execute(
            "SELECT verdict FROM relctl_rule_verdicts WHERE rollout_id = %s ORDER BY rule",
            (str(rollout_id),))
        moment = now or datetime.now(UTC)
        return [RuleVerdict.model_validate(r["verdict"]).as_of(moment) for r in rows]

    def changes(self, rollout_id: str) -> dict[str, int]:
        """How many verdict records were applied per rule of the rollout."""
        rows = self.db.execute(
            "SELECT rule, changes FROM relctl_rule_verdicts WHERE rollout_id = %s",
            (str(rollout_id),))
        return {str(r["rule"]): int(r["changes"]) for r in rows}


class VerdictConsumer:
    """Reads every partition of ``relctl.verdicts`` into a :class:`VerdictBoard`."""

    def __init__(self, board: VerdictBoard, settings: Settings) -> None:
        assert settings.kafka_bootstrap
        self.board = board
        self.settings = settings
        self.topic = settings.topic("verdicts")

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``; a failed session restarts after 1 s from the stored
        offsets (nothing read but not yet applied is lost)."""

        def restarting(exc: BaseException, _: float) -> None:
            logger.warning("verdict consumer restarting after: %r", exc)

        await retry_forever(lambda: self._session(stop), fixed(1.0), stop, restarting)

    async def _session(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_WAIT_MS)
        try:
            await consumer.start()
            tps = [TopicPartition(self.topic, p)
                   for p in range(self.settings.control_partitions)]
            consumer.assign(tps)
            positions = await asyncio.to_thread(self.board.positions, self.topic)
            for tp in tps:
                if tp.partition in positions:
                    consumer.seek(tp, positions[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=FETCH_WAIT_MS)
                records = [VerdictRecord(r.partition, r.offset, r.value or b"")
                           for rs in batch.values() for r in rs]
                if records:
                    await asyncio.to_thread(self.board.apply, self.topic, records)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()


def verdicts_json(verdicts: list[RuleVerdict]) -> list[dict[str, Any]]:
    """The API's ``verdicts`` field of a rollout."""
    return [v.model_dump(mode="json") for v in verdicts]
