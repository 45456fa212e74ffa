"""Releases and their tasks: create, revise, promote, set the default, read."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path
from relctl.adapters.postgres import Principal
from relctl.domain.commands import CreateRelease, PromoteRelease, ReviseRelease, SetDefault
from relctl.domain.ids import release_id, task_id
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

TaskKey = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", max_length=63)]
Number = Annotated[int, Path(ge=1, le=2**31)]


def releases_router(runtime: Runtime, auth: Authenticator,
                    on_change: Callable[[], None]) -> APIRouter:
    router = APIRouter(tags=["releases"])
    app = runtime.app
    writer, reader = auth.role(*WRITERS), auth.role(*READERS)

    @router.post("/v1/releases", status_code=201, response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def create_release(body: CreateRelease, who: Principal = writer) -> Any:
        """Draft the next numbered release of a task (opening the task if it is new)."""
        return run("create_release", lambda: app.create_release(
            body.task, body.spec, who.actor, body.reason), on_change)

    @router.get("/v1/releases/{task}/{number}", responses=READ_ERRORS)
    def get_release(task: TaskKey, number: Number, _: Principal = reader) -> dict[str, Any]:
        return app.release(task, number).summary()

    @router.get("/v1/releases/{task}/{number}/history", response_model=History,
                responses=READ_ERRORS)
    def release_history(task: TaskKey, number: Number, _: Principal = reader) -> Any:
        return history(runtime, release_id(task, number))

    @router.post("/v1/releases/{task}/{number}/revise", response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def revise_release(task: TaskKey, number: Number, body: ReviseRelease,
                       who: Principal = writer) -> Any:
        """Replace a Draft's content (refused once it has left Draft)."""
        return run("revise_release", lambda: app.revise_release(
            task, number, body.spec, who.actor, body.reason, body.expected_version), on_change)

    @router.post("/v1/releases/{task}/{number}/promote", response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def promote_release(task: TaskKey, number: Number, body: PromoteRelease,
                        who: Principal = writer) -> Any:
        """Move a release forward through its lifecycle. Passing InternalTest (to Beta or
        Stable) of a gated task needs its gates passed on the current golden set, with
        acknowledgements for failing Conditional gates, or an admin's break-glass."""
        return run("promote_release", lambda: app.promote_release(
            task, number, body.stage.value, who.actor, body.reason, body.expected_version,
            role=who.role, acknowledgements=body.acknowledgements,
            break_glass=body.break_glass), on_change)

    @router.get("/v1/tasks/{task}", responses=READ_ERRORS)
    def get_task(task: TaskKey, _: Principal = reader) -> dict[str, Any]:
        return app.task(task).summary()

    @router.get("/v1/tasks/{task}/history", response_model=History, responses=READ_ERRORS)
    def task_history(task: TaskKey, _: Principal = reader) -> Any:
        return history(runtime, task_id(task))

    @router.post("/v1/tasks/{task}/default", response_model=Outcome, responses=COMMAND_ERRORS)
    def set_default(task: TaskKey, body: SetDefault, who: Principal = writer) -> Any:
        """Make a (non-Draft, non-Deprecated) release what every tenant gets by default."""
        return run("set_default_release", lambda: app.set_default_release(
            task, body.release, who.actor, body.reason), on_change)

    return router
