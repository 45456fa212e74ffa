"""Evaluation ingest end to end: HTTP and the Python producer, into the real broker's topics."""

import asyncio

import httpx
import orjson
import pytest
from relctl.adapters.config import Settings
from relctl.adapters.ingest import BATCH, decode
from relctl.adapters.kafka import ensure_topics, topic_specs
from relctl.adapters.producer import EvaluationProducer
from relctl.domain.evaluation import EVALUATION_TYPE, EvaluationRecord

from tests.integration.conftest import SPEC, Server
from tests.integration.kafka_helpers import read_records, read_topic
from tests.unit.evaluation_support import evaluation

pytestmark = pytest.mark.integration


@pytest.fixture
def ready(server: Server, settings: Settings) -> Server:
    """Topics created and task ``csat`` v1 promoted Stable, through the HTTP API."""
    assert settings.kafka_bootstrap
    asyncio.run(ensure_topics(settings.kafka_bootstrap, topic_specs(settings)))
    with server.client() as api:
        created = api.post("/v1/releases", json={"task": "csat", "spec": SPEC,
                                                 "reason": "first prompt"})
        assert created.status_code == 201, created.text
        waived = api.post("/v1/tasks/csat/gate-waiver", json={"reason": "ingest, not gates"})
        assert waived.status_code == 200, waived.text
        promoted = api.post("/v1/releases/csat/1/promote",
                            json={"stage": "Stable", "reason": "regression suite ok"})
        assert promoted.status_code == 200, promoted.text
    return server


def post(client: httpx.Client, content: bytes, **headers: str) -> httpx.Response:
    return client.post("/v1/evaluations", content=content, headers=headers)


def test_http_ingest_routes_records_and_rejects(ready: Server, settings: Settings) -> None:
    bootstrap = settings.kafka_bootstrap or ""
    producer = ready.token("acme-pipeline", "producer", ("acme",))
    items = [evaluation(call_id=f"c{i}") for i in range(3)] + [
        evaluation(call_id="wrong-types", tokens="many", latency_ms="fast"),
        evaluation(call_id="other-tenant", tenant="other"),
        evaluation(call_id="unknown-release", release=7),
    ]
    with ready.client(producer) as client:
        response = post(client, orjson.dumps(items), **{"Content-Type": "application/json"})
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["accepted"] == 3
        assert [r["index"] for r in body["rejected"]] == [3, 4, 5]
        reasons = [r["reason"] for r in body["rejected"]]
        assert "tokens: Input should be a valid integer" in reasons[0]
        assert "latency_ms: Input should be a valid number" in reasons[0]
        assert reasons[1:] == ["producer acme-pipeline may not write for tenant other",
                               "unknown release csat v7"]

        bad_json = post(client, b'{"tenant": "acme", oops')
        assert bad_json.status_code == 422
        assert bad_json.json()["error"]["code"] == "validation_error"
        assert bad_json.json()["rejected"][0]["reason"].startswith("not valid JSON")

    evaluations = read_topic(bootstrap, settings.topic("evaluations"),
                             settings.evaluation_partitions, 3)
    assert sorted(e["id"] for e in evaluations) == [
        "acme:c0:production", "acme:c1:production", "acme:c2:production"]
    assert {(e["_key"], e["type"], e["subject"]) for e in evaluations} == {
        ("acme", EVALUATION_TYPE, "acme")}
    assert len({e["_partition"] for e in evaluations}) == 1, "keyed by tenant: one partition"
    assert sorted(EvaluationRecord.from_mapping(e["data"]).call_id
                  for e in evaluations) == ["c0", "c1", "c2"]

    dlq = read_records(bootstrap, settings.topic("dlq"), 1, 4)
    assert len(dlq) == 4
    headers = [dict(r.headers) for r in dlq]
    assert [h["relctl_dlq_kind"] for h in headers] == [
        b"schema", b"unauthorized", b"unknown_release", b"json"]
    assert [h["relctl_dlq_reason"].decode() for h in headers[:3]] == reasons
    assert {h["relctl_dlq_source"] for h in headers} == {b"http:acme-pipeline"}
    assert orjson.loads(dlq[0].value) == items[3]
    assert [orjson.loads(r.value)["call_id"] for r in dlq[1:3]] == ["other-tenant",
                                                                     "unknown-release"]
    assert dlq[3].value == b'{"tenant": "acme", oops'


def test_only_producers_and_admins_may_ingest(ready: Server) -> None:
    auditor = ready.token("audit", "auditor")
    operator = ready.token("ops", "operator")
    content = orjson.dumps(evaluation())
    for token in (auditor, operator):
        with ready.client(token) as client:
            refused = post(client, content)
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "forbidden"
    with ready.client() as admin:
        assert post(admin, orjson.dumps(evaluation(tenant="anyone"))).status_code == 202


def test_python_producer_batch_is_one_kafka_record(ready: Server, settings: Settings) -> None:
    bootstrap = settings.kafka_bootstrap or ""
    topic = settings.topic("evaluations")
    batch = [EvaluationRecord.from_mapping(evaluation(call_id=f"b{i}")) for i in range(5)]

    async def send() -> None:
        async with EvaluationProducer(bootstrap, topic=topic) as producer:
            futures = await producer.send_batch([*batch[:4], batch[4].model_dump(mode="json")])
            assert len(futures) == 1
            await producer.send(evaluation(call_id="single", tenant="other"))

    asyncio.run(send())
    found = read_records(bootstrap, topic, settings.evaluation_partitions, 2)
    assert len(found) == 2
    [batched] = [r for r in found if dict(r.headers).get("content-type") == BATCH.encode()]
    [single] = [r for r in found if r is not batched]
    assert batched.key == b"acme" and single.key == b"other"
    decoded = decode(batched.value, batched.headers)
    assert decoded.rejected == [] and decoded.records == batch
    assert decode(single.value, single.headers).records[0].call_id == "single"
