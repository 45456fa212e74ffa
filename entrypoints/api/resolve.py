"""Resolution: which release a tenant's call on a task is scored with, and why."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from relctl.adapters.postgres import Principal
from relctl.domain import errors
from relctl.entrypoints.api.auth import RESOLVERS, Authenticator
from relctl.entrypoints.api.common import READ_ERRORS, Instant
from relctl.infra.bootstrap import Runtime

KeyQuery = Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", max_length=63)]


def resolve_router(runtime: Runtime, auth: Authenticator) -> APIRouter:
    router = APIRouter(tags=["resolution"])

    @router.get("/v1/resolve", responses=READ_ERRORS)
    def resolve(
        tenant: KeyQuery, task: KeyQuery,
        at: Instant | None = Query(None, description="conversation start (ISO 8601, with a "
                                                      "timezone)"),
        who: Principal = auth.role(*RESOLVERS),
    ) -> dict[str, Any]:
        if not who.may_act_for(tenant):
            raise errors.ForbiddenError(f"producer {who.actor} may not act for tenant {tenant}")
        if at is not None and at.tzinfo is None:
            raise errors.ValidationError("'at' needs a timezone, e.g. 2026-11-21T10:00:00Z")
        return runtime.state.resolve(tenant, task, at).as_dict()

    return router
