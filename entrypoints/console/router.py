"""``/console``: the page, its static assets, the reads it needs and its live stream.

The page signs in with a relctl token kept in the tab's sessionStorage and sends it as
``Authorization: Bearer`` on every request, its live stream included (read with ``fetch``,
not ``EventSource``, which cannot send headers): the token is never in a URL, a cookie or a
log line. Actions call the same ``/v1`` operations as the CLI, so roles, validation and audit
are the API's own. Nothing relies on ambient credentials, so a form posted from another site
carries none and is refused (401). Every response of the console carries a strict
Content-Security-Policy: scripts and styles from this origin only, no inline script.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from importlib import resources
from typing import Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response, StreamingResponse
from relctl.adapters.postgres import Principal
from relctl.domain import errors
from relctl.entrypoints.api.auth import READERS, Authenticator
from relctl.entrypoints.api.common import READ_ERRORS, Instant
from relctl.entrypoints.console.feed import Change, ConsoleFeed
from relctl.infra.bootstrap import Runtime

HEARTBEAT_SECONDS = 15.0
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Resource-Policy": "same-origin",
}
ASSETS = {"console.js": "text/javascript; charset=utf-8",
          "console.css": "text/css; charset=utf-8",
          "icon.svg": "image/svg+xml"}


def _asset(name: str) -> bytes:
    return resources.files("relctl.entrypoints.console").joinpath("static", name).read_bytes()


def _aware(at: datetime | None, name: str) -> datetime | None:
    if at is not None and at.tzinfo is None:
        raise errors.ValidationError(f"'{name}' needs a timezone, e.g. 2026-11-21T10:00:00Z")
    return at


def sse(event: str, data: Any) -> bytes:
    """One server-sent event (``data`` as one JSON line)."""
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def console_router(runtime: Runtime, auth: Authenticator,
                   feed: ConsoleFeed | None = None) -> APIRouter:
    router = APIRouter(tags=["console"], include_in_schema=False)
    live = feed or ConsoleFeed(runtime)
    reader = auth.role(*READERS)
    page = _asset("index.html")

    @router.get("/console")
    def index() -> Response:
        return Response(page, media_type="text/html; charset=utf-8",
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

    @router.get("/console/static/{name}")
    def asset(name: str) -> Response:
        if name not in ASSETS:
            raise errors.NotFoundError(f"no console asset {name!r}")
        return Response(_asset(name), media_type=ASSETS[name],
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    def secured(body: Any) -> Response:
        return Response(json.dumps(body, default=str), media_type="application/json",
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

    def snapshot(who: Principal) -> dict[str, Any]:
        return {"whoami": {"actor": who.actor, "role": who.role},
                "rollouts": live.rollouts(), "alerts": live.alerts()[:200]}

    @router.get("/console/api/snapshot", responses=READ_ERRORS)
    def get_snapshot(who: Principal = reader) -> Response:
        return secured(snapshot(who))

    @router.get("/console/api/audit", responses=READ_ERRORS)
    def audit(task: str | None = None, tenant: str | None = None, actor: str | None = None,
              since: Instant | None = None, until: Instant | None = None,
              limit: int = Query(200, ge=1, le=500), _: Principal = reader) -> Response:
        return secured(live.audit(task or None, tenant or None, actor or None,
                                  _aware(since, "since"), _aware(until, "until"), limit))

    @router.get("/console/api/alerts", responses=READ_ERRORS)
    def alerts(task: str | None = None, tenant: str | None = None, actor: str | None = None,
               since: Instant | None = None, until: Instant | None = None,
               _: Principal = reader) -> Response:
        return secured(live.alerts(task or None, tenant or None, _aware(since, "since"),
                                   _aware(until, "until"), actor or None))

    @router.get("/console/api/inventory", responses=READ_ERRORS)
    def inventory(_: Principal = reader) -> Response:
        return secured({**live.inventory(), "tenants": live.tenants()})

    @router.get("/console/api/stream", responses=READ_ERRORS)
    async def stream(who: Principal = reader,
                     authorization: str | None = Header(None)) -> StreamingResponse:
        """Server-sent events: ``snapshot`` first, then ``rollout``, ``audit`` and ``alert``
        changes as they happen; a comment line every HEARTBEAT_SECONDS, when the token is
        checked again (a revoked one ends the stream)."""
        queue = live.subscribe()

        async def events() -> AsyncIterator[bytes]:
            try:
                await live.started()
                yield sse("snapshot", await asyncio.to_thread(snapshot, who))
                while True:
                    try:
                        change: Change | None = await asyncio.wait_for(
                            queue.get(), HEARTBEAT_SECONDS)
                    except TimeoutError:
                        try:
                            await auth.principal(authorization)
                        except errors.RelctlError:
                            yield sse("signed-out", {"reason": "token no longer valid"})
                            return
                        yield b": heartbeat\n\n"
                        continue
                    if change is None:
                        yield sse("resync", {"reason": "fell behind"})
                        return
                    yield sse(change.kind, change.data)
            finally:
                live.unsubscribe(queue)

        return StreamingResponse(events(), media_type="text/event-stream", headers={
            **SECURITY_HEADERS, "Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return router
