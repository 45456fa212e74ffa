"""``POST /v1/evaluations``: evaluation records over HTTP, for producers that do not speak Kafka.

The body is decoded exactly as the Kafka worker decodes a message (CloudEvents binary,
structured or batch, or plain JSON), then checked against what only the control plane knows:
which tenants the token may write for, and which releases exist. Good records are produced to
``relctl.evaluations`` as binary-mode CloudEvents keyed by tenant, the rest go to ``relctl.dlq``
with the reason, and the response tells the producer which items failed and why. The reply is
sent only after the broker has acknowledged both, so a 202 means the records are durable.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from relctl.adapters.ingest import (
    count_accepted,
    count_rejected,
    decode,
    dlq_record,
    screen,
    to_kafka,
)
from relctl.adapters.kafka import make_producer
from relctl.adapters.postgres import Principal
from relctl.domain.evaluation import (
    EVALUATION_TYPE,
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    evaluation_json_schema,
)
from relctl.entrypoints.api.auth import PRODUCERS, Authenticator
from relctl.infra.bootstrap import Runtime

# A little above the largest acceptable batch, so an over-limit batch still reaches the DLQ
# with its reason; anything bigger is refused before it is read into memory.
MAX_BODY_BYTES = MAX_BATCH_BYTES + 64 * 1024

logger = logging.getLogger(__name__)

SOURCE = "http"


def _request_body() -> dict[str, Any]:
    """OpenAPI for a body the endpoint reads raw: what each content type carries."""
    record = {k: v for k, v in evaluation_json_schema().items() if k != "$id"}
    event = {"type": "object", "required": ["specversion", "id", "source", "type", "data"],
             "properties": {"specversion": {"const": "1.0"},
                            "type": {"const": EVALUATION_TYPE},
                            "data": record}}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [
            record, {"type": "array", "items": record, "maxItems": MAX_BATCH_RECORDS}]}},
        "application/cloudevents+json": {"schema": event},
        "application/cloudevents-batch+json": {"schema": {
            "type": "array", "items": event, "maxItems": MAX_BATCH_RECORDS}},
    }}}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """relctl's error body, ``{"error": {"code", "message"}}``, for every endpoint."""
    return JSONResponse({**extra, "error": {"code": code, "message": message}},
                        status_code=status)


class LoopProducers:
    """One started Kafka producer per event loop, created on first use.

    aiokafka clients are bound to the loop they start on, and the same app may be served from
    more than one (the tests run one loop per server). The API runs without an ASGI lifespan,
    so each producer is stopped by a task that waits for its loop to shut down (``asyncio.run``
    and uvicorn cancel every task then); otherwise its broker connections would linger until
    the garbage collector found them.
    """

    def __init__(self, factory: Callable[[str], AIOKafkaProducer]) -> None:
        self.factory = factory
        self._started: dict[int, tuple[asyncio.AbstractEventLoop, AIOKafkaProducer,
                                       asyncio.Task[None]]] = {}
        self._locks: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}

    async def get(self, bootstrap: str) -> AIOKafkaProducer:
        loop = asyncio.get_running_loop()
        key = id(loop)  # checked against the loop itself: ids of dead loops are reused
        found = self._started.get(key)
        if found is not None and found[0] is loop:
            return found[1]
        held = self._locks.get(key)
        if held is None or held[0] is not loop:
            held = self._locks[key] = (loop, asyncio.Lock())
        async with held[1]:
            found = self._started.get(key)
            if found is None or found[0] is not loop:
                producer = self.factory(bootstrap)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                keeper = loop.create_task(self._stop_with_loop(key, loop, producer))
                found = self._started[key] = (loop, producer, keeper)
        return found[1]

    async def _stop_with_loop(self, key: int, loop: asyncio.AbstractEventLoop,
                              producer: AIOKafkaProducer) -> None:
        try:
            await loop.create_future()  # never set: ends when the loop cancels its tasks
        finally:
            if key in self._started and self._started[key][0] is loop:
                del self._started[key]
            if key in self._locks and self._locks[key][0] is loop:
                del self._locks[key]
            await producer.stop()


def ingest_router(
    runtime: Runtime, auth: Authenticator,
    producer_factory: Callable[[str], AIOKafkaProducer] = make_producer,
) -> APIRouter:
    """The evaluation ingest endpoint; ``producer_factory`` lets tests count what is sent."""
    router = APIRouter(tags=["evaluations"])
    settings = runtime.settings
    producers = LoopProducers(producer_factory)

    def known_releases(pairs: set[tuple[str, int]]) -> set[tuple[str, int]]:
        runtime.state.catch_up()
        view = runtime.state.view
        return {(task, n) for task, n in pairs if view.release(task, n) is not None}

    @router.post("/v1/evaluations", status_code=202, openapi_extra=_request_body(),
                 responses={422: {"description": "every record was rejected"},
                            503: {"description": "no broker configured or reachable"}})
    async def ingest(request: Request, who: Principal = auth.role(*PRODUCERS)) -> JSONResponse:
        """Accept evaluation records: CloudEvents (binary mode with ``ce-*`` headers,
        structured, or a batch) or plain JSON (one record or an array). Each rejected item is
        listed with its position and reason and kept on the DLQ with its original bytes."""
        bootstrap = settings.kafka_bootstrap
        if bootstrap is None:
            return error_response(503, "unavailable", "no Kafka broker is configured "
                          "(RELCTL_KAFKA_BOOTSTRAP); evaluations cannot be accepted")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return error_response(
                413, "payload_too_large", f"the body is {declared} bytes; the limit is "
                f"{MAX_BODY_BYTES} (split it into batches of at most {MAX_BATCH_RECORDS} records)")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return error_response(413, "payload_too_large",
                              f"the body exceeds the {MAX_BODY_BYTES}-byte limit")
        decoded = await asyncio.to_thread(decode, bytes(body), request.headers)
        pairs = {(r.task, r.release) for r in decoded.records if who.may_act_for(r.tenant)}
        known = await asyncio.to_thread(known_releases, pairs) if pairs else set()
        result = screen(decoded, who, lambda task, n: (task, n) in known)
        try:
            sender = await producers.get(bootstrap)
            pending = [await sender.send(settings.topic("evaluations"), value=value, key=key,
                                         headers=headers)
                       for key, value, headers in map(to_kafka, result.records)]
            pending += [await sender.send(settings.topic("dlq"), value=value, key=key,
                                          headers=headers)
                        for key, value, headers in (dlq_record(r, f"{SOURCE}:{who.actor}")
                                                    for r in result.rejected)]
            await asyncio.gather(*pending)
        except KafkaError as exc:
            logger.warning("evaluation ingest could not reach the broker: %s", exc)
            return error_response(
                503, "unavailable", f"the broker did not accept the records ({exc}); nothing is "
                "guaranteed to be stored, retry later")
        count_accepted(len(result.records), SOURCE)
        count_rejected(result.rejected, SOURCE)
        body_out: dict[str, Any] = {
            "accepted": len(result.records),
            "rejected": [{"index": r.index, "reason": r.reason} for r in result.rejected],
        }
        if result.rejected and not result.records:
            return error_response(422, "validation_error",
                          f"every record was rejected ({len(result.rejected)}); see 'rejected'",
                          **body_out)
        return JSONResponse(body_out, status_code=202)

    return router
