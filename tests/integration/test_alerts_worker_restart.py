"""The alerts projection across a real guard worker restart: the worker is SIGKILLed mid-breach
and restarted while the projection consumes relctl.alerts; the history ends equal to a clean
re-consume, with the decision once and linked to the rollback the store recorded."""

import asyncio
import threading
import time
from uuid import UUID

import psycopg
import pytest
from relctl.adapters.postgres import Database
from relctl.infra.bootstrap import Runtime
from relctl.projections import alerts as alert_history
from relctl.projections.alerts import AlertProjector
from relctl.projections.runner import ProjectorSet

from tests.conftest import wait_until
from tests.integration.guard_helpers import (
    WorkerProcess,
    evaluation,
    produce,
    rollout_with_guard,
    rule,
)

pytestmark = pytest.mark.integration


def _state(runtime: Runtime, rollout: str) -> str:
    return str(runtime.app.rollout(UUID(rollout)).state)


def test_alerts_across_a_worker_restart(runtime: Runtime, worker: WorkerProcess) -> None:
    settings = runtime.settings
    assert settings.database_url and settings.kafka_bootstrap
    topic = settings.topic("alerts")
    rollout = rollout_with_guard(runtime, "kill", [rule(threshold=0.05, for_seconds=4)])
    projector = AlertProjector(settings.database_url, settings.database_schema,
                               settings.kafka_bootstrap, topic, batch_size=3)
    stop = threading.Event()
    consuming = threading.Thread(target=lambda: asyncio.run(projector.run(stop, poll_ms=100)))
    consuming.start()
    clean_schema = settings.database_schema + "_clean"
    try:
        worker.start()
        produce(settings.kafka_bootstrap, settings.topic("evaluations"),
                [evaluation("kill", 2, i, error=True) for i in range(60)])
        wait_until(lambda: worker.metric("relctl_guard_rule_outcome", rollout=rollout,
                                         rule="errors") == 2, timeout=60, what="breach pending")
        worker.kill()
        worker.start()
        for batch in range(30):  # the bad traffic keeps flowing, as production's would
            produce(settings.kafka_bootstrap, settings.topic("evaluations"),
                    [evaluation("kill", 2, 1000 + batch * 10 + i, error=True)
                     for i in range(10)])
            if _state(runtime, rollout) == "RolledBack":
                break
            time.sleep(0.5)  # pacing the producer, not waiting for an outcome
        wait_until(lambda: _state(runtime, rollout) == "RolledBack", timeout=60,
                   what="the decision after the restart")
        db = runtime.db
        worker.stop()  # nothing publishes alerts any more: the topic's end is fixed
        stop.set()
        consuming.join(30)
        asyncio.run(projector.catch_up())  # the same history, from its stored offsets
        projector.close()
        with ProjectorSet(runtime.app, settings.database_url,
                          settings.database_schema) as projectors:
            projectors.catch_up()
        entries = alert_history.alerts(db, rollout=rollout)
        decisions = [e for e in entries if e.kind == "decision"]
        assert len(decisions) == 1, [e.id for e in decisions]
        link = decisions[0].decision
        assert link is not None and link.event == "Rollout.RolledBack"
        assert link.actor == "relctl-guard"
        clean = AlertProjector(settings.database_url, clean_schema, settings.kafka_bootstrap,
                               topic)
        asyncio.run(clean.catch_up())
        clean.close()
        other = Database(settings.database_url, clean_schema)
        other.open()
        try:
            assert alert_history.content_hash(other) == alert_history.content_hash(db)
        finally:
            other.close()
    finally:
        stop.set()
        consuming.join(30)
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{clean_schema}" CASCADE')
