"""The alerts read model: every record of ``relctl.alerts`` in PostgreSQL, exactly once.

A plain Kafka consumer (aiokafka, no consumer group, no offset commits) assigns itself every
partition of the topic and starts each at the offset stored in ``relctl_rm_alert_offsets``. Each
batch's rows and the partitions' next offsets are written in one PostgreSQL transaction, after
locking the offset rows (``FOR UPDATE``): a crash loses only the uncommitted batch, which is read
again from the stored offsets, and a second projector waits on the lock and then skips what the
first one committed. Rows are keyed by the record's CloudEvents id, which the guard keeps stable
across re-sends, so an alert a restarted worker publishes again is kept once.

Reads join each alert with the automatic decision the event store recorded for it
(``relctl_rm_rollout_transitions``, kept by the rollouts projection): a decision alert by its
decision id, a guard rule's fired alert by its rollout and rule.
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import sql
from psycopg.types.json import Jsonb
from relctl.adapters.kafka import ids_at
from relctl.adapters.postgres import Database
from relctl.domain.alert_history import AlertEntry, AlertRow, DecisionLink, alert_row
from relctl.domain.errors import ValidationError

logger = logging.getLogger(__name__)

TABLES = ("relctl_rm_alerts", "relctl_rm_alert_offsets")
DDL = (
    "CREATE TABLE IF NOT EXISTS relctl_rm_alerts ("
    " id text PRIMARY KEY, kind text NOT NULL, scope text NOT NULL, rule text,"
    " severity text, task text, release int, rollout_id text, decision_id text, action text,"
    " at timestamptz NOT NULL, body jsonb NOT NULL,"
    " topic text NOT NULL, partition int NOT NULL, \"offset\" bigint NOT NULL)",
    "CREATE INDEX IF NOT EXISTS relctl_rm_alerts_at ON relctl_rm_alerts (at)",
    "CREATE TABLE IF NOT EXISTS relctl_rm_alert_offsets ("
    " topic text NOT NULL, partition int NOT NULL, next_offset bigint NOT NULL,"
    " last_id text, PRIMARY KEY (topic, partition))",
)
BATCH = 2000


class Stopper(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Record:
    """What the projection needs of one consumed record."""

    partition: int
    offset: int
    timestamp_ms: int
    ce_id: str | None
    value: bytes


class AlertProjector:
    """Follows one alerts topic into the read model of one relctl schema."""

    def __init__(self, database_url: str, schema: str, bootstrap: str, topic: str,
                 batch_size: int = BATCH) -> None:
        self.url, self.schema, self.bootstrap, self.topic = database_url, schema, bootstrap, topic
        self.batch_size = batch_size
        self.conn: psycopg.Connection[Any] | None = None
        self.skipped = 0  # records that were not alerts (their offsets still advance)

    # ---- PostgreSQL ----------------------------------------------------------------------

    def _db(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.url, options=f"-c search_path={self.schema}",
                                        connect_timeout=5, autocommit=True)
            self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(self.schema)))
            with self.conn.transaction():
                self.conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.rm-alerts'))")
                for statement in DDL:
                    self.conn.execute(statement)  # type: ignore[arg-type]
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def stored_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        conn = self._db()
        with conn.transaction():
            for partition in partitions:
                conn.execute("INSERT INTO relctl_rm_alert_offsets VALUES (%s, %s, 0, NULL) "
                             "ON CONFLICT DO NOTHING", (self.topic, partition))
        rows = conn.execute("SELECT partition, next_offset FROM relctl_rm_alert_offsets "
                            "WHERE topic = %s", (self.topic,)).fetchall()
        return {int(p): int(o) for p, o in rows}

    def write(self, records: Sequence[Record]) -> dict[int, int]:
        """Store a batch and its partitions' next offsets in one transaction; return the stored
        offsets after it (another projector may have been further ahead)."""
        conn = self._db()
        with conn.transaction():
            stored = {int(p): int(o) for p, o in conn.execute(
                "SELECT partition, next_offset FROM relctl_rm_alert_offsets WHERE topic = %s "
                "FOR UPDATE", (self.topic,)).fetchall()}
            fresh = [r for r in records if r.offset >= stored.get(r.partition, 0)]
            rows = []
            for record in fresh:
                row = self._row(record)
                if row is not None:
                    rows.append((row.id, row.kind, row.scope, row.rule, row.severity, row.task,
                                 row.release, row.rollout_id, row.decision_id, row.action,
                                 row.at, Jsonb(row.body), self.topic, record.partition,
                                 record.offset))
            if rows:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO relctl_rm_alerts VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
                        " %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING", rows)
            marks: dict[int, str] = {}
            for record in fresh:
                stored[record.partition] = max(stored.get(record.partition, 0),
                                               record.offset + 1)
                marks[record.partition] = self._id(record)
            for partition, mark in marks.items():
                conn.execute("UPDATE relctl_rm_alert_offsets SET next_offset = %s, last_id = %s "
                             "WHERE topic = %s AND partition = %s",
                             (stored[partition], mark, self.topic, partition))
        return stored

    def marks(self) -> dict[int, tuple[int, str]]:
        """Per partition: the offset and id of the last record consumed (the log's mark)."""
        rows = self._db().execute(
            "SELECT partition, next_offset, last_id FROM relctl_rm_alert_offsets WHERE topic = %s "
            "AND next_offset > 0 AND last_id IS NOT NULL", (self.topic,)).fetchall()
        return {int(p): (int(o) - 1, str(i)) for p, o, i in rows}

    def restart_partition(self, partition: int) -> None:
        """The broker lost the partition's log (an embedded broker restarted empty): consume
        it again from its start. Rows already stored stay; their ids keep them single."""
        conn = self._db()
        with conn.transaction():
            conn.execute("UPDATE relctl_rm_alert_offsets SET next_offset = 0, last_id = NULL "
                         "WHERE topic = %s AND partition = %s", (self.topic, partition))

    def _id(self, record: Record) -> str:
        return record.ce_id or f"{self.topic}:{record.partition}:{record.offset}"

    def _row(self, record: Record) -> AlertRow | None:
        published = datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
        alert_id = self._id(record)
        try:
            return alert_row(alert_id, orjson.loads(record.value), published)
        except (orjson.JSONDecodeError, ValidationError) as exc:
            self.skipped += 1
            logger.warning("alerts projection: skipped %s:%d@%d (%s)", self.topic,
                           record.partition, record.offset, exc)
            return None

    # ---- Kafka ---------------------------------------------------------------------------

    async def _consumer(self) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None,
            auto_offset_reset="earliest", request_timeout_ms=10000)
        await consumer.start()
        try:
            await consumer.topics()  # loads the metadata
            partitions = sorted(consumer.partitions_for_topic(self.topic) or ())
            if not partitions:
                raise RuntimeError(f"topic {self.topic} does not exist (relctl up creates it)")
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            offsets = await asyncio.to_thread(self.stored_offsets, partitions)
            for partition in await self._lost_logs(partitions):
                offsets[partition] = 0
            for tp in tps:
                consumer.seek(tp, offsets.get(tp.partition, 0))
        except BaseException:
            await consumer.stop()
            raise
        return consumer, tps

    async def _lost_logs(self, partitions: Sequence[int]) -> list[int]:
        """The partitions whose last consumed record is no longer in the log (its id is not at
        its offset): the broker lost them. They restart from their start."""
        marks = {p: m for p, m in (await asyncio.to_thread(self.marks)).items()
                 if p in partitions}
        found = await ids_at(self.bootstrap, self.topic, {p: m[0] for p, m in marks.items()})
        lost = [p for p, (_, mark) in marks.items() if found.get(p) != mark]
        for partition in lost:
            logger.warning("alerts projection: %s[%d] no longer holds the last record consumed "
                           "(the broker lost its log?); consuming it again from its start",
                           self.topic, partition)
            await asyncio.to_thread(self.restart_partition, partition)
        return lost

    async def _step(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                    timeout_ms: int) -> int:
        expected = {tp.partition: await consumer.position(tp) for tp in tps}
        batch = await consumer.getmany(*tps, timeout_ms=timeout_ms, max_records=self.batch_size)
        records = [Record(m.partition, m.offset, m.timestamp,
                          (dict(m.headers).get("ce_id") or b"").decode() or None, m.value or b"")
                   for messages in batch.values() for m in messages]
        if not records:
            return 0
        # The client went back (its offset was out of range and it reset to the earliest): the
        # log may have been lost, e.g. an embedded broker restarted with empty topics.
        behind = sorted({r.partition for r in records if r.offset < expected[r.partition]})
        if behind:
            await self._lost_logs(behind)
        stored = await asyncio.to_thread(self.write, records)
        for tp in tps:  # another projector got further: do not read what it stored again
            if stored.get(tp.partition, 0) > await consumer.position(tp):
                consumer.seek(tp, stored[tp.partition])
        return len(records)

    async def run(self, stop: Stopper, poll_ms: int = 500) -> None:
        """Project until ``stop`` is set; a lost broker or database is retried."""
        while not stop.is_set():
            try:
                consumer, tps = await self._consumer()
            except Exception as exc:
                logger.warning("alerts projection: cannot start (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            try:
                while not stop.is_set():
                    await self._step(consumer, tps, poll_ms)
            except (psycopg.OperationalError, OSError) as exc:
                logger.warning("alerts projection: %s; reconnecting", exc)
                self.close()
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()
        self.close()

    async def catch_up(self, idle_ms: int = 500) -> int:
        """Project until the topic has nothing more for ``idle_ms``; return how many records
        were read (bound it with ``asyncio.timeout``). It polls rather than asking for the end
        offsets: ListOffsets answers are not the same on every Kafka-protocol broker (the
        embedded one's lag behind its log)."""
        consumer, tps = await self._consumer()
        try:
            read = 0
            while batch := await self._step(consumer, tps, idle_ms):
                read += batch
            return read
        finally:
            await consumer.stop()

    def drop(self) -> None:
        """Forget every row and offset: the next run re-consumes the topic from its start."""
        conn = self._db()
        with conn.transaction():
            conn.execute("DELETE FROM relctl_rm_alerts WHERE topic = %s", (self.topic,))
            conn.execute("DELETE FROM relctl_rm_alert_offsets WHERE topic = %s", (self.topic,))


def content_hash(db: Database) -> str:
    """An md5 over the sorted md5s of the alert rows (their topic positions left out: a clean
    re-consume of the same alerts compares equal)."""
    rows = db.execute(
        "SELECT md5(coalesce(string_agg(h, '' ORDER BY h), '')) AS h FROM (SELECT md5(row("
        "id, kind, scope, rule, severity, task, release, rollout_id, decision_id, action, at,"
        " body)::text) AS h FROM relctl_rm_alerts) rows")
    return str(rows[0]["h"])


# ---- reads --------------------------------------------------------------------------------

_LINKED = (
    "SELECT a.*, coalesce(a.task, r.summary->>'task') AS the_task, d.rollout_id AS d_rollout,"
    " d.position AS d_position, d.at AS d_at, d.event AS d_event, d.to_state AS d_to_state,"
    " d.actor AS d_actor, d.reason AS d_reason"
    " FROM relctl_rm_alerts a"
    " LEFT JOIN relctl_rm_rollouts r ON r.rollout_id = a.rollout_id"
    " LEFT JOIN LATERAL (SELECT * FROM relctl_rm_rollout_transitions t"
    "  WHERE (a.decision_id IS NOT NULL AND t.evidence->>'decision_id' = a.decision_id)"
    "   OR (a.decision_id IS NULL AND a.kind = 'fired' AND t.rollout_id = a.rollout_id"
    "       AND t.at >= a.at AND 'guard:' || (t.evidence->>'rule') = a.rule)"
    "  ORDER BY t.position LIMIT 1) d ON TRUE"
)
_FILTERS = (
    " WHERE (%(task)s::text IS NULL OR coalesce(a.task, r.summary->>'task') = %(task)s)"
    " AND (%(rollout)s::text IS NULL OR a.rollout_id = %(rollout)s)"
    " AND (%(kind)s::text IS NULL OR a.kind = %(kind)s)"
    " AND (%(since)s::timestamptz IS NULL OR a.at >= %(since)s)"
    " AND (%(until)s::timestamptz IS NULL OR a.at < %(until)s)"
    # A tenant's alerts: those about the release or rollout it resolved to when it fired.
    " AND (%(tenant)s::text IS NULL OR EXISTS (SELECT 1 FROM relctl_rm_resolution h"
    "  WHERE h.tenant = %(tenant)s AND h.task = coalesce(a.task, r.summary->>'task')"
    "  AND h.valid_from <= a.at AND (h.valid_to IS NULL OR h.valid_to > a.at)"
    "  AND ((a.rollout_id IS NOT NULL AND h.resolution->'rollout'->>'id' = a.rollout_id)"
    "   OR (a.rollout_id IS NULL AND (h.resolution->>'release')::int = a.release))))"
)


def alerts(db: Database, task: str | None = None, tenant: str | None = None,
           rollout: str | None = None, since: datetime | None = None,
           until: datetime | None = None, kind: str | None = None,
           limit: int = 1000) -> list[AlertEntry]:
    """The alert history, oldest first, each with its decision (if the store recorded one)."""
    if since is not None and until is not None and until < since:
        raise ValidationError("'until' is before 'since'")
    rows = db.execute(
        _LINKED + _FILTERS + " ORDER BY a.at, a.id LIMIT %(limit)s",
        {"task": task, "tenant": tenant, "rollout": rollout, "kind": kind, "since": since,
         "until": until, "limit": limit})
    return [AlertEntry(
        id=r["id"], kind=r["kind"], at=r["at"], scope=r["scope"], rule=r["rule"],
        severity=r["severity"], summary=r["body"].get("summary"), task=r["the_task"],
        release=r["release"], rollout_id=r["rollout_id"], action=r["action"],
        decision_id=r["decision_id"], evidence=r["body"].get("evidence") or {},
        decision=None if r["d_position"] is None else DecisionLink(
            rollout_id=r["d_rollout"], position=r["d_position"], at=r["d_at"],
            event=r["d_event"], to_state=r["d_to_state"], actor=r["d_actor"],
            reason=r["d_reason"])) for r in rows]


def ensure_tables(db: Database) -> None:
    """Create the alerts tables if the projector never ran (reads answer an empty history)."""
    db.execute("BEGIN; SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.rm-alerts'));"
               + "; ".join(DDL) + "; COMMIT")
