"""Rollouts: plan, then one operation per command (start, advance, pause, resume, freeze,
rollback, complete), and reads. ``POST /v1/rollouts/{id}/{action}`` still answers for the
clients that post to it, outside the schema; unknown actions get 404."""

from collections.abc import Callable
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from relctl.adapters.postgres import Principal
from relctl.adapters.verdicts import VerdictBoard, verdicts_json
from relctl.domain import errors
from relctl.domain.commands import (
    PlanRollout,
    RolloutCommand,
    StartRollout,
    Versioned,
    WithEvidence,
)
from relctl.domain.tenant import Cohort
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

SIMPLE = {"advance": "advance_rollout",
          "complete": "complete_rollout"}
WITH_EVIDENCE = {"pause": "pause_rollout", "freeze": "freeze_rollout", "rollback": "roll_back"}
ACTIONS = sorted([*SIMPLE, *WITH_EVIDENCE, "resume", "start"])


def rollouts_router(runtime: Runtime, auth: Authenticator,
                    on_change: Callable[[], None]) -> APIRouter:
    verdicts = VerdictBoard(runtime.db)
    router = APIRouter(tags=["rollouts"])
    app = runtime.app
    writer, reader = auth.role(*WRITERS), auth.role(*READERS)

    def act(action: str, rollout_id: UUID, body: Versioned, who: Principal) -> Any:
        if action == "resume":
            return run("resume_rollout", lambda: app.resume_rollout(
                rollout_id, who.actor, body.reason, expected_version=body.expected_version,
                may_unfreeze=who.role == "admin"), on_change)
        if action == "start":
            gated = body if isinstance(body, StartRollout) else None
            return run("start_rollout", lambda: app.start_rollout(
                rollout_id, who.actor, body.reason, expected_version=body.expected_version,
                role=who.role, acknowledgements=gated.acknowledgements if gated else [],
                break_glass=gated.break_glass if gated else None), on_change)
        if action in SIMPLE:
            method = getattr(app, SIMPLE[action])
            return run(f"{action}_rollout", lambda: method(
                rollout_id, who.actor, body.reason, expected_version=body.expected_version),
                on_change)
        method = getattr(app, WITH_EVIDENCE[action])
        evidence = body.evidence if isinstance(body, WithEvidence) else None
        return run(f"{action}_rollout", lambda: method(
            rollout_id, who.actor, body.reason, evidence=evidence,
            expected_version=body.expected_version), on_change)

    @router.post("/v1/rollouts", status_code=201, response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def plan_rollout(body: PlanRollout, who: Principal = writer) -> Any:
        """Plan moving a task from its baseline to a candidate release, step by step."""
        steps = None if body.steps is None else [
            s.value if isinstance(s, Cohort) else s for s in body.steps]
        rules = None if body.guard_rules is None else [
            r.model_dump(mode="json") for r in body.guard_rules]
        return run("plan_rollout", lambda: app.plan_rollout(
            body.task, body.candidate, who.actor, body.reason, body.baseline, steps, rules,
            body.shadow), on_change)

    @router.get("/v1/rollouts/{rollout_id}", responses=READ_ERRORS)
    def get_rollout(rollout_id: UUID, _: Principal = reader) -> dict[str, Any]:
        """The rollout, with each guard rule's latest verdict as the workers published it."""
        summary = app.rollout(rollout_id).summary()
        return {**summary, "verdicts": verdicts_json(verdicts.latest(str(rollout_id)))}

    @router.get("/v1/rollouts/{rollout_id}/history", response_model=History,
                responses=READ_ERRORS)
    def rollout_history(rollout_id: UUID, _: Principal = reader) -> Any:
        app.rollout(rollout_id)
        return history(runtime, rollout_id)

    def simple(action: str, summary: str) -> None:
        def endpoint(rollout_id: UUID, body: RolloutCommand, who: Principal = writer) -> Any:
            return act(action, rollout_id, body, who)

        router.add_api_route(
            f"/v1/rollouts/{{rollout_id}}/{action}", endpoint, methods=["POST"],
            response_model=Outcome, responses=COMMAND_ERRORS, summary=summary,
            operation_id=f"{action}_rollout")

    def evidenced(action: str, summary: str) -> None:
        def endpoint(rollout_id: UUID, body: WithEvidence, who: Principal = writer) -> Any:
            return act(action, rollout_id, body, who)

        router.add_api_route(
            f"/v1/rollouts/{{rollout_id}}/{action}", endpoint, methods=["POST"],
            response_model=Outcome, responses=COMMAND_ERRORS, summary=summary,
            operation_id=f"{action}_rollout")

    @router.post("/v1/rollouts/{rollout_id}/start", response_model=Outcome,
                 responses=COMMAND_ERRORS, summary="Start a planned rollout at its first step",
                 operation_id="start_rollout")
    def start_rollout(rollout_id: UUID, body: StartRollout, who: Principal = writer) -> Any:
        """The candidate must pass its gates (a gated task), as promotion past InternalTest."""
        return act("start", rollout_id, body, who)

    simple("advance", "Move a running rollout to its next step")
    simple("complete", "Complete a rollout at its final step (the candidate becomes default)")
    simple("resume", "Resume a paused rollout (a frozen one: admins only)")
    evidenced("pause", "Pause a running rollout (idempotent)")
    evidenced("freeze", "Freeze a rollout: only an admin may resume it (idempotent)")
    evidenced("rollback", "Send every tenant back to the baseline (idempotent)")

    @router.post("/v1/rollouts/{rollout_id}/{action}", include_in_schema=False)
    def unknown_action(rollout_id: UUID, action: str, request: Request,
                       _: Principal = writer) -> Any:
        raise errors.NotFoundError(
            f"unknown rollout action {action!r}; actions: {', '.join(ACTIONS)}")

    return router
