"""The alerts projection: exactly once across SIGKILLs of its consumer and across a guard
worker's re-sends, equal to a clean re-consume of the topic."""

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from relctl.adapters.config import Settings
from relctl.adapters.kafka import TopicSpec, ensure_topics
from relctl.adapters.postgres import Database
from relctl.infra.bootstrap import Runtime
from relctl.projections import alerts as alert_history
from relctl.projections.alerts import AlertProjector

from tests.conftest import wait_until
from tests.integration.alert_support import platform_alert, publish

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20
PARTITIONS = 2


@pytest.fixture
def topic(settings: Settings) -> str:
    assert settings.kafka_bootstrap
    name = settings.topic("alerts")
    asyncio.run(ensure_topics(settings.kafka_bootstrap, [TopicSpec(name, PARTITIONS)]))
    return name


@pytest.fixture
def clean_schema(settings: Settings) -> Iterator[str]:
    """A second schema for the clean re-consume of the same topic."""
    assert settings.database_url
    schema = settings.database_schema + "_clean"
    yield schema
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def start_child(settings: Settings, topic: str) -> subprocess.Popen[bytes]:
    assert settings.database_url and settings.kafka_bootstrap
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.alerts_child", settings.database_url,
         settings.database_schema, settings.kafka_bootstrap, topic, "7"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _count(db: Database) -> int:
    return int(db.execute("SELECT count(*) AS n FROM relctl_rm_alerts")[0]["n"])


def _clean_hash(settings: Settings, topic: str, schema: str) -> tuple[str, int]:
    assert settings.database_url and settings.kafka_bootstrap
    clean = AlertProjector(settings.database_url, schema, settings.kafka_bootstrap, topic)
    asyncio.run(clean.catch_up())
    clean.close()
    db = Database(settings.database_url, schema)
    db.open()
    try:
        return alert_history.content_hash(db), _count(db)
    finally:
        db.close()


def _offsets(db: Database) -> dict[int, int]:
    return {r["partition"]: r["next_offset"] for r in db.execute(
        "SELECT partition, next_offset FROM relctl_rm_alert_offsets")}


def test_sigkilled_alerts_projector_ends_equal_to_a_clean_reconsume(
        runtime: Runtime, settings: Settings, topic: str, clean_schema: str) -> None:
    assert settings.kafka_bootstrap
    db = runtime.db
    alert_history.ensure_tables(db)
    stop = threading.Event()
    published: list[str] = []

    def flow() -> None:  # alerts keep arriving while the consumer is killed
        n = 0
        while not stop.is_set() and n < 4000:
            published.extend(publish(settings.kafka_bootstrap or "", topic,
                                     [platform_alert(n + i) for i in range(40)], PARTITIONS))
            n += 40
            time.sleep(0.02)

    producer = threading.Thread(target=flow)
    producer.start()
    rng = random.Random(11)
    progress = []
    try:
        for kill in range(KILLS):
            before = _count(db)
            if before >= len(published) and not producer.is_alive():
                # The flow has ended and all of it is stored (a fast machine): give this
                # projector something to be killed in the middle of.
                published.extend(publish(settings.kafka_bootstrap, topic,
                                         [platform_alert(100_000 + 40 * kill + i)
                                          for i in range(40)], PARTITIONS))
            child = start_child(settings, topic)
            wait_until(lambda before=before: _count(db) > before, timeout=60, interval=0.01,
                       what="the alerts projector to commit a batch")
            time.sleep(rng.uniform(0, 0.15))
            child.send_signal(signal.SIGKILL)
            assert child.wait(10) == -signal.SIGKILL
            progress.append(_count(db))
    finally:
        stop.set()
        producer.join(120)
    assert progress == sorted(progress)
    assert len(published) == len(set(published)) > progress[-1] // 2
    child = start_child(settings, topic)
    try:
        wait_until(lambda: _count(db) >= len(published), timeout=120,
                   what="the restarted projector to reach the topic's end")
        wait_until(lambda: sum(_offsets(db).values()) >= len(published), timeout=30,
                   what="the offsets to reach the topic's end")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    ids = {r["id"] for r in db.execute("SELECT id FROM relctl_rm_alerts")}
    assert ids == set(published)  # none missing
    assert _count(db) == len(published)  # none doubled
    assert sum(_offsets(db).values()) == len(published)  # every record consumed once
    assert _clean_hash(settings, topic, clean_schema) == (alert_history.content_hash(db),
                                                          len(published))


def test_alerts_a_restarted_worker_sends_again_are_kept_once(
        runtime: Runtime, settings: Settings, topic: str, clean_schema: str) -> None:
    """A guard worker restarted after a crash re-sends the alerts it had not confirmed (same
    CloudEvents ids, new records); the history keeps one row per alert."""
    assert settings.database_url and settings.kafka_bootstrap
    first = [platform_alert(n) for n in range(30)]
    ids = publish(settings.kafka_bootstrap, topic, first, PARTITIONS)
    projector = AlertProjector(settings.database_url, settings.database_schema,
                               settings.kafka_bootstrap, topic, batch_size=5)
    asyncio.run(projector.catch_up())
    # The restarted worker: the last ten again (its un-acknowledged tail), then new ones.
    again = publish(settings.kafka_bootstrap, topic,
                    first[20:] + [platform_alert(n) for n in range(30, 40)], PARTITIONS)
    assert set(again[:10]) <= set(ids)
    asyncio.run(projector.catch_up())
    projector.close()
    db = runtime.db
    assert _count(db) == 40
    assert sum(_offsets(db).values()) == 50  # 50 records read, 40 alerts kept
    assert _clean_hash(settings, topic, clean_schema) == (alert_history.content_hash(db), 40)


def test_relctl_project_once_also_projects_the_alerts(
        runtime: Runtime, settings: Settings, topic: str) -> None:
    from relctl.infra.projector import run_projectors

    assert settings.kafka_bootstrap
    ids = publish(settings.kafka_bootstrap, topic, [platform_alert(n) for n in range(12)],
                  PARTITIONS)
    run_projectors(settings, once=True)
    assert {r["id"] for r in runtime.db.execute("SELECT id FROM relctl_rm_alerts")} == set(ids)


def test_relctl_project_rebuild_alerts_reconsumes_the_topic_to_the_same_history(
        runtime: Runtime, settings: Settings, topic: str) -> None:
    from relctl.infra.projector import run_projectors

    assert settings.kafka_bootstrap
    publish(settings.kafka_bootstrap, topic, [platform_alert(n) for n in range(12)], PARTITIONS)
    run_projectors(settings, once=True)
    db = runtime.db
    before = alert_history.content_hash(db)
    db.execute("DELETE FROM relctl_rm_alerts WHERE id IN "
               "(SELECT id FROM relctl_rm_alerts ORDER BY id LIMIT 3)")  # a damaged history
    run_projectors(settings, once=True)
    assert _count(db) == 9  # a plain run does not look back: the offsets are past them
    run_projectors(settings, once=True, rebuild_alerts=True)
    assert (_count(db), alert_history.content_hash(db)) == (12, before)
    assert sum(_offsets(db).values()) == 12


def test_a_broker_that_restarts_empty_is_consumed_again_from_its_start(
        runtime: Runtime, settings: Settings, tmp_path: Path) -> None:
    """The embedded broker keeps topics in memory: after its restart the offsets start at 0
    again. Records there are new alerts, not ones already stored below the stored offset."""
    from relctl.infra.embedded import EmbeddedBroker

    assert settings.database_url
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log")
    bootstrap = broker.start()
    topic = settings.topic("alerts")
    try:
        asyncio.run(ensure_topics(bootstrap, [TopicSpec(topic, 1)]))
        first = publish(bootstrap, topic, [platform_alert(n) for n in range(10)])
        projector = AlertProjector(settings.database_url, settings.database_schema, bootstrap,
                                   topic, batch_size=4)
        asyncio.run(projector.catch_up())
        # Restarted while stopped: found at start-up, by the last record's id.
        broker.restart()
        asyncio.run(ensure_topics(bootstrap, [TopicSpec(topic, 1)]))
        second = publish(bootstrap, topic, [platform_alert(n) for n in range(10, 15)])
        asyncio.run(projector.catch_up())
        db = runtime.db
        assert {r["id"] for r in db.execute("SELECT id FROM relctl_rm_alerts")} == {
            *first, *second}
        # Restarted while it runs: found when the client goes back to the log's start.
        stop = threading.Event()
        running = threading.Thread(target=lambda: asyncio.run(projector.run(stop, poll_ms=100)))
        running.start()
        try:
            broker.restart()
            asyncio.run(ensure_topics(bootstrap, [TopicSpec(topic, 1)]))
            third = publish(bootstrap, topic, [platform_alert(n) for n in range(15, 18)])
            wait_until(lambda: _count(db) == 18, timeout=60,
                       what="the alerts published after the restart")
        finally:
            stop.set()
            running.join(30)
        assert {r["id"] for r in db.execute("SELECT id FROM relctl_rm_alerts")} == {
            *first, *second, *third}
        assert _offsets(db) == {0: 3}
    finally:
        broker.stop()
