"""Liveness, readiness and Prometheus metrics."""

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from relctl.adapters.kafka import existing_topics
from relctl.infra.bootstrap import Runtime


class Alive(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    database: bool
    broker: bool | None
    relay_position: int | None
    relay_publishing: bool | None


def health_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Alive)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", response_model=Readiness,
                responses={503: {"model": Readiness, "description": "not ready"}})
    async def readyz() -> JSONResponse:
        database = await asyncio.to_thread(runtime.db.ping)
        broker: bool | None = None
        if runtime.settings.kafka_bootstrap:
            try:
                await asyncio.wait_for(existing_topics(runtime.settings.kafka_bootstrap), 3)
                broker = True
            except Exception:  # any failure to reach the broker means not ready
                broker = False
        ready = database and broker is not False
        relay = runtime.relay
        body: dict[str, Any] = {"ready": ready, "database": database, "broker": broker,
                                "relay_position": relay.position if relay else None,
                                "relay_publishing": relay.broker_ok if relay else None}
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get("/metrics", response_class=Response, responses={200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
