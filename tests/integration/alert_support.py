"""Alerts to publish in the alerts-projection tests: real wire forms, real CloudEvents ids."""

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from relctl.adapters.cloudevents import alert_record
from relctl.adapters.kafka import make_producer
from relctl.domain.alerts import Alert, AlertKind

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def platform_alert(n: int, task: str = "csat", release: int = 1,
                   kind: AlertKind = AlertKind.FIRED) -> dict[str, Any]:
    """The n-th distinct platform alert (its instant makes its CloudEvents id unique)."""
    at = (START + timedelta(seconds=n)).isoformat()
    return Alert(kind=kind, scope=f"release|{task}|{release}", rule="llm-error-rate",
                 severity="critical", summary="LLM error rate > 1% for 10 min", task=task,
                 release=release, cohort="all", at=at, fired_at=at,
                 evidence={"metric": "llm_error_rate", "value": 0.02 + n / 1e6,
                           "samples": 200}).wire()


async def _publish(bootstrap: str, topic: str, alerts: Iterable[dict[str, Any]],
                   partition_of: Any = None) -> list[str]:
    producer = make_producer(bootstrap)
    await producer.start()
    ids = []
    try:
        for i, alert in enumerate(alerts):
            key, value, headers = alert_record(alert)
            partition = partition_of(i) if partition_of else None
            await producer.send(topic, value=value, key=key, headers=headers,
                                partition=partition)
            ids.append(dict(headers)["ce_id"].decode())
        await producer.flush()
    finally:
        await producer.stop()
    return ids


def publish(bootstrap: str, topic: str, alerts: Iterable[dict[str, Any]],
            partitions: int = 1) -> list[str]:
    """Publish the alerts (spread over ``partitions`` round robin); return their ids."""
    return asyncio.run(_publish(bootstrap, topic, list(alerts),
                                lambda i: i % partitions))
