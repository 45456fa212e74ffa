"""What the console shows, and the live changes it streams: the one module that reads data.

Three sources feed it, all inside the API process:

- the read models (rollouts, audit trail, overrides, pins, resolution history), re-read when
  the event store announces a commit (its LISTEN/NOTIFY channel) once the projector has
  caught up with it;
- ``relctl.verdicts``: every verdict change of every rule. The latest per rule is also in the
  verdict table (:class:`~relctl.adapters.verdicts.VerdictBoard`); a verdict carries only the
  rule's values *now*, so the series a chart draws is kept here, in memory, from successive
  verdicts (a bounded deque per rule, rebuilt from the topic's start after a restart);
- ``relctl.alerts``: pushed live as it arrives; the alert list itself is the alerts read
  model (``relctl_rm_alerts``, which keeps every alert across restarts) plus the ones seen on
  the topic that the projection has not stored yet (the newest ``MAX_ALERTS``).

Subscribers (the SSE streams) get :class:`Change` items on a bounded queue; one that falls
behind is dropped and its page reconnects and reloads the snapshot.
"""

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import sql
from relctl.adapters.kafka import topic_specs
from relctl.adapters.verdicts import VerdictBoard
from relctl.domain.alerts import Alert
from relctl.domain.verdicts import RuleVerdict
from relctl.infra.bootstrap import Runtime
from relctl.projections import queries

logger = logging.getLogger(__name__)

MAX_POINTS = 240  # per (rollout, rule): a chart's series
MAX_ALERTS = 1000
MAX_AUDIT_ROWS = 500  # one page of the timeline
QUEUE_SIZE = 1000
SAFETY_SECONDS = 5.0
READY_SECONDS = 6.0  # re-check the read models this often even without a notification
ACTIVE = ("Planned", "Running", "Paused", "Frozen")
RECENT_ENDED = 20


@dataclass(frozen=True)
class Change:
    """One item of the live stream: an SSE event name and its JSON data."""

    kind: str  # rollout | alert | audit
    data: dict[str, Any]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _alert_key(alert: dict[str, Any]) -> str:
    """The same alert read from the topic or from the read model gives the same key: both are
    the record's JSON through the one alert contract."""
    return json.dumps(alert, sort_keys=True, default=str)


def _lift(alert: dict[str, Any]) -> dict[str, Any]:
    """A decision carries its task and instant in its evidence: lift them for the filters."""
    evidence = alert.get("evidence") or {}
    alert.setdefault("task", evidence.get("task"))
    alert.setdefault("at", evidence.get("decided_at"))
    return alert


def _missing_table(exc: Exception) -> bool:
    return isinstance(exc, psycopg.errors.UndefinedTable)


class ConsoleFeed:
    """Reads for the console's views and the live stream of their changes."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.db = runtime.db
        self.board = VerdictBoard(runtime.db)
        self.series: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self.latest: dict[tuple[str, str], RuleVerdict] = {}
        self.recent_alerts: deque[tuple[str, dict[str, Any]]] = deque(maxlen=MAX_ALERTS)
        # Each subscriber: its queue and the event loop it is read from (the API's).
        self.subscribers: dict[asyncio.Queue[Change | None], asyncio.AbstractEventLoop] = {}
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.ready = threading.Event()  # the store watcher has its starting positions
        self.rollout_position = -1  # -1: not read yet
        self.audit_seq = -1

    # ---- lifecycle ------------------------------------------------------------------------
    #
    # The watchers run on an event loop of their own, in a daemon thread, and only while at
    # least one page listens. The API's server has no lifespan hooks and its loop ends without
    # waiting for tasks it does not know about: on a loop of their own, the watchers still
    # close their connections when the last stream ends (uvicorn cancels streams on shutdown).

    def _feed_loop(self) -> asyncio.AbstractEventLoop:
        with self.lock:
            if self.loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="relctl-console-feed",
                                 daemon=True).start()
                self.loop = loop
            return self.loop

    def _start(self) -> None:
        """On the feed loop: start the watchers from scratch (topics read from their start)."""
        if self.tasks:  # still running (the last page left and another came back at once)
            self.ready.set()
            return
        with self.lock:
            self.series.clear()
            self.latest.clear()
            self.recent_alerts.clear()
        self.rollout_position = self.audit_seq = -1
        self.tasks.append(asyncio.create_task(self._watch_store(), name="console-store"))
        if self.runtime.settings.kafka_bootstrap:
            partitions = {s.name: s.partitions for s in topic_specs(self.runtime.settings)}
            for name, handle in (("verdicts", self._on_verdict), ("alerts", self._on_alert)):
                topic = self.runtime.settings.topic(name)
                self.tasks.append(asyncio.create_task(
                    self._consume(topic, partitions.get(topic, 1), handle),
                    name=f"console-{name}"))

    def _stop(self) -> None:
        """On the feed loop: cancel the watchers; each closes its connections as it ends."""
        with self.lock:
            if self.subscribers:
                return  # someone subscribed again meanwhile
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()

    def subscribe(self) -> asyncio.Queue[Change | None]:
        """A queue of live changes, read from the caller's (running) event loop."""
        queue: asyncio.Queue[Change | None] = asyncio.Queue(QUEUE_SIZE)
        with self.lock:
            if not self.subscribers:
                self.ready.clear()  # until the (re)started watchers have their positions
            self.subscribers[queue] = asyncio.get_running_loop()
        self._feed_loop().call_soon_threadsafe(self._start)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Change | None]) -> None:
        with self.lock:
            self.subscribers.pop(queue, None)
            last = not self.subscribers
        if last:
            self._feed_loop().call_soon_threadsafe(self._stop)

    def publish(self, change: Change) -> None:
        with self.lock:
            targets = list(self.subscribers.items())
        for queue, loop in targets:
            with contextlib.suppress(RuntimeError):  # that loop is closed: the API stopped
                loop.call_soon_threadsafe(self._deliver, queue, change)

    def _deliver(self, queue: asyncio.Queue[Change | None], change: Change) -> None:
        try:
            queue.put_nowait(change)
        except asyncio.QueueFull:
            with self.lock:
                self.subscribers.pop(queue, None)
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            queue.put_nowait(None)  # "you fell behind": the stream ends, the page reloads

    @property
    def listening(self) -> bool:
        with self.lock:
            return bool(self.subscribers)

    # ---- reads (blocking: call them from a thread) ------------------------------------------

    def rollouts(self) -> list[dict[str, Any]]:
        """Every planned, running, paused or frozen rollout, then the most recently ended."""
        try:
            rows = self.db.execute(
                "SELECT rollout_id, summary, position FROM relctl_rm_rollouts "
                "ORDER BY position DESC")
        except psycopg.Error as exc:
            if _missing_table(exc):
                return []
            raise
        active = [r for r in rows if r["summary"]["state"] in ACTIVE]
        ended = [r for r in rows if r["summary"]["state"] not in ACTIVE][:RECENT_ENDED]
        return [self._card(r["summary"], r["position"]) for r in [*active, *ended]]

    def rollout(self, rollout_id: str) -> dict[str, Any] | None:
        rows = self.db.execute("SELECT summary, position FROM relctl_rm_rollouts "
                               "WHERE rollout_id = %s", (rollout_id,))
        return self._card(rows[0]["summary"], rows[0]["position"]) if rows else None

    def _card(self, summary: dict[str, Any], position: int) -> dict[str, Any]:
        rollout_id = summary["id"]
        arms: dict[str, list[str]] = {}
        if summary["state"] in ACTIVE:
            with contextlib.suppress(Exception):
                arms = queries.rollout_status(self.db, rollout_id).arms
        with self.lock:
            series = {rule: list(points) for (rid, rule), points in self.series.items()
                      if rid == rollout_id}
        return {**summary, "position": position, "arms": arms, "series": series,
                "verdicts": [v.model_dump(mode="json") for v in self.verdicts(rollout_id)]}

    def verdicts(self, rollout_id: str) -> list[RuleVerdict]:
        """The latest verdict per rule: the table's, or this process' newer one from the
        topic (the table is written by another consumer, maybe a moment later)."""
        now = datetime.now(UTC)
        by_rule = {v.rule: v for v in self.board.latest(rollout_id, now)}
        with self.lock:
            mine = [(rule, v) for (rid, rule), v in self.latest.items() if rid == rollout_id]
        for rule, verdict in mine:
            if (rule not in by_rule or verdict.at >= by_rule[rule].at):
                by_rule[rule] = verdict.as_of(now)
        return [by_rule[rule] for rule in sorted(by_rule)]

    def alerts(self, task: str | None = None, tenant: str | None = None,
               since: datetime | None = None, until: datetime | None = None,
               actor: str | None = None) -> list[dict[str, Any]]:
        """Alerts seen on ``relctl.alerts``, newest first, filtered (``tenant``: the alerts
        whose evidence names it; alerts are per release or rollout, not per tenant)."""
        found = []
        with self.lock:
            live = list(self.recent_alerts)
        stored = self._stored_alerts()
        keys = {_alert_key(alert) for alert in stored}
        unstored = [_lift(dict(alert)) for key, alert in live if key not in keys]
        alerts = sorted([_lift(alert) for alert in stored] + unstored,
                        key=lambda alert: str(alert.get("at") or alert.get("fired_at") or ""))
        for alert in reversed(alerts):
            if task and alert.get("task") != task:
                continue
            if actor and alert.get("actor") != actor:
                continue
            if tenant and tenant not in json.dumps(alert.get("evidence", {})):
                continue
            at = alert.get("at")
            if at and since and datetime.fromisoformat(at) < since:
                continue
            if at and until and datetime.fromisoformat(at) >= until:
                continue
            found.append(alert)
        return found

    def _stored_alerts(self) -> list[dict[str, Any]]:
        """The newest ``MAX_ALERTS`` alerts the alerts read model holds (none before it ran)."""
        try:
            rows = self.db.execute("SELECT body FROM relctl_rm_alerts ORDER BY at DESC, id DESC "
                                   "LIMIT %s", (MAX_ALERTS,))
        except psycopg.Error as exc:
            if _missing_table(exc):
                return []
            raise
        found = []
        for row in rows:
            try:
                found.append(Alert.model_validate(row["body"]).wire())
            except ValueError:
                continue
        return found

    def audit(self, task: str | None = None, tenant: str | None = None,
              actor: str | None = None, since: datetime | None = None,
              until: datetime | None = None, limit: int = MAX_AUDIT_ROWS
              ) -> list[dict[str, Any]]:
        """The newest audit rows matching the filters, newest first."""
        rows = self.db.execute(
            "SELECT seq, content, hash FROM relctl_rm_audit WHERE "
            "(%(since)s::timestamptz IS NULL OR at >= %(since)s) AND "
            "(%(until)s::timestamptz IS NULL OR at < %(until)s) AND "
            "(%(tenant)s::text IS NULL OR tenant = %(tenant)s) AND "
            "(%(task)s::text IS NULL OR task = %(task)s) AND "
            "(%(actor)s::text IS NULL OR actor = %(actor)s) ORDER BY seq DESC LIMIT %(limit)s",
            {"since": since, "until": until, "tenant": tenant, "task": task, "actor": actor,
             "limit": limit})
        return [{**json.loads(r["content"]), "hash": r["hash"]} for r in rows]

    def inventory(self) -> dict[str, Any]:
        return {"overrides": _jsonable([vars(o) for o in queries.overrides(self.db)]),
                "pins": _jsonable([vars(p) for p in queries.pins(self.db)])}

    def tenants(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT tenant, name, cohort FROM relctl_rm_tenants "
                               "ORDER BY tenant")
        return [dict(r) for r in rows]

    # ---- the store: rollouts and audit rows that changed ----------------------------------

    def _changes(self) -> list[Change]:
        """What the read models gained since the last call (nothing on the first call)."""
        with contextlib.suppress(Exception):
            queries.wait_for_head(self.db, self.runtime.app, timeout=5.0)
        try:
            top = self.db.execute("SELECT coalesce(max(position), 0) AS p FROM "
                                  "relctl_rm_rollouts")[0]["p"]
            seq = self.db.execute("SELECT coalesce(max(seq), 0) AS s FROM relctl_rm_audit")[0]["s"]
        except psycopg.Error as exc:
            if _missing_table(exc):
                return []
            raise
        if self.rollout_position < 0:
            self.rollout_position, self.audit_seq = int(top), int(seq)
            return []
        changes: list[Change] = []
        if top > self.rollout_position:
            for row in self.db.execute(
                    "SELECT summary, position FROM relctl_rm_rollouts WHERE position > %s "
                    "ORDER BY position", (self.rollout_position,)):
                changes.append(Change("rollout", self._card(row["summary"], row["position"])))
            self.rollout_position = int(top)
        if seq > self.audit_seq:
            for row in self.db.execute(
                    "SELECT content, hash FROM relctl_rm_audit WHERE seq > %s ORDER BY seq "
                    "LIMIT %s", (self.audit_seq, MAX_AUDIT_ROWS)):
                changes.append(Change("audit", {**json.loads(row["content"]),
                                                "hash": row["hash"]}))
                self.audit_seq = max(self.audit_seq, json.loads(row["content"])["seq"])
        return changes

    async def _catch_up(self) -> None:
        for change in await asyncio.to_thread(self._changes):
            self.publish(change)
        self.ready.set()

    async def started(self) -> None:
        """Wait (at most READY_SECONDS) until changes are being watched, so a snapshot taken
        now misses none."""
        await asyncio.to_thread(self.ready.wait, READY_SECONDS)

    async def _watch_store(self) -> None:
        settings = self.runtime.settings
        channel = getattr(self.runtime.app.recorder, "channel_name", None)
        pause = 1.0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        settings.database_url or "", autocommit=True) as conn:
                    if channel:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    await self._catch_up()
                    pause = 1.0
                    while True:
                        async for _ in conn.notifies(timeout=SAFETY_SECONDS, stop_after=1):
                            pass
                        await self._catch_up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("console store watcher restarting in %.0f s after: %r", pause, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)

    # ---- the topics: verdicts and alerts --------------------------------------------------

    async def _consume(self, topic: str, partitions: int, handle: Any) -> None:
        """Read every partition of ``topic`` from its start, then follow it; a restarted
        session resumes after the last record handled (none is handled twice)."""
        pause = 1.0
        resume: dict[int, int] = {}
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.runtime.settings.kafka_bootstrap,
                enable_auto_commit=False, auto_offset_reset="earliest",
                fetch_max_wait_ms=self.runtime.settings.fetch_max_wait_ms)
            try:
                await consumer.start()
                tps = [TopicPartition(topic, p) for p in range(partitions)]
                consumer.assign(tps)
                for tp in tps:
                    if tp.partition in resume:
                        consumer.seek(tp, resume[tp.partition])
                    else:
                        await consumer.seek_to_beginning(tp)
                pause = 1.0
                while True:
                    batch = await consumer.getmany(timeout_ms=500)
                    records = [r.value or b"" for rs in batch.values() for r in rs]
                    if records:
                        await handle(records)
                    for tp, rs in batch.items():
                        if rs:
                            resume[tp.partition] = rs[-1].offset + 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("console consumer of %s restarting in %.0f s after: %r", topic,
                               pause, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _on_verdict(self, records: Iterable[bytes]) -> None:
        touched: set[str] = set()
        for raw in records:
            try:
                verdict = RuleVerdict.model_validate_json(raw)
            except ValueError:
                continue
            key = (verdict.rollout_id, verdict.rule)
            point = {"at": verdict.at, "value": verdict.value,
                     "candidate": verdict.candidate.value, "baseline": verdict.baseline.value,
                     "samples": verdict.samples, "outcome": verdict.outcome.value}
            with self.lock:
                self.series.setdefault(key, deque(maxlen=MAX_POINTS)).append(point)
                previous = self.latest.get(key)
                if previous is None or verdict.at >= previous.at:
                    self.latest[key] = verdict
            touched.add(verdict.rollout_id)
        if not self.listening:
            return
        for rollout_id in touched:
            card = await asyncio.to_thread(self.rollout, rollout_id)
            if card is not None:
                self.publish(Change("rollout", card))

    async def _on_alert(self, records: Iterable[bytes]) -> None:
        for raw in records:
            try:
                alert = Alert.model_validate_json(raw).wire()
            except ValueError:
                continue
            key = _alert_key(alert)
            with self.lock:
                self.recent_alerts.append((key, alert))
            shown = _lift(dict(alert))
            shown["received_at"] = time.time()
            self.publish(Change("alert", shown))
