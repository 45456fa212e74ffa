"""HTTP reads served by the read models: resolution (current and ``?at=``), changes between
two instants, overrides and pins, drift, rollout status, and the audit trail.

Every read first waits (briefly) until the read models include every event committed before
the request, so a caller reads its own writes. Resolution answers carry an ETag and honour
If-None-Match.
"""

import io
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from relctl.adapters.postgres import Principal
from relctl.domain import errors
from relctl.domain.read_models import AuditFormat
from relctl.entrypoints.api.auth import READERS, RESOLVERS, Authenticator
from relctl.infra.bootstrap import Runtime
from relctl.projections import queries

READ_WAIT_SECONDS = 5.0


def _aware(at: datetime | None, name: str) -> datetime | None:
    if at is not None and at.tzinfo is None:
        raise errors.ValidationError(f"'{name}' needs a timezone, e.g. 2026-11-21T10:00:00Z")
    return at


def read_router(runtime: Runtime, auth: Authenticator,
                wait_seconds: float = READ_WAIT_SECONDS) -> APIRouter:
    """Routes over the read models of ``runtime``'s schema (the projector writes them)."""
    router = APIRouter(tags=["read models"])
    db, app = runtime.db, runtime.app
    reader = auth.role(*READERS)

    def fresh() -> None:
        queries.wait_for_head(db, app, wait_seconds)

    @router.get("/v1/read/resolve")
    def resolve(
        tenant: str = Query(...), task: str = Query(...),
        at: datetime | None = Query(None, description="conversation start (ISO 8601)"),
        if_none_match: str | None = Header(None),
        who: Principal = auth.role(*RESOLVERS),
    ) -> Response:
        """The effective release for (tenant, task), now or at ``at``, from the history
        table; the ETag changes whenever the answer does."""
        if not who.may_act_for(tenant):
            raise errors.ForbiddenError(f"producer {who.actor} may not act for tenant {tenant}")
        _aware(at, "at")
        fresh()
        found = queries.resolve_at(db, tenant, task, at, app)
        etag = f'"{found.etag}"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
            return Response(status_code=304, headers=headers)
        body = {**found.resolution, "valid_from": found.valid_from.isoformat(),
                "valid_to": found.valid_to.isoformat() if found.valid_to else None,
                "cause": found.cause}
        return JSONResponse(body, headers=headers)

    @router.get("/v1/read/changes")
    def changes(since: datetime = Query(...), until: datetime = Query(...),
                tenant: str | None = None, task: str | None = None,
                _: Principal = reader) -> Any:
        """Every change of an answer in (since, until], with who and why."""
        fresh()
        return queries.changes(db, _aware(since, "since") or since,
                               _aware(until, "until") or until, tenant, task)

    @router.get("/v1/read/overrides")
    def overrides(tenant: str | None = None, task: str | None = None,
                  _: Principal = reader) -> Any:
        fresh()
        return queries.overrides(db, tenant, task)

    @router.get("/v1/read/pins")
    def pins(tenant: str | None = None, task: str | None = None,
             at: datetime | None = None, _: Principal = reader) -> Any:
        fresh()
        return queries.pins(db, _aware(at, "at"), tenant, task)

    @router.get("/v1/read/drift")
    def drift(task: str = Query(...), at: datetime | None = None,
              _: Principal = reader) -> Any:
        """Which tenants a new default or rollout of ``task`` reaches, and who is shielded."""
        fresh()
        return queries.drift(db, task, _aware(at, "at"))

    @router.get("/v1/read/rollouts/{rollout_id}")
    def rollout(rollout_id: str, at: datetime | None = None, _: Principal = reader) -> Any:
        fresh()
        return queries.rollout_status(db, rollout_id, _aware(at, "at"))

    @router.get("/v1/audit/verify")
    def verify(_: Principal = reader) -> Any:
        """Walk the hash chain; report the first broken link, if any."""
        fresh()
        return queries.verify_audit(db)

    @router.get("/v1/audit/export")
    def export(fmt: AuditFormat = Query(AuditFormat.JSONL, alias="format"),
               since: datetime | None = None, until: datetime | None = None,
               tenant: str | None = None, task: str | None = None,
               actor: str | None = None, _: Principal = reader) -> Response:
        fresh()
        out = io.StringIO()
        queries.export_audit(db, out, fmt, _aware(since, "since"), _aware(until, "until"),
                             tenant, task, actor)
        media = "text/csv" if fmt is AuditFormat.CSV else "application/x-ndjson"
        return PlainTextResponse(out.getvalue(), media_type=media)

    return router
