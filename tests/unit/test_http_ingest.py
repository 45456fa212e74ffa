"""``POST /v1/evaluations`` over FastAPI's test client, with fakes at its two edges.

The control state and the token store are small fakes and the Kafka producer records what it
is given, so these tests pin the response shapes and the routing to topics without a broker or
a server (httpx calls the ASGI app in-process); tests/integration/test_ingest.py runs the same
endpoint against the real ones.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.errors import KafkaConnectionError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from relctl.adapters.config import Settings
from relctl.adapters.ingest import decode
from relctl.adapters.postgres import Principal
from relctl.domain import errors
from relctl.domain.evaluation import EVALUATION_TYPE
from relctl.entrypoints.api.auth import Authenticator
from relctl.entrypoints.api.ingest import ingest_router

from tests.unit.evaluation_support import evaluation

TOKENS = {"p": Principal("acme-pipeline", "producer", ("acme",)),
          "a": Principal("root", "admin"), "u": Principal("audit", "auditor")}


class FakeTokens:
    def authenticate(self, token: str) -> Principal | None:
        return TOKENS.get(token)


class FakeView:
    def release(self, task: str, number: int) -> object | None:
        return object() if (task, number) == ("csat", 1) else None


class FakeState:
    def __init__(self) -> None:
        self.view = FakeView()
        self.catch_ups = 0

    def catch_up(self) -> int:
        self.catch_ups += 1
        return 0


@dataclass
class FakeRuntime:
    settings: Settings
    state: FakeState = field(default_factory=FakeState)


class FakeProducer:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        self.started = 0
        self.fail = fail

    async def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, key: bytes | None,
                   headers: list[tuple[str, bytes]]) -> "asyncio.Future[None]":
        if self.fail:
            raise KafkaConnectionError("broker gone")
        self.sent.append((topic, key, value, headers))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def topic(self, name: str) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
        return [(k, v, dict(h)) for t, k, v, h in self.sent if t == f"t.{name}"]


def make_client(bootstrap: str | None = "broker:9092", fail: bool = False,
                ) -> tuple[httpx.AsyncClient, FakeProducer, FakeRuntime]:
    runtime = FakeRuntime(Settings(data_dir=Path("/nonexistent"), kafka_bootstrap=bootstrap,
                                   topic_prefix="t"))
    producer = FakeProducer(fail)
    app = FastAPI()

    @app.exception_handler(errors.RelctlError)
    async def domain_error(_: Request, exc: errors.RelctlError) -> JSONResponse:
        return JSONResponse({"error": {"code": exc.code, "message": str(exc)}},
                            status_code=403 if isinstance(exc, errors.ForbiddenError) else 401)

    app.include_router(ingest_router(runtime, Authenticator(FakeTokens()),  # type: ignore[arg-type]
                                     producer_factory=lambda _: producer))  # type: ignore[arg-type,return-value]
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://relctl")
    return http, producer, runtime


Made = tuple[httpx.AsyncClient, FakeProducer, FakeRuntime]


@pytest.fixture
async def client() -> AsyncIterator[Made]:
    made = make_client()
    async with made[0]:
        yield made


async def post(client: httpx.AsyncClient, body: Any, token: str = "p",  # noqa: S107
               **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return await client.post("/v1/evaluations", content=content,
                       headers={"Authorization": f"Bearer {token}", **headers})


async def test_a_mixed_batch(client: Made) -> None:
    http, producer, runtime = client
    items = [evaluation(call_id="c0"), evaluation(tenant="other"), evaluation(tokens=-1),
             evaluation(release=2), evaluation(call_id="c4")]
    response = await post(http, items)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2, "rejected": [
        {"index": 1, "reason": "producer acme-pipeline may not write for tenant other"},
        {"index": 2, "reason": "tokens: Input should be greater than or equal to 0"},
        {"index": 3, "reason": "unknown release csat v2"},
    ]}
    accepted = producer.topic("evaluations")
    assert [k for k, _, _ in accepted] == [b"acme", b"acme"]
    assert [h["ce_type"] for _, _, h in accepted] == [EVALUATION_TYPE.encode()] * 2
    assert [decode(v, h).records[0].call_id for _, v, h in accepted] == ["c0", "c4"]
    dlq = producer.topic("dlq")
    assert [h["relctl_dlq_index"] for _, _, h in dlq] == [b"1", b"2", b"3"]
    assert {h["relctl_dlq_source"] for _, _, h in dlq} == {b"http:acme-pipeline"}
    assert orjson.loads(dlq[1][1]) == items[2]
    assert runtime.state.catch_ups == 1


async def test_every_record_rejected_is_422(client: Made) -> None:
    http, producer, _ = client
    response = await post(http, b"{oops")
    assert response.status_code == 422
    body = response.json()
    assert body["accepted"] == 0 and body["error"]["code"] == "validation_error"
    [rejected] = body["rejected"]
    assert rejected["index"] is None and rejected["reason"].startswith("not valid JSON")
    [(_, value, headers)] = producer.topic("dlq")
    assert value == b"{oops" and headers["relctl_dlq_kind"] == b"json"
    assert producer.topic("evaluations") == []


async def test_content_modes_over_http(client: Made) -> None:
    http, producer, _ = client
    binary = await post(http, evaluation(), **{"ce-specversion": "1.0", "ce-type": EVALUATION_TYPE,
                                         "ce-id": "1", "ce-source": "test"})
    structured = await post(http, {"specversion": "1.0", "type": EVALUATION_TYPE, "id": "2",
                             "source": "test", "data": evaluation(call_id="s")},
                      **{"Content-Type": "application/cloudevents+json"})
    empty = await post(http, [])
    assert [r.status_code for r in (binary, structured, empty)] == [202, 202, 202]
    assert empty.json() == {"accepted": 0, "rejected": []}
    assert len(producer.topic("evaluations")) == 2 and producer.started == 1


async def test_admins_may_write_for_any_tenant(client: Made) -> None:
    http, _, _ = client
    response = await post(http, [evaluation(tenant="other"), evaluation()], token="a")
    assert response.json() == {"accepted": 2, "rejected": []}


async def test_roles(client: Made) -> None:
    http, producer, _ = client
    assert (await post(http, evaluation(), token="u")).status_code == 403
    assert (await post(http, evaluation(), token="nobody")).status_code == 401
    assert (await http.post("/v1/evaluations", content=b"{}")).status_code == 401
    assert producer.sent == []


async def test_no_broker_configured_is_503() -> None:
    http, producer, _ = make_client(bootstrap=None)
    async with http:
        response = await post(http, evaluation())
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert producer.sent == []


async def test_broker_failure_is_503() -> None:
    http, _, _ = make_client(fail=True)
    async with http:
        response = await post(http, evaluation())
    assert response.status_code == 503
    assert "retry" in response.json()["error"]["message"]


async def test_openapi_describes_the_body(client: Made) -> None:
    http, _, _ = client
    operation = (await http.get("/openapi.json")).json()["paths"]["/v1/evaluations"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "application/cloudevents+json",
                            "application/cloudevents-batch+json"}
    one, many = content["application/json"]["schema"]["oneOf"]
    assert "occurred_at" in one["required"] and many["maxItems"] == 1000
