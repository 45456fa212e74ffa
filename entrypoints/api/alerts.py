"""The alert history (``relctl.alerts`` projected into PostgreSQL), joined with the automatic
decisions the event store recorded. Readers only (auditors, operators, admins)."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from relctl.adapters.postgres import Principal
from relctl.domain.alert_history import AlertEntry
from relctl.domain.alerts import AlertKind
from relctl.entrypoints.api.auth import READERS, Authenticator
from relctl.entrypoints.api.common import READ_ERRORS, Instant
from relctl.entrypoints.api.read import READ_WAIT_SECONDS, _aware
from relctl.infra.bootstrap import Runtime
from relctl.projections import alerts as alert_history
from relctl.projections import queries

KeyFilter = Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", max_length=63)]


def alerts_router(runtime: Runtime, auth: Authenticator,
                  wait_seconds: float = READ_WAIT_SECONDS) -> APIRouter:
    router = APIRouter(tags=["read models"])
    db, app = runtime.db, runtime.app
    alert_history.ensure_tables(db)

    @router.get("/v1/read/alerts", response_model=list[AlertEntry], responses=READ_ERRORS)
    def alerts(task: KeyFilter = None, tenant: KeyFilter = None,
               rollout: Annotated[str | None, Query(max_length=100)] = None,
               kind: AlertKind | None = None, since: Instant | None = None,
               until: Instant | None = None,
               limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
               _: Principal = auth.role(*READERS)) -> Any:
        """Alerts oldest first, each with the decision it announced or caused (the rollout
        transition in the store). ``tenant``: the alerts about the release or rollout that
        tenant resolved to when each fired."""
        queries.wait_for_head(db, app, wait_seconds)  # the decisions joined are current
        return alert_history.alerts(db, task, tenant, rollout, _aware(since, "since"),
                                    _aware(until, "until"), kind.value if kind else None, limit)

    return router
