"""The alert history over HTTP and the CLI: filters, the decision each alert caused (joined
from the event store's rollout transitions), and who may read it."""

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from relctl.adapters.commands import execute
from relctl.adapters.config import Settings
from relctl.adapters.kafka import TopicSpec, ensure_topics
from relctl.domain.alerts import Alert, AlertKind
from relctl.domain.decisions import Decision
from relctl.domain.guards import DecisionAction
from relctl.entrypoints.cli import app as cli
from relctl.infra.bootstrap import Runtime
from relctl.projections.alerts import AlertProjector
from typer.testing import CliRunner

from tests.integration.alert_support import platform_alert, publish
from tests.integration.read_more_support import ReadStack, read_stack
from tests.integration.read_support import WHO, seed_tasks

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(runtime: Runtime) -> Iterator[ReadStack]:
    with read_stack(runtime) as instance:
        yield instance


def _iso(at: datetime) -> str:
    return at.isoformat()


def _history(runtime: Runtime, settings: Settings) -> tuple[str, str]:
    """A platform alert before a rollout, a guard alert and the decision it led to."""
    assert settings.database_url and settings.kafka_bootstrap
    app = runtime.app
    seed_tasks(app, ("csat",))
    app.register_tenant("acme", "Acme", "general", **WHO)
    app.register_tenant("globex", "Globex", "general", **WHO)
    app.pin("globex", "csat", 2, **WHO, days=5)
    platform = platform_alert(0) | {"at": _iso(datetime.now(UTC)),
                                    "fired_at": _iso(datetime.now(UTC))}
    rollout = str(app.plan_rollout("csat", 2, **WHO, baseline=1, steps=[50, 100])
                  ["aggregate"]["id"])
    app.start_rollout(rollout, **WHO)  # type: ignore[arg-type]
    fired_at = datetime.now(UTC)
    decision_id = f"{rollout}:errors:{int(fired_at.timestamp() * 1000)}"
    evidence = {"rule": "errors", "decision_id": decision_id,
                "decided_at": _iso(fired_at + timedelta(milliseconds=5))}
    guard = Alert(kind=AlertKind.FIRED, scope=f"rollout|{rollout}", rule="guard:errors",
                  severity="warning", task="csat", release=2, baseline=1, at=_iso(fired_at),
                  fired_at=_iso(fired_at), evidence={"outcome": "Failed"}).wire()
    decision = Decision(rollout_id=rollout, action=DecisionAction.PAUSE,
                        decision_id=decision_id, evidence=evidence, reason="errors failed")
    execute(app, decision.wire())
    topic = settings.topic("alerts")
    asyncio.run(ensure_topics(settings.kafka_bootstrap, [TopicSpec(topic, 1)]))
    publish(settings.kafka_bootstrap, topic,
            [platform, guard, Alert.of_decision("csat", decision).wire()])
    projector = AlertProjector(settings.database_url, settings.database_schema,
                               settings.kafka_bootstrap, topic)
    asyncio.run(projector.catch_up())
    projector.close()
    return rollout, _iso(fired_at - timedelta(milliseconds=1))


def test_alerts_with_their_decisions_and_filters(runtime: Runtime, settings: Settings,
                                                 stack: ReadStack) -> None:
    rollout, before_guard = _history(runtime, settings)
    with stack.client() as http:
        every = http.get("/v1/read/alerts")
        assert every.status_code == 200, every.text
        entries = every.json()
        assert [e["kind"] for e in entries] == ["fired", "fired", "decision"]
        platform, guard, decision = entries
        assert (platform["task"], platform["release"], platform["decision"]) == ("csat", 1, None)
        assert decision["action"] == "pause" and decision["task"] == "csat"
        for linked in (guard, decision):
            assert linked["decision"]["event"] == "Rollout.Paused"
            assert linked["decision"]["actor"] == "relctl-guard"
            assert linked["decision"]["rollout_id"] == rollout

        def ids(**params: str) -> list[str]:
            answer = http.get("/v1/read/alerts", params=params)
            assert answer.status_code == 200, answer.text
            return [e["id"] for e in answer.json()]

        assert ids(rollout=rollout) == [guard["id"], decision["id"]]
        assert ids(task="csat") == [e["id"] for e in entries]
        assert ids(task="qa") == []
        assert ids(kind="decision") == [decision["id"]]
        assert ids(since=before_guard) == [guard["id"], decision["id"]]
        assert ids(until=before_guard) == [platform["id"]]
        # acme followed v1, then the rollout; globex was pinned to v2 the whole time.
        assert ids(tenant="acme") == [e["id"] for e in entries]
        assert ids(tenant="globex") == []
        assert http.get("/v1/read/alerts", params={"since": "2026-12-02T00:00:00Z",
                                                   "until": "2026-12-01T00:00:00Z"}
                        ).status_code == 422


def test_who_may_read_alerts_and_the_cli(runtime: Runtime, settings: Settings,
                                         stack: ReadStack,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    rollout, _ = _history(runtime, settings)
    with stack.client(stack.token("pat", "producer", ("acme",))) as producer:
        assert producer.get("/v1/read/alerts").status_code == 403
    auditor = stack.token("audrey", "auditor")
    with stack.client(auditor) as http:
        assert len(http.get("/v1/read/alerts").json()) == 3
    monkeypatch.setenv("RELCTL_API_URL", stack.url)
    monkeypatch.setenv("RELCTL_TOKEN", auditor)
    text = CliRunner().invoke(cli, ["alerts", "--rollout", rollout])
    assert text.exit_code == 0, text.output
    assert text.output.startswith("2 alerts")
    assert "Paused" in text.output and "relctl-guard" in text.output
    as_json = CliRunner().invoke(cli, ["alerts", "--kind", "decision", "-o", "json"])
    assert [e["action"] for e in json.loads(as_json.output)] == ["pause"]
