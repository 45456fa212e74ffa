"""Tenants: register, cohort, flags, overrides, pins, reset, read."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from relctl.adapters.postgres import Principal
from relctl.domain.commands import (
    ClearOverride,
    FlipFlag,
    MoveTenant,
    Pin,
    RegisterTenant,
    Reset,
    SetOverride,
    Unpin,
)
from relctl.domain.ids import tenant_id
from relctl.domain.reset import ResetPlan
from relctl.domain.tenant import Flag
from relctl.entrypoints.api.auth import READERS, WRITERS, Authenticator
from relctl.entrypoints.api.common import (
    COMMAND_ERRORS,
    READ_ERRORS,
    History,
    Outcome,
    history,
    run,
)
from relctl.infra.bootstrap import Runtime

TenantKey = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", max_length=63)]
TaskKey = Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", max_length=63,
                                      description="one task (default: every task)")]


def tenants_router(runtime: Runtime, auth: Authenticator,
                   on_change: Callable[[], None]) -> APIRouter:
    router = APIRouter(tags=["tenants"])
    app = runtime.app
    writer, reader = auth.role(*WRITERS), auth.role(*READERS)

    def command(name: str, call: Callable[[], Any]) -> Any:
        return run(name, call, on_change)

    @router.post("/v1/tenants", status_code=201, response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def register_tenant(body: RegisterTenant, who: Principal = writer) -> Any:
        """Register a tenant (409 if the key is taken)."""
        return command("register_tenant", lambda: app.register_tenant(
            body.key, body.name or "", body.cohort.value, who.actor, body.reason))

    @router.get("/v1/tenants/{key}", responses=READ_ERRORS)
    def get_tenant(key: TenantKey, _: Principal = reader) -> dict[str, Any]:
        return app.tenant(key).summary()

    @router.get("/v1/tenants/{key}/history", response_model=History, responses=READ_ERRORS)
    def tenant_history(key: TenantKey, _: Principal = reader) -> Any:
        return history(runtime, tenant_id(key))

    @router.post("/v1/tenants/{key}/cohort", response_model=Outcome, responses=COMMAND_ERRORS)
    def move_tenant(key: TenantKey, body: MoveTenant, who: Principal = writer) -> Any:
        return command("move_tenant", lambda: app.move_tenant(
            key, body.cohort.value, who.actor, body.reason))

    @router.post("/v1/tenants/{key}/flags/{flag}", response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def flip_flag(key: TenantKey, flag: Flag, body: FlipFlag, who: Principal = writer) -> Any:
        """Switch a feature flag; repeating the current value records nothing."""
        return command("flip_flag", lambda: app.flip_flag(
            key, flag.value, body.enabled, who.actor, body.reason))

    @router.post("/v1/tenants/{key}/overrides", response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def set_override(key: TenantKey, body: SetOverride, who: Principal = writer) -> Any:
        return command("set_override", lambda: app.set_override(
            key, body.task, body.kind.value, body.value, who.actor, body.reason,
            body.base_release))

    @router.post("/v1/tenants/{key}/overrides/clear", response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def clear_override(key: TenantKey, body: ClearOverride, who: Principal = writer) -> Any:
        return command("clear_override", lambda: app.clear_override(
            key, body.task, body.kind.value, who.actor, body.reason))

    @router.post("/v1/tenants/{key}/pins", response_model=Outcome, responses=COMMAND_ERRORS)
    def pin(key: TenantKey, body: Pin, who: Principal = writer) -> Any:
        return command("pin", lambda: app.pin(
            key, body.task, body.release, who.actor, body.reason, body.days))

    @router.post("/v1/tenants/{key}/unpin", response_model=Outcome, responses=COMMAND_ERRORS)
    def unpin(key: TenantKey, body: Unpin, who: Principal = writer) -> Any:
        return command("unpin", lambda: app.unpin(key, body.task, who.actor, body.reason))

    @router.post("/v1/tenants/{key}/reset", response_model=Outcome, responses=COMMAND_ERRORS)
    def reset(key: TenantKey, body: Reset, who: Principal = writer) -> Any:
        return command("reset_tenant", lambda: app.reset_tenant(
            key, body.task, who.actor, body.reason))

    @router.get("/v1/tenants/{key}/reset-plan", response_model=ResetPlan,
                responses=READ_ERRORS)
    def reset_plan(key: TenantKey, task: TaskKey = None, _: Principal = writer) -> Any:
        """Dry run of a reset to defaults: which overrides and pins it would clear, and what
        the tenant resolves to before and after. Records nothing (operators and admins)."""
        return app.reset_plan(key, task)

    return router
