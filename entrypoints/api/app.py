"""The HTTP API: every command and read, bearer-token authentication, role checks.

Endpoints are thin: parse the body, check the caller's role, call the application layer, and
return the aggregate after the command. Domain errors become JSON errors with an HTTP status
that means what it says (422 invalid input, 409 conflict, 404 missing, 401/403 auth, 503 down).
"""

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from relctl.adapters import cloudevents
from relctl.adapters.kafka import existing_topics
from relctl.adapters.postgres import Principal
from relctl.domain import errors
from relctl.domain.ids import blueprint_id, release_id, task_id, tenant_id
from relctl.entrypoints.api.auth import (
    READERS,
    RESOLVERS,
    TOKEN_CACHE_SECONDS,
    WRITERS,
    Authenticator,
)
from relctl.entrypoints.api.ingest import error_response, ingest_router
from relctl.infra.bootstrap import Runtime

logger = logging.getLogger(__name__)

COMMANDS = Counter("relctl_commands_total", "Commands handled by the API", ["command", "outcome"])
COMMAND_SECONDS = Histogram("relctl_command_duration_seconds", "Command latency", ["command"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))

STATUS = {
    errors.ValidationError: 422, errors.ConflictError: 409, errors.NotFoundError: 404,
    errors.UnauthorizedError: 401, errors.ForbiddenError: 403, errors.UnavailableError: 503,
}



class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(description="why this change is made; recorded in the event")


class Versioned(Body):
    expected_version: int | None = Field(
        None, description="refuse with 409 unless the aggregate is still at this version")


class CreateRelease(Body):
    task: str
    spec: dict[str, Any]


class ReviseRelease(Versioned):
    spec: dict[str, Any]


class Promote(Versioned):
    stage: str


class SetDefault(Body):
    release: int


class CreateBlueprint(Body):
    name: str
    stages: list[dict[str, Any]]


class UpdateBlueprint(Versioned):
    stages: list[dict[str, Any]]


class Confirm(Body):
    stage: str
    behaviour: str


class RegisterTenant(Body):
    key: str
    name: str = ""
    cohort: str = "general"


class MoveTenant(Body):
    cohort: str


class FlipFlag(Body):
    enabled: bool


class SetOverride(Body):
    task: str
    kind: str
    value: str
    base_release: int | None = None


class ClearOverride(Body):
    task: str
    kind: str


class Pin(Body):
    task: str
    release: int
    days: int = 30


class Unpin(Body):
    task: str


class Reset(Body):
    task: str | None = None


class PlanRollout(Body):
    task: str
    candidate: int
    baseline: int | None = None
    steps: list[Any] | None = None
    guard_rules: list[dict[str, Any]] | None = None
    shadow: bool = False


class RolloutAction(Versioned):
    evidence: dict[str, Any] | None = None


class CreateToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str
    role: str
    tenants: list[str] = []


def create_api(runtime: Runtime, on_change: Callable[[], None] = lambda: None) -> FastAPI:  # noqa: PLR0915
    """Build the FastAPI app over a bootstrapped runtime; ``on_change`` wakes the relay."""
    api = FastAPI(title="relctl", version="0.1.0",
                  description="Release authority for AI evaluation pipelines.")
    app = runtime.app

    @api.exception_handler(errors.RelctlError)
    async def domain_error(_: Request, exc: errors.RelctlError) -> JSONResponse:
        return error_response(STATUS.get(type(exc), 400), exc.code, str(exc))

    @api.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return error_response(
            500, "internal_error", "relctl failed to handle this request; the error is in its "
            "log. Nothing was recorded unless a later read shows it.")

    @api.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error_response(400, "bad_request", "request body is not valid JSON")
        detail = "; ".join(
            f"{'.'.join(str(x) for x in p.get('loc', ()) if x != 'body')}: {p.get('msg')}"
            for p in problems)
        return error_response(422, "validation_error", f"invalid request: {detail}")

    auth = Authenticator(runtime.tokens)
    api.include_router(ingest_router(runtime, auth))
    writer = auth.role(*WRITERS)
    reader = auth.role(*READERS)
    admin = auth.role("admin")

    def run(command: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            result = call()
        except errors.RelctlError as exc:
            COMMANDS.labels(command, exc.code).inc()
            raise
        COMMANDS.labels(command, "ok").inc()
        COMMAND_SECONDS.labels(command).observe(time.perf_counter() - started)
        on_change()
        return result

    def history(aggregate_id: UUID) -> dict[str, Any]:
        events = app.history(aggregate_id)
        if not events:
            raise errors.NotFoundError(f"no events for aggregate {aggregate_id}")
        return {"aggregate_id": str(aggregate_id),
                "events": [cloudevents.envelope(e) for e in events]}

    # ---- health --------------------------------------------------------------------------

    @api.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", tags=["health"])
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
        body = {"ready": ready, "database": database, "broker": broker,
                "relay_position": relay.position if relay else None,
                "relay_publishing": relay.broker_ok if relay else None}
        return JSONResponse(body, status_code=200 if ready else 503)

    @api.get("/metrics", tags=["health"])
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # ---- tokens --------------------------------------------------------------------------

    @api.post("/v1/tokens", status_code=201, tags=["auth"])
    def create_token(body: CreateToken, who: Principal = admin) -> dict[str, Any]:
        token = runtime.tokens.create(body.actor, body.role, who.actor, tuple(body.tenants))
        logger.info("token created for %s (%s) by %s", body.actor, body.role, who.actor)
        return {"actor": body.actor, "role": body.role, "tenants": body.tenants, "token": token}

    @api.post("/v1/tokens/{actor}/revoke", tags=["auth"])
    def revoke_tokens(actor: str, who: Principal = admin) -> dict[str, Any]:
        revoked = runtime.tokens.revoke(actor)
        logger.info("%d token(s) of %s revoked by %s", revoked, actor, who.actor)
        return {"actor": actor, "revoked": revoked,
                "note": f"cached authentications expire within {TOKEN_CACHE_SECONDS:g} s"}

    @api.get("/v1/whoami", tags=["auth"])
    def whoami(who: Principal = Depends(auth.principal)) -> dict[str, Any]:
        return {"actor": who.actor, "role": who.role, "tenants": list(who.tenants)}

    # ---- releases and tasks --------------------------------------------------------------

    @api.post("/v1/releases", status_code=201, tags=["releases"])
    def create_release(body: CreateRelease, who: Principal = writer) -> Any:
        return run("create_release", lambda: app.create_release(
            body.task, body.spec, who.actor, body.reason))

    @api.get("/v1/releases/{task}/{number}", tags=["releases"])
    def get_release(task: str, number: int, _: Principal = reader) -> Any:
        return app.release(task, number).summary()

    @api.get("/v1/releases/{task}/{number}/history", tags=["releases"])
    def release_history(task: str, number: int, _: Principal = reader) -> Any:
        return history(release_id(task, number))

    @api.post("/v1/releases/{task}/{number}/revise", tags=["releases"])
    def revise_release(task: str, number: int, body: ReviseRelease,
                       who: Principal = writer) -> Any:
        return run("revise_release", lambda: app.revise_release(
            task, number, body.spec, who.actor, body.reason, body.expected_version))

    @api.post("/v1/releases/{task}/{number}/promote", tags=["releases"])
    def promote_release(task: str, number: int, body: Promote, who: Principal = writer) -> Any:
        return run("promote_release", lambda: app.promote_release(
            task, number, body.stage, who.actor, body.reason, body.expected_version))

    @api.get("/v1/tasks/{task}", tags=["releases"])
    def get_task(task: str, _: Principal = reader) -> Any:
        return app.task(task).summary()

    @api.get("/v1/tasks/{task}/history", tags=["releases"])
    def task_history(task: str, _: Principal = reader) -> Any:
        return history(task_id(task))

    @api.post("/v1/tasks/{task}/default", tags=["releases"])
    def set_default(task: str, body: SetDefault, who: Principal = writer) -> Any:
        return run("set_default_release", lambda: app.set_default_release(
            task, body.release, who.actor, body.reason))

    # ---- blueprints ----------------------------------------------------------------------

    @api.post("/v1/blueprints", status_code=201, tags=["blueprints"])
    def create_blueprint(body: CreateBlueprint, who: Principal = writer) -> Any:
        return run("create_blueprint", lambda: app.create_blueprint(
            body.name, body.stages, who.actor, body.reason))

    @api.get("/v1/blueprints/{name}", tags=["blueprints"])
    def get_blueprint(name: str, _: Principal = reader) -> Any:
        return app.blueprint(name).summary()

    @api.get("/v1/blueprints/{name}/history", tags=["blueprints"])
    def blueprint_history(name: str, _: Principal = reader) -> Any:
        return history(blueprint_id(name))

    @api.post("/v1/blueprints/{name}/draft", tags=["blueprints"])
    def update_blueprint(name: str, body: UpdateBlueprint, who: Principal = writer) -> Any:
        return run("update_blueprint", lambda: app.update_blueprint(
            name, body.stages, who.actor, body.reason, body.expected_version))

    @api.post("/v1/blueprints/{name}/confirm", tags=["blueprints"])
    def confirm(name: str, body: Confirm, who: Principal = writer) -> Any:
        return run("confirm_critical", lambda: app.confirm_critical(
            name, body.stage, body.behaviour, who.actor, body.reason))

    @api.post("/v1/blueprints/{name}/publish", tags=["blueprints"])
    def publish(name: str, body: Versioned, who: Principal = writer) -> Any:
        return run("publish_blueprint", lambda: app.publish_blueprint(
            name, who.actor, body.reason, body.expected_version))

    # ---- tenants -------------------------------------------------------------------------

    @api.post("/v1/tenants", status_code=201, tags=["tenants"])
    def register_tenant(body: RegisterTenant, who: Principal = writer) -> Any:
        return run("register_tenant", lambda: app.register_tenant(
            body.key, body.name, body.cohort, who.actor, body.reason))

    @api.get("/v1/tenants/{key}", tags=["tenants"])
    def get_tenant(key: str, _: Principal = reader) -> Any:
        return app.tenant(key).summary()

    @api.get("/v1/tenants/{key}/history", tags=["tenants"])
    def tenant_history(key: str, _: Principal = reader) -> Any:
        return history(tenant_id(key))

    @api.post("/v1/tenants/{key}/cohort", tags=["tenants"])
    def move_tenant(key: str, body: MoveTenant, who: Principal = writer) -> Any:
        return run("move_tenant", lambda: app.move_tenant(key, body.cohort, who.actor,
                                                          body.reason))

    @api.post("/v1/tenants/{key}/flags/{flag}", tags=["tenants"])
    def flip_flag(key: str, flag: str, body: FlipFlag, who: Principal = writer) -> Any:
        return run("flip_flag", lambda: app.flip_flag(key, flag, body.enabled, who.actor,
                                                      body.reason))

    @api.post("/v1/tenants/{key}/overrides", tags=["tenants"])
    def set_override(key: str, body: SetOverride, who: Principal = writer) -> Any:
        return run("set_override", lambda: app.set_override(
            key, body.task, body.kind, body.value, who.actor, body.reason, body.base_release))

    @api.post("/v1/tenants/{key}/overrides/clear", tags=["tenants"])
    def clear_override(key: str, body: ClearOverride, who: Principal = writer) -> Any:
        return run("clear_override", lambda: app.clear_override(
            key, body.task, body.kind, who.actor, body.reason))

    @api.post("/v1/tenants/{key}/pins", tags=["tenants"])
    def pin(key: str, body: Pin, who: Principal = writer) -> Any:
        return run("pin", lambda: app.pin(key, body.task, body.release, who.actor, body.reason,
                                          body.days))

    @api.post("/v1/tenants/{key}/unpin", tags=["tenants"])
    def unpin(key: str, body: Unpin, who: Principal = writer) -> Any:
        return run("unpin", lambda: app.unpin(key, body.task, who.actor, body.reason))

    @api.post("/v1/tenants/{key}/reset", tags=["tenants"])
    def reset(key: str, body: Reset, who: Principal = writer) -> Any:
        return run("reset_tenant", lambda: app.reset_tenant(key, body.task, who.actor,
                                                            body.reason))

    # ---- rollouts ------------------------------------------------------------------------

    @api.post("/v1/rollouts", status_code=201, tags=["rollouts"])
    def plan_rollout(body: PlanRollout, who: Principal = writer) -> Any:
        return run("plan_rollout", lambda: app.plan_rollout(
            body.task, body.candidate, who.actor, body.reason, body.baseline, body.steps,
            body.guard_rules, body.shadow))

    @api.get("/v1/rollouts/{rollout_id}", tags=["rollouts"])
    def get_rollout(rollout_id: UUID, _: Principal = reader) -> Any:
        return app.rollout(rollout_id).summary()

    @api.get("/v1/rollouts/{rollout_id}/history", tags=["rollouts"])
    def rollout_history(rollout_id: UUID, _: Principal = reader) -> Any:
        app.rollout(rollout_id)
        return history(rollout_id)

    simple = {"start": app.start_rollout, "advance": app.advance_rollout,
              "complete": app.complete_rollout}
    with_evidence = {"pause": app.pause_rollout, "freeze": app.freeze_rollout,
                     "rollback": app.roll_back}

    @api.post("/v1/rollouts/{rollout_id}/{action}", tags=["rollouts"])
    def rollout_action(rollout_id: UUID, action: str, body: RolloutAction,
                       who: Principal = writer) -> Any:
        if action == "resume":
            return run("resume_rollout", lambda: app.resume_rollout(
                rollout_id, who.actor, body.reason, expected_version=body.expected_version,
                may_unfreeze=who.role == "admin"))
        if action in simple:
            return run(f"{action}_rollout", lambda: simple[action](
                rollout_id, who.actor, body.reason, expected_version=body.expected_version))
        if action in with_evidence:
            return run(f"{action}_rollout", lambda: with_evidence[action](
                rollout_id, who.actor, body.reason, evidence=body.evidence,
                expected_version=body.expected_version))
        raise errors.NotFoundError(
            f"unknown rollout action {action!r}; actions: "
            f"{', '.join(sorted([*simple, *with_evidence, 'resume']))}")

    # ---- resolution ----------------------------------------------------------------------

    @api.get("/v1/resolve", tags=["resolution"])
    def resolve(
        tenant: str = Query(...), task: str = Query(...),
        at: datetime | None = Query(None, description="conversation start (ISO 8601)"),
        who: Principal = auth.role(*RESOLVERS),
    ) -> Any:
        if not who.may_act_for(tenant):
            raise errors.ForbiddenError(f"producer {who.actor} may not act for tenant {tenant}")
        if at is not None and at.tzinfo is None:
            raise errors.ValidationError("'at' needs a timezone, e.g. 2026-11-21T10:00:00Z")
        return runtime.state.resolve(tenant, task, at).as_dict()

    return api
