"""Resolution: which release a tenant's call on a task is scored with, and why.

With a projector in this process (``relctl up``) the answer comes from the resolution read
model: its in-memory copy for the current instant (and any instant it still holds), the history
table for other ``?at=`` instants. Read-your-writes: a request first waits until the read model
has reached the store's head, so a caller sees the command it just issued. Without a projector
beside it, the API answers from the in-memory fold of the control events, as before. Either way
the body is ``resolve``'s answer and the ``ETag`` is a hash of it; ``If-None-Match`` gets 304.
"""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from relctl.adapters.postgres import Principal
from relctl.domain import errors
from relctl.entrypoints.api.auth import RESOLVERS, Authenticator
from relctl.entrypoints.api.common import READ_ERRORS, Instant
from relctl.infra.bootstrap import Runtime
from relctl.projections import queries
from relctl.projections.views import canonical

KeyQuery = Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", max_length=63)]
READ_WAIT_SECONDS = 5.0


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = {t.strip() for t in if_none_match.split(",")}
    return etag in tags or "*" in tags or f"W/{etag}" in tags


def resolve_router(runtime: Runtime, auth: Authenticator,
                   wait_seconds: float = READ_WAIT_SECONDS) -> APIRouter:
    router = APIRouter(tags=["resolution"])

    def projected(tenant: str, task: str, at: datetime | None) -> tuple[bytes, str]:
        current = runtime.state.current
        assert current is not None
        head = int(runtime.app.recorder.max_notification_id() or 0)
        if not current.wait_for(head, wait_seconds):
            raise errors.UnavailableError(
                f"the resolution read model is behind the event store (at {current.position}, "
                f"need {head}); is the projector running?")
        hit = current.get(tenant, task, at or datetime.now(UTC))
        if hit is not None:
            return hit
        # Not in the copy: an instant before the current intervals, or a tenant that is not
        # registered (answered by folding only the task's own aggregates).
        found = queries.resolve_at(runtime.db, tenant, task, at, runtime.app)
        return canonical(found.resolution), found.etag

    @router.get("/v1/resolve", response_class=Response, responses={
        **READ_ERRORS,
        200: {"description": "the answer of resolve, with its ETag",
              "content": {"application/json": {"schema": {"type": "object"}}}},
        304: {"description": "the answer still has the ETag in If-None-Match"}})
    def resolve(
        tenant: KeyQuery, task: KeyQuery,
        at: Instant | None = Query(None, description="conversation start (ISO 8601, with a "
                                                      "timezone)"),
        if_none_match: str | None = Header(None, description="an ETag from an earlier answer"),
        who: Principal = auth.role(*RESOLVERS),
    ) -> Response:
        """The release (tenant, task) runs now or at ``at``, and why. The ETag changes
        whenever the answer does; send it back in If-None-Match to revalidate cheaply."""
        if not who.may_act_for(tenant):
            raise errors.ForbiddenError(f"producer {who.actor} may not act for tenant {tenant}")
        if at is not None and at.tzinfo is None:
            raise errors.ValidationError("'at' needs a timezone, e.g. 2026-11-21T10:00:00Z")
        if runtime.state.current is not None:
            body, etag = projected(tenant, task, at)
        else:
            body, etag = runtime.state.resolve_body(tenant, task, at)
        headers = {"ETag": f'"{etag}"', "Cache-Control": "no-cache"}
        if _matches(if_none_match, headers["ETag"]):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    return router
