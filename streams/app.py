"""The Faust application: topics, the guard-state table and the two agents.

Settings that matter on the embedded broker (../shared/DESIGN.md): session and rebalance
timeouts of 6 s with a 1 s heartbeat make a worker join its group in seconds rather than ~30 s.
Delivery is at least once (the embedded broker has no idempotent producer, so no
``exactly_once``): duplicates are absorbed by stable ids and idempotent commands.
"""

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Counter, Gauge, Histogram
from relctl.adapters import cloudevents, ingest
from relctl.adapters.alertmanager import AlertmanagerSender
from relctl.adapters.commands import command_record
from relctl.adapters.config import Settings
from relctl.domain.alerts import AlertRule
from relctl.domain.timeliness import explain, time_problem
from relctl.domain.trace_contract import describe, violations
from relctl.streams.attribute import Attributor, Partial, task_scope
from relctl.streams.control_index import ControlIndex
from relctl.streams.grace import Grace
from relctl.streams.guard import Guard, GuardOutcome
from relctl.streams.transport import register as register_transport

logger = logging.getLogger(__name__)

PROCESSED = Counter("relctl_worker_evaluations_processed_total", "Evaluations folded into windows")
REJECTED = Counter("relctl_worker_evaluations_rejected_total", "Evaluations sent to the DLQ")
BATCH_SECONDS = Histogram("relctl_worker_batch_processing_seconds",
                          "Time to process one batch of evaluations",
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))
EVENT_AGE = Gauge("relctl_worker_event_age_seconds",
                  "Age of the newest evaluation processed (processing lag)")
CONSUMER_LAG = Gauge("relctl_worker_consumer_lag", "Records behind the high watermark",
                     ["partition"])
GUARD_OUTCOME = Gauge("relctl_guard_rule_outcome",
                      "Latest guard outcome (0 Inconclusive, 1 Passed, 2 Pending, 3 Failed, "
                      "4 Error)", ["rollout", "rule"])
DECISIONS = Counter("relctl_guard_decisions_total", "Automatic decisions issued", ["action"])
ALERTS = Counter("relctl_alerts_total", "Alert transitions published", ["kind", "rule"])
COHORT_WINDOW = Gauge(
    "relctl_worker_cohort_window_evaluations",
    "Evaluations in this worker's per-tenant windows (last 15 min), summed per task, release "
    "and cohort; measure is count or an outcome/flag count", ["task", "release", "cohort",
                                                              "measure"])
HELD = Gauge("relctl_worker_evaluations_held",
             "Evaluations waiting for the control index to learn their release")
TENANT_WINDOWS = Gauge("relctl_worker_tenant_windows",
                       "Active (task, release, tenant, cohort, arm) windows held in memory")
OUTCOME_CODE = {"Inconclusive": 0, "Passed": 1, "Pending": 2, "Failed": 3, "Error": 4}
CONTROL_EVENTS = Gauge("relctl_worker_control_events", "Control events applied to the index")
CONTROL_MALFORMED = Counter("relctl_worker_control_malformed_total",
                            "Control records that could not be read and were skipped")
ROLLOUT_STATE = Gauge("relctl_worker_rollout_state",
                      "Rollout state as this worker's control index sees it (0 Planned, "
                      "1 Running, 2 Paused, 3 Frozen, 4 RolledBack, 5 Completed)", ["rollout"])
DUPLICATES = Counter("relctl_guard_duplicates_total",
                     "Evaluations delivered again (producer retries, redeliveries after a "
                     "crash) and not counted again")
TOO_OLD = Counter("relctl_guard_evaluations_too_old_total",
                  "Evaluations whose bucket had left the guard's retention when stage 2 saw "
                  "them (not counted)")
PENDING_PAIRS = Gauge("relctl_guard_pending_shadow_pairs",
                      "Shadow-mode runs waiting for their call's other arm, per task", ["task"])
TRACE_VIOLATIONS = Counter(
    "relctl_guard_trace_violations_total",
    "Evaluations whose prompt, model, sampling parameters or blueprint contradict the release "
    "they claim (not counted as its evidence)", ["task", "release", "field"])
WINDOW_EVALUATIONS = Gauge(
    "relctl_guard_window_evaluations",
    "Evaluations counted in the guard's live buckets (its retention), per task, release and "
    "produced arm", ["task", "release", "arm"])
# For the throughput benchmark only: count every delivery (a crash can then double-count).
DEDUP_ENV = "RELCTL_BENCH_GUARD_DEDUP"
STATE_CODE = {"Planned": 0, "Running": 1, "Paused": 2, "Frozen": 3, "RolledBack": 4,
              "Completed": 5}


class TableStore:
    """The guard's StateStore backed by a changelogged Faust table (recovered on restart)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str) -> bytes | None:
        value = self.table.get(key.encode())
        return bytes(value) if value is not None else None

    def set(self, key: str, value: bytes) -> None:
        self.table[key.encode()] = value

    def delete(self, key: str) -> None:
        if key.encode() in self.table:
            del self.table[key.encode()]

    def keys(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix`` (a scan of this worker's partitions: used when a
        scope is loaded after a start or rebalance, not per evaluation)."""
        wanted = prefix.encode()
        return [bytes(key).decode() for key in list(self.table.keys())
                if bytes(key).startswith(wanted)]


def _headers(raw: Any) -> dict[str, bytes]:
    if isinstance(raw, Mapping):
        return {str(k): v for k, v in raw.items()}
    return {str(k): v for k, v in (raw or ())}


def alert_record(alert: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """An alert or decision as a CloudEvent (binary mode) with a stable id."""
    kind = alert["kind"]
    identity = alert.get("decision_id") or f"{alert['scope']}:{alert['rule']}:" \
        f"{alert.get('fired_at') or alert.get('at')}:{kind}"
    headers = cloudevents.binary_headers(id=identity, source="urn:relctl:guard",
                                         type=f"io.relctl.alert.{kind}.v1",
                                         subject=alert["scope"])
    return str(alert["scope"]).encode(), cloudevents.dumps(alert), headers


class GuardWorker:
    """Builds the Faust app and the pure components it drives."""

    def __init__(self, settings: Settings, alert_rules: tuple[AlertRule, ...],
                 app_id: str | None = None, batch_max: int = 2000,
                 batch_within: float = 0.005, alertmanager_url: str | None = None) -> None:
        assert settings.kafka_bootstrap, "a worker needs a broker"
        self.settings = settings
        self.index = ControlIndex()
        self.attributor = Attributor(self.index)
        self.index_ready = asyncio.Event()
        self.grace = Grace(settings.unknown_release_grace_seconds)
        self._held_origins: dict[int, ingest.Origin] = {}
        self.batch_max = batch_max
        self.batch_within = batch_within
        self.alertmanager = AlertmanagerSender(alertmanager_url) if alertmanager_url else None
        partitions = settings.evaluation_partitions
        scheme = register_transport(settings.fetch_max_wait_ms)
        brokers = ";".join(f"{scheme}://{host}" for host in settings.kafka_bootstrap.split(","))
        faust_dir = settings.data_dir.resolve() / "faust"
        faust_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
        self.app = faust.App(
            app_id or f"{settings.topic_prefix}-guard", broker=brokers, store="memory://",
            topic_partitions=partitions, key_serializer="raw", value_serializer="raw",
            broker_session_timeout=6, broker_rebalance_timeout=6, broker_heartbeat_interval=1,
            broker_commit_interval=0.5, consumer_auto_offset_reset="earliest",
            # Faust's own files go under relctl's data directory, not the working directory.
            datadir=str(faust_dir / "{conf.name}"),
            web_enabled=False, producer_linger=0.0, stream_wait_empty=False,
            topic_allow_declare=False, topic_disable_leader=True,
            # Producers send CloudEvents batches (~100 kB per record); fetch many per request.
            consumer_max_fetch_size=8 * 1024 * 1024, broker_max_poll_records=2000,
        )
        app = self.app

        def topic(name: str, count: int) -> Any:
            return app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                             partitions=count, internal=False)

        self.evaluations = topic("evaluations", partitions)
        self.partials = topic("guard-partials", partitions)
        self.commands = topic("commands", settings.control_partitions)
        self.alerts = topic("alerts", 1)
        self.dlq = topic("dlq", 1)
        self.table = app.Table("guard-state", default=None, partitions=partitions,
                               key_type=bytes, value_type=bytes)
        dedup = os.environ.get(DEDUP_ENV, "1") != "0"
        if not dedup:
            logger.warning("%s=0: evaluations are NOT de-duplicated (benchmark mode)", DEDUP_ENV)
        self.guard = Guard(self.index, TableStore(self.table), alert_rules, dedup=dedup)
        app.agent(self.evaluations, name="attribute")(self._attribute)
        app.agent(self.partials, name="guard")(self._guard)
        app.task(self._follow_control)
        app.timer(5.0)(self._housekeeping)
        app.on_partitions_revoked.connect(self._on_rebalance)
        app.on_partitions_assigned.connect(self._on_rebalance)
        self._background: set[asyncio.Task[None]] = set()

    def topic_specs(self) -> list[Any]:
        """Topics this worker needs besides the shared ones: its table's changelog."""
        from relctl.adapters.kafka import TopicSpec

        changelog = f"{self.app.conf.id}-{self.table.name}-changelog"
        return [TopicSpec(changelog, self.settings.evaluation_partitions, compact=True)]

    # ---- control topic ------------------------------------------------------------------

    async def _follow_control(self) -> None:
        """Follow all of relctl.control for the life of the worker; a broker outage restarts
        the consumer (re-reading from the start is harmless: events are de-duplicated)."""
        while True:
            try:
                await self._read_control()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the guard must outlive a broker restart
                logger.warning("control follower restarting after: %r", exc)
                await asyncio.sleep(1.0)

    async def _read_control(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    fetch_max_wait_ms=50)
        await consumer.start()
        try:
            topic = self.settings.topic("control")
            tps = [TopicPartition(topic, p) for p in range(self.settings.control_partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        self._apply_control(record)
                CONTROL_EVENTS.set(self.index.applied)
                if not batch and not self.index_ready.is_set():
                    logger.info("control index caught up: %d events", self.index.applied)
                    self.index_ready.set()
        finally:
            await consumer.stop()

    def _apply_control(self, record: Any) -> None:
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

    async def _on_rebalance(self, *_: Any, **__: Any) -> None:
        """Partitions moved: state cached in memory may be stale (another worker may have
        written the table meanwhile), so reload every scope from the table on next use."""
        self.guard.forget()

    # ---- stage 1 ------------------------------------------------------------------------

    async def _attribute(self, stream: Any) -> None:
        await self.index_ready.wait()
        async for events in stream.take_events(self.batch_max, within=self.batch_within):
            started = time.perf_counter()
            accepted: list[tuple[Any, ingest.Origin]] = []
            dead: list[tuple[Any, str]] = []
            now = time.monotonic()
            for event in events:
                message = event.message
                decoded = ingest.decode(message.value or b"", _headers(message.headers))
                source = f"kafka:{message.topic}/{message.partition}@{message.offset}"
                dead += [(r, source) for r in decoded.rejected]
                for record, origin in zip(decoded.records, decoded.origins(source),
                                          strict=True):
                    if self.index.known_release(record.task, record.release):
                        accepted.append((record, origin))
                    else:
                        dead += self._unknown(self._hold(record, origin, now))
            if self.grace:
                ready, expired = self.grace.release(self.index.known_release, now)
                accepted += self._released(ready)
                dead += self._unknown(expired)
            records, refused, violated = self._screen(accepted, time.time())
            await self._emit(records, dead + refused, started, violated)

    def _hold(self, record: Any, origin: ingest.Origin, now: float) -> list[tuple[Any, Any]]:
        """Hold a record of a release the index does not know yet (its origin kept beside it,
        so a dead letter carries the bytes as received); returns what overflowed."""
        self._held_origins[id(record)] = origin
        return self.grace.hold(record, origin.source, now)

    def _released(self, ready: list[Any]) -> list[tuple[Any, ingest.Origin]]:
        return [(record, self._held_origins.pop(id(record))) for record in ready]

    def _screen(self, accepted: list[tuple[Any, ingest.Origin]], now: float) -> tuple[
            list[Any], list[tuple[Any, str]], dict[tuple[str, int], int]]:
        """Keep what can be evidence for its release. A record dated outside the guard's
        retention or beyond the clock-skew allowance, or one that contradicts its release's
        trace contract, goes to the DLQ with the reason and the bytes as received;
        violations are also counted per release and reported to stage 2 (the alert)."""
        kept: list[Any] = []
        dead: list[tuple[Any, str]] = []
        violated: dict[tuple[str, int], int] = {}
        retentions: dict[str, float] = {}
        for record, origin in accepted:
            occurred = record.occurred_at.timestamp()
            retention = retentions.get(record.task)
            if retention is None:
                retention = retentions[record.task] = self.guard.retention(record.task)
            problem = time_problem(occurred, now, retention)
            if problem is not None:
                dead.append((ingest.Rejected(explain(problem, occurred, now, retention),
                                             origin.received(), origin.index, problem.value),
                             origin.source))
                continue
            trace = self.index.trace(record.task, record.release)
            fields = violations(record, trace) if trace is not None else ()
            if trace is not None and fields:
                for name in fields:
                    TRACE_VIOLATIONS.labels(record.task, str(record.release), name).inc()
                key = (record.task, record.release)
                violated[key] = violated.get(key, 0) + 1
                dead.append((ingest.Rejected(describe(record, trace, fields),
                                             origin.received(), origin.index,
                                             "trace_contract"), origin.source))
                continue
            kept.append(record)
        return kept, dead, violated

    def _unknown(self, pairs: list[tuple[Any, str]]) -> list[tuple[Any, str]]:
        """Dead letters (the bytes as received) for records whose release is still unknown."""
        dead: list[tuple[Any, str]] = []
        for record, source in pairs:
            origin = self._held_origins.pop(id(record), None) or ingest.Origin(source, b"")
            if self.index.known_release(record.task, record.release):
                continue
            original = origin.received() if origin.raw else ingest.original_bytes(record)
            dead.append((ingest.Rejected(f"unknown release {record.task} v{record.release}",
                                         original, origin.index, "unknown_release"), source))
        return dead

    async def _emit(self, records: list[Any], dead: list[tuple[Any, str]],
                    started: float,
                    violated: dict[tuple[str, int], int] | None = None) -> None:
        partials = {p.scope: p for p in self.attributor.process(records)}
        for (task, release), count in (violated or {}).items():
            scope = task_scope(task)
            partial = partials.get(scope) or partials.setdefault(scope, Partial(scope))
            partial.violations[release] = partial.violations.get(release, 0) + count
        for partial in partials.values():
            for part in partial.split():
                await self.partials.send(key=part.scope.encode(), value=part.encode())
        for rejected, source in dead:
            key, value, headers = ingest.dlq_record(rejected, source)
            await self.dlq.send(key=key, value=value, headers=headers)
        if dead:
            ingest.count_rejected([r for r, _ in dead], "worker")
            REJECTED.inc(len(dead))
        if records:
            ingest.count_accepted(len(records), "worker")
            PROCESSED.inc(len(records))
            EVENT_AGE.set(max(0.0, time.time() - max(
                r.occurred_at.timestamp() for r in records)))
        BATCH_SECONDS.observe(time.perf_counter() - started)
        HELD.set(len(self.grace))

    # ---- stage 2 ------------------------------------------------------------------------

    async def _guard(self, stream: Any) -> None:
        await self.index_ready.wait()
        async for event in stream.events():
            try:
                partial = Partial.decode(event.value)
            except (ValueError, KeyError, TypeError) as exc:
                await self.dlq.send(key=event.key, value=event.value, headers=[
                    ("relctl_dlq_reason", f"malformed guard partial: {exc}".encode())])
                continue
            outcome = self.guard.handle(partial, time.time())
            applied = self.guard.last
            DUPLICATES.inc(applied.duplicates)
            TOO_OLD.inc(applied.expired)
            state = self.guard.scopes.get(partial.scope)
            if state is not None and state.ledger is not None:
                task = partial.scope.partition("|")[2]
                PENDING_PAIRS.labels(task).set(state.ledger.pending_pairs)
                for arm, buckets in state.buckets.items():
                    release, _, produced = arm.partition("|")
                    WINDOW_EVALUATIONS.labels(task, release, produced).set(
                        sum(stats.count + stats.shadow_pairs for stats in buckets.values()))
            await self._publish(outcome)

    async def _publish(self, outcome: GuardOutcome) -> None:
        for verdict in outcome.verdicts:
            GUARD_OUTCOME.labels(outcome.rollout_id or "", verdict.rule).set(
                OUTCOME_CODE[verdict.outcome])
        for command in outcome.commands:
            key, value, headers = command_record(command)
            await self.commands.send(key=key, value=value, headers=headers)
            DECISIONS.labels(command["action"]).inc()
            logger.warning("guard decided %s for rollout %s: %s", command["action"],
                           command["rollout_id"], command["reason"])
        for alert in outcome.alerts:
            key, value, headers = alert_record(alert)
            await self.alerts.send(key=key, value=value, headers=headers)
            ALERTS.labels(alert["kind"], str(alert.get("rule", "decision"))).inc()
        if outcome.alerts and self.alertmanager is not None:
            task = asyncio.get_running_loop().create_task(self.alertmanager.send(outcome.alerts))
            self._background.add(task)  # keep a reference until it is done
            task.add_done_callback(self._background.discard)

    async def _housekeeping(self) -> None:
        TENANT_WINDOWS.set(self.attributor.expire(time.time()))
        COHORT_WINDOW.clear()  # series of windows that expired must disappear
        for (task, release, cohort), measures in self.attributor.cohort_totals().items():
            for measure, value in measures.items():
                COHORT_WINDOW.labels(task, str(release), cohort, measure).set(value)
        if self.grace:  # no new traffic: still settle held evaluations
            ready, expired = self.grace.release(self.index.known_release, time.monotonic())
            dead = self._unknown(expired)
            records, refused, violated = self._screen(self._released(ready), time.time())
            await self._emit(records, dead + refused, time.perf_counter(), violated)
        consumer: Any = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic != self.settings.topic("evaluations"):
                continue
            # Faust keeps no public read position; _read_offset is its own bookkeeping.
            highwater, position = consumer.highwater(tp), consumer._read_offset.get(tp)
            if highwater is not None and position is not None:
                CONSUMER_LAG.labels(str(tp.partition)).set(max(0, highwater - position - 1))


def worker_metrics(port: int) -> None:
    from prometheus_client import start_http_server

    start_http_server(port, addr="127.0.0.1")

