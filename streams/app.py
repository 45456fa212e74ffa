"""The Faust application of a guard worker: its settings, and the parts wired together.

Laid out the way Faust's own examples are: this module builds the app and its settings;
:mod:`~relctl.streams.topics` declares the topics, :mod:`~relctl.streams.tables` the guard-state
table, :mod:`~relctl.streams.agents` the two agents and the housekeeping timer,
:mod:`~relctl.streams.control` the control follower, :mod:`~relctl.streams.metrics` the
Prometheus metrics.

Settings that matter on the embedded broker (measured on Tansu): session and rebalance
timeouts of 6 s with a 1 s heartbeat make a worker join its group in seconds rather than ~30 s.
Delivery is at least once (the embedded broker has no idempotent producer, so no
``exactly_once``): duplicates are absorbed by stable ids and idempotent commands.
"""

import logging
import os
from dataclasses import dataclass
from typing import Any

import faust
from relctl.adapters.alertmanager import AlertmanagerSender
from relctl.adapters.config import Settings
from relctl.adapters.fetch_wait import Quiet
from relctl.adapters.kafka import TopicSpec
from relctl.domain.alerts import AlertRule
from relctl.streams.agents import AttributeAgent, GuardAgent, record_consumer_lag
from relctl.streams.control import ControlFollower
from relctl.streams.control_index import ControlIndex
from relctl.streams.grace import Grace
from relctl.streams.guard import ALERT_EVERY_SECONDS, Guard
from relctl.streams.metrics import worker_metrics
from relctl.streams.tables import TableStore, changelog_spec, guard_table
from relctl.streams.topics import worker_topics
from relctl.streams.transport import register as register_transport

__all__ = ["DEDUP_ENV", "GUARD_TICK_ENV", "GuardWorker", "Tuning", "make_app", "worker_metrics"]

logger = logging.getLogger(__name__)
# For the throughput benchmark only: count every delivery (a crash can then double-count).
DEDUP_ENV = "RELCTL_BENCH_GUARD_DEDUP"

# How often every guarded rollout is judged without traffic (a for-duration completes within
# about this long after its end). A rollout the control index just learned is judged at once.
GUARD_TICK_SECONDS = 1.0
# Tests only: another tick period, 0 for none (to show what the learn hook alone decides).
GUARD_TICK_ENV = "RELCTL_GUARD_TICK_SECONDS"


@dataclass(frozen=True)
class Tuning:
    """Worker knobs that trade latency against per-record overhead. The defaults are what
    ``bench/bench_latency.py`` measured best; each can be overridden through the environment
    (``RELCTL_WORKER_<NAME>``), which is how the benchmark compares settings in one run."""

    commit_interval: float = 0.5  # s between offset commits (each flushes the producer)
    producer_linger_ms: float = 0.0  # the worker producer's linger (batching of sends)
    max_poll_records: int = 2000  # records per fetch handed to the agents
    batch_within_ms: float = 5.0  # stage 1's batch window (a record waits at most this)
    stream_buffer_maxsize: int = 4096  # Kafka records queued per partition ahead of an agent
    batch_max: int = 2000  # Kafka records per stage-1 batch at most (bounds one batch's work)

    @classmethod
    def from_env(cls) -> "Tuning":
        values: dict[str, Any] = {}
        for name, kind in (("commit_interval", float), ("producer_linger_ms", float),
                           ("max_poll_records", int), ("batch_within_ms", float),
                           ("stream_buffer_maxsize", int), ("batch_max", int)):
            raw = os.environ.get(f"RELCTL_WORKER_{name.upper()}")
            if raw:
                values[name] = kind(raw)
        return cls(**values)


def make_app(settings: Settings, app_id: str | None = None,
             tuning: Tuning | None = None, quiet: Quiet | None = None) -> faust.App:
    """The worker's Faust app, configured for low latency on a Kafka-protocol broker."""
    tuning = tuning or Tuning.from_env()
    scheme = register_transport(settings.fetch_max_wait_ms, settings.fetch_idle_wait_ms, quiet,
                                settings.fetch_quiet_wait_ms)
    brokers = ";".join(f"{scheme}://{host}" for host in (settings.kafka_bootstrap or "").split(","))
    faust_dir = settings.data_dir.resolve() / "faust"
    faust_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    return faust.App(
        app_id or f"{settings.topic_prefix}-guard", broker=brokers, store="memory://",
        topic_partitions=settings.evaluation_partitions, key_serializer="raw",
        value_serializer="raw",
        broker_session_timeout=6, broker_rebalance_timeout=6, broker_heartbeat_interval=1,
        broker_commit_interval=tuning.commit_interval, consumer_auto_offset_reset="earliest",
        # Faust's own files go under relctl's data directory, not the working directory.
        datadir=str(faust_dir / "{conf.name}"),
        web_enabled=False, producer_linger=tuning.producer_linger_ms / 1000,
        stream_wait_empty=False,
        topic_allow_declare=False, topic_disable_leader=True,
        # Producers send CloudEvents batches (~100 kB per record); fetch many per request.
        consumer_max_fetch_size=8 * 1024 * 1024, broker_max_poll_records=tuning.max_poll_records,
        stream_buffer_maxsize=tuning.stream_buffer_maxsize,
    )


class GuardWorker:
    """Builds the Faust app and the pure components it drives."""

    def __init__(self, settings: Settings, alert_rules: tuple[AlertRule, ...],
                 app_id: str | None = None, batch_max: int | None = None,
                 batch_within: float | None = None, alertmanager_url: str | None = None,
                 tuning: Tuning | None = None) -> None:
        assert settings.kafka_bootstrap, "a worker needs a broker"
        self.settings = settings
        tuning = tuning or Tuning.from_env()
        if batch_within is None:
            batch_within = tuning.batch_within_ms / 1000
        if batch_max is None:
            batch_max = tuning.batch_max
        # Nothing guarded for a while: the idle worker fetches rarely (no decision can come).
        self.quiet = Quiet()
        self.app = app = make_app(settings, app_id, tuning, self.quiet)
        self.topics = worker_topics(app, settings)
        self.table = guard_table(app, settings.evaluation_partitions)
        self.index = ControlIndex()
        self.control = ControlFollower(settings, self.index, self._judge_now, self.quiet)
        dedup = os.environ.get(DEDUP_ENV, "1") != "0"
        if not dedup:
            logger.warning("%s=0: evaluations are NOT de-duplicated (benchmark mode)", DEDUP_ENV)
        self.guard = Guard(self.index, TableStore(self.table), alert_rules, dedup=dedup,
                           alert_every=ALERT_EVERY_SECONDS)
        self.attribute = AttributeAgent(
            self.index, self.topics, self.control.ready,
            Grace(settings.unknown_release_grace_seconds), batch_max, batch_within,
            self.guard.retention)
        self.judge = GuardAgent(
            self.guard, self.topics, self.control.ready,
            AlertmanagerSender(alertmanager_url) if alertmanager_url else None,
            flush=lambda: app.producer.flush())  # noqa: PLW0108 (Faust makes it lazily)
        app.agent(self.topics.evaluations, name="attribute")(self.attribute.run)
        app.agent(self.topics.partials, name="guard")(self.judge.run)
        app.task(self.control.follow)
        app.timer(5.0)(self._housekeeping)
        tick = float(os.environ.get(GUARD_TICK_ENV) or GUARD_TICK_SECONDS)
        if tick > 0:
            app.timer(tick)(self.judge.tick)
        else:
            logger.warning("%s=0: no guard tick (tests only)", GUARD_TICK_ENV)
        app.on_partitions_revoked.connect(self._on_rebalance)
        app.on_partitions_assigned.connect(self._on_rebalance)

    async def _judge_now(self, tasks: list[str]) -> None:
        await self.judge.judge_now(tasks)

    def topic_specs(self) -> list[TopicSpec]:
        """Topics this worker needs besides the shared ones: its table's changelog."""
        return [changelog_spec(self.app, self.table, self.settings)]

    async def _on_rebalance(self, *_: Any, **__: Any) -> None:
        """Partitions moved: state cached in memory may be stale (another worker may have
        written the table meanwhile), so reload every scope from the table on next use."""
        self.guard.forget()
        self.judge.changes.forget()  # scopes may have moved: publish each rule's verdict anew

    async def _housekeeping(self) -> None:
        await self.attribute.housekeeping()
        record_consumer_lag(self.app.consumer, self.settings.topic("evaluations"))
