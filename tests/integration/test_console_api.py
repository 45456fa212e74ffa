"""The console's reads and live stream over HTTP, with the projector running beside the API
(as in `relctl up`) and the real broker carrying an alert. No browser: these run wherever the
integration tier runs."""

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from relctl.adapters.config import Settings
from relctl.adapters.kafka import ensure_topics, topic_specs
from relctl.domain.alerts import Alert, AlertKind
from relctl.infra.bootstrap import Runtime
from relctl.projections.alerts import AlertProjector

from tests.integration.conftest import Server
from tests.integration.read_more_support import projecting
from tests.integration.read_support import WHO, seed_tasks

pytestmark = pytest.mark.integration


@pytest.fixture
def projected(runtime: Runtime) -> Iterator[None]:
    settings = runtime.settings
    asyncio.run(ensure_topics(settings.kafka_bootstrap or "", topic_specs(settings)))
    with projecting(runtime):
        yield


async def send_alert(settings: Settings, alert: Alert) -> None:
    """One alert on the alerts topic, as the worker would publish it."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("alerts"), json.dumps(alert.wire()).encode())
    finally:
        await producer.stop()


class Events:
    """The SSE stream read line by line, as (event, data) pairs."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def next(self, kind: str, limit: int = 200) -> dict[str, Any]:
        event = None
        for _ in range(limit):
            line = next(self.lines)
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == kind:
                return dict(json.loads(line[6:]))
        raise AssertionError(f"no {kind} event in {limit} lines")


def test_the_stream_starts_with_a_snapshot_then_carries_changes(
        runtime: Runtime, projected: None, server: Server) -> None:
    seed_tasks(runtime.app, ("csat",))
    auditor = server.token("eve", "auditor")
    with server.client(auditor) as http, http.stream("GET", "/console/api/stream",
                                                     timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        events = Events(response)
        snapshot = events.next("snapshot")
        assert snapshot["whoami"] == {"actor": "eve", "role": "auditor"}
        assert snapshot["rollouts"] == []
        rollout = runtime.app.plan_rollout("csat", 2, **WHO)["aggregate"]["id"]
        card = events.next("rollout")
        assert (card["id"], card["state"], card["task"]) == (rollout, "Planned", "csat")
        runtime.app.start_rollout(UUID(rollout), **WHO)
        assert events.next("audit")["task"] == "csat"
        assert events.next("rollout")["state"] == "Running"


def test_an_alert_on_the_topic_reaches_the_stream_and_the_filters(
        runtime: Runtime, projected: None, server: Server) -> None:
    settings = runtime.settings
    alert = Alert(kind=AlertKind.FIRED, scope="release|csat|2", rule="llm-error-rate",
                  severity="critical", summary="LLM error rate > 1% for 10 min", task="csat",
                  release=2, cohort="all", at="2026-12-01T10:00:00+00:00",
                  fired_at="2026-12-01T10:00:00+00:00", evidence={"value": 0.2})

    with server.client() as http, http.stream("GET", "/console/api/stream",
                                              timeout=30) as response:
        events = Events(response)
        events.next("snapshot")
        asyncio.run(send_alert(settings, alert))
        seen = events.next("alert")
        assert (seen["rule"], seen["kind"], seen["task"]) == ("llm-error-rate", "fired", "csat")
    with server.client() as http:
        assert [a["rule"] for a in http.get("/console/api/alerts",
                                            params={"task": "csat"}).json()] == ["llm-error-rate"]
        assert http.get("/console/api/alerts", params={"task": "qa"}).json() == []
        assert http.get("/console/api/alerts", params={"actor": "relctl-guard"}).json() == []
        assert http.get("/console/api/alerts", params={
            "since": "2026-12-01T11:00:00Z"}).json() == []


def test_the_audit_timeline_filters_newest_first(
        runtime: Runtime, projected: None, server: Server) -> None:
    seed_tasks(runtime.app, ("csat", "qa"))
    runtime.app.register_tenant("acme", "Acme", "general", actor="ops@example.com",
                                reason="onboarding")
    runtime.app.pin("acme", "csat", 2, actor="oncall@example.com", reason="hotfix", days=3)
    with server.client() as http:
        rows = http.get("/console/api/audit", params={"task": "csat"}).json()
        assert rows and all(r["task"] == "csat" for r in rows)
        assert [r["seq"] for r in rows] == sorted((r["seq"] for r in rows), reverse=True)
        pinned = http.get("/console/api/audit", params={"actor": "oncall@example.com"}).json()
        assert [(r["event"], r["tenant"], r["reason"]) for r in pinned] == [
            ("Tenant.Pinned", "acme", "hotfix")]
        assert http.get("/console/api/audit", params={"tenant": "nobody"}).json() == []
        naive = http.get("/console/api/audit", params={"since": "2026-01-01T00:00:00"})
        assert naive.status_code == 422
        inventory = http.get("/console/api/inventory").json()
        assert [(p["tenant"], p["release"]) for p in inventory["pins"]] == [("acme", 2)]
        assert inventory["tenants"][0]["name"] == "Acme"
    with httpx.Client(base_url=server.url) as anonymous:
        for path in ("/console/api/audit", "/console/api/inventory", "/console/api/alerts"):
            assert anonymous.get(path).status_code == 401
    producer = server.token("pipeline", "producer", ("acme",))
    with server.client(producer) as http:
        assert http.get("/console/api/audit").status_code == 403


def test_a_page_that_comes_back_gets_a_fresh_snapshot_and_the_changes_after_it(
        runtime: Runtime, projected: None, server: Server) -> None:
    """The watchers stop when the last page leaves and start again for the next one."""
    seed_tasks(runtime.app, ("csat",))
    rollout = runtime.app.plan_rollout("csat", 2, **WHO)["aggregate"]["id"]
    for round_ in range(3):
        with server.client() as http, http.stream("GET", "/console/api/stream",
                                                  timeout=30) as response:
            events = Events(response)
            cards = {c["id"]: c for c in events.next("snapshot")["rollouts"]}
            assert cards[rollout]["state"] == ("Planned", "Running", "Paused")[round_]
            if round_ == 0:
                runtime.app.start_rollout(UUID(rollout), **WHO)
                assert events.next("rollout")["state"] == "Running"
            elif round_ == 1:
                runtime.app.pause_rollout(UUID(rollout), **WHO)
                assert events.next("rollout")["state"] == "Paused"


def test_the_alert_list_comes_from_the_alerts_read_model_and_lists_each_alert_once(
        runtime: Runtime, server: Server) -> None:
    """An alert the API process never saw live (it was sent before this page, or before a
    restart) is listed from the alerts projection; one seen both ways is listed once."""
    settings = runtime.settings
    assert settings.database_url and settings.kafka_bootstrap
    asyncio.run(ensure_topics(settings.kafka_bootstrap, topic_specs(settings)))
    alert = Alert(kind=AlertKind.FIRED, scope="release|qa|3", rule="score-shift",
                  severity="warning", summary="mean score moved", task="qa", release=3,
                  cohort="all", at="2026-12-02T09:00:00+00:00",
                  fired_at="2026-12-02T09:00:00+00:00", evidence={"value": 7.5})

    async def send_and_project() -> int:
        await send_alert(settings, alert)
        projector = AlertProjector(settings.database_url or "", settings.database_schema,
                                   settings.kafka_bootstrap or "", settings.topic("alerts"))
        try:
            return await projector.catch_up()
        finally:
            projector.close()

    assert asyncio.run(send_and_project()) >= 1
    with server.client() as http:  # no page open yet: the feed's live buffer is empty
        listed = http.get("/console/api/alerts", params={"task": "qa"}).json()
        assert [(a["rule"], a["summary"]) for a in listed] == [("score-shift",
                                                                "mean score moved")]
    with server.client() as http, http.stream("GET", "/console/api/stream",
                                              timeout=30) as response:
        events = Events(response)
        events.next("snapshot")
        assert events.next("alert")["rule"] == "score-shift"  # read again from the topic
        listed = http.get("/console/api/alerts", params={"task": "qa"}).json()
        assert [a["rule"] for a in listed] == ["score-shift"]
