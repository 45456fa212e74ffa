"""The gate runner passes ``messages`` and ``response_format`` through the SDK's ``extra_body``
to skip its per-call transform of them (adapters/gate_runner.py, ``_create``). That is only
allowed because the request on the wire is the same as the plain SDK call's: proven here by
capturing both bodies at the HTTP transport (the model provider is the external service)."""

import asyncio
from typing import Any

import httpx2
import orjson
from openai import AsyncOpenAI, DefaultAsyncHttpxClient
from relctl.adapters.gate_runner import (
    EndpointConfig,
    GateRunner,
    ReleaseUnderTest,
    structured_format,
)
from relctl.domain.gate_prompt import CALL_REF_HEADER, build_messages
from relctl.domain.gates import SCORECARD_SCHEMA, Arm

ANSWER = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m-1",
          "choices": [{"index": 0, "finish_reason": "stop",
                       "message": {"role": "assistant", "content": "{}"}}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def capturing_client(bodies: list[dict[str, Any]], reject_format: bool = False) -> AsyncOpenAI:
    def answer(request: httpx2.Request) -> httpx2.Response:
        body = orjson.loads(request.content)
        bodies.append(body)
        if reject_format and "response_format" in body:
            return httpx2.Response(400, json={"error": {
                "message": "response_format is not supported", "type": "invalid_request"}})
        return httpx2.Response(200, json=ANSWER)

    return AsyncOpenAI(base_url="http://model.test/v1", api_key="k", max_retries=0,
                       http_client=DefaultAsyncHttpxClient(transport=httpx2.MockTransport(answer)))


RELEASE = ReleaseUnderTest(release_id="r", arm=Arm.CANDIDATE, prompt_template="Score it.",
                           model="m-1", temperature=0.2, seed=7, output_schema=SCORECARD_SCHEMA)
MESSAGES = build_messages("Score it.", 'Agent: "hello" \\ <b>caf\u00e9</b>\nCustomer: ok')


async def runner_body(reject_format: bool = False) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    async with capturing_client(bodies, reject_format) as client:
        runner = GateRunner(EndpointConfig(base_url="http://model.test/v1", pricing={}),
                            client=client)
        _, structured = await runner._create(client, RELEASE, MESSAGES, "call-1")
    assert structured is not reject_format
    return bodies


async def plain_body(structured: bool) -> dict[str, Any]:
    bodies: list[dict[str, Any]] = []
    extra: Any = {"response_format": structured_format(RELEASE)} if structured else {}
    async with capturing_client(bodies) as client:
        await client.chat.completions.create(
            model="m-1", messages=MESSAGES,  # type: ignore[arg-type]
            temperature=0.2, seed=7, extra_headers={CALL_REF_HEADER: "call-1"}, **extra)
    return bodies[0]


def test_structured_request_is_the_plain_sdk_calls_body() -> None:
    sent = asyncio.run(runner_body())
    assert sent == [asyncio.run(plain_body(structured=True))]
    assert sent[0]["messages"] == MESSAGES


def test_fallback_without_structured_output_is_the_plain_sdk_calls_body() -> None:
    sent = asyncio.run(runner_body(reject_format=True))
    assert len(sent) == 2  # refused with response_format, then sent without it
    assert sent[1] == asyncio.run(plain_body(structured=False))
    assert "response_format" not in sent[1] and sent[1]["messages"] == MESSAGES
