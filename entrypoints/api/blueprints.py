"""Blueprints: create, edit the draft, confirm critical rules, publish, read."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path
from relctl.adapters.postgres import Principal
from relctl.domain.blueprint import StageSpec
from relctl.domain.commands import Confirm, CreateBlueprint, Publish, UpdateBlueprint
from relctl.domain.ids import blueprint_id
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

BlueprintName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", max_length=63)]


def _plain(stages: list[StageSpec]) -> list[dict[str, Any]]:
    return [stage.model_dump() for stage in stages]


def blueprints_router(runtime: Runtime, auth: Authenticator,
                      on_change: Callable[[], None]) -> APIRouter:
    router = APIRouter(tags=["blueprints"])
    app = runtime.app
    writer, reader = auth.role(*WRITERS), auth.role(*READERS)

    @router.post("/v1/blueprints", status_code=201, response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def create_blueprint(body: CreateBlueprint, who: Principal = writer) -> Any:
        return run("create_blueprint", lambda: app.create_blueprint(
            body.name, _plain(body.stages), who.actor, body.reason), on_change)

    @router.get("/v1/blueprints/{name}", responses=READ_ERRORS)
    def get_blueprint(name: BlueprintName, _: Principal = reader) -> dict[str, Any]:
        return app.blueprint(name).summary()

    @router.get("/v1/blueprints/{name}/history", response_model=History, responses=READ_ERRORS)
    def blueprint_history(name: BlueprintName, _: Principal = reader) -> Any:
        return history(runtime, blueprint_id(name))

    @router.post("/v1/blueprints/{name}/draft", response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def update_blueprint(name: BlueprintName, body: UpdateBlueprint,
                         who: Principal = writer) -> Any:
        return run("update_blueprint", lambda: app.update_blueprint(
            name, _plain(body.stages), who.actor, body.reason, body.expected_version), on_change)

    @router.post("/v1/blueprints/{name}/confirm", response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def confirm(name: BlueprintName, body: Confirm, who: Principal = writer) -> Any:
        """One person's confirmation of a critical rule; two distinct people are needed."""
        return run("confirm_critical", lambda: app.confirm_critical(
            name, body.stage, body.behaviour, who.actor, body.reason), on_change)

    @router.post("/v1/blueprints/{name}/publish", response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def publish(name: BlueprintName, body: Publish, who: Principal = writer) -> Any:
        """Compile the draft into the next immutable version."""
        return run("publish_blueprint", lambda: app.publish_blueprint(
            name, who.actor, body.reason, body.expected_version), on_change)

    return router
