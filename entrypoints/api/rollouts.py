"""Rollouts: plan, then one operation per command (start, advance, pause, resume, freeze,
rollback, complete), and reads. ``POST /v1/rollouts/{id}/{action}`` still answers for the
clients that post to it, outside the schema; unknown actions get 404."""

from collections.abc import Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BeforeValidator, Field, StrictBool
from relctl.adapters.postgres import Principal
from relctl.domain import errors
from relctl.domain.base import JsonObject, Key
from relctl.domain.guards import GuardRule
from relctl.domain.rollout import MAX_EVIDENCE_BYTES, MAX_STEPS
from relctl.domain.tenant import Cohort
from relctl.entrypoints.api.auth import READERS, WRITERS, Authenticator
from relctl.entrypoints.api.common import (
    COMMAND_ERRORS,
    READ_ERRORS,
    Body,
    History,
    Integer,
    Outcome,
    Versioned,
    history,
    run,
)
from relctl.infra.bootstrap import Runtime

Percent = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]


def _typed_rules(rules: Any) -> Any:
    """Refuse a rule whose metric is not text before GuardRule's membership test sees it."""
    if isinstance(rules, list):
        for rule in rules:
            if isinstance(rule, dict) and not isinstance(rule.get("metric", ""), str):
                raise ValueError("a guard rule's metric is the name of a metric (text)")
    return rules


class PlanRollout(Body):
    task: Key
    candidate: Integer = Field(ge=1, le=2**31)
    baseline: Integer | None = Field(None, ge=1, le=2**31,
                                 description="default: the task's default release")
    steps: Annotated[list[Percent] | list[Cohort], Field(min_length=1, max_length=MAX_STEPS)] \
        | None = Field(None, description="strictly increasing percentages ending at 100, or "
                                         "cohorts in order ending at 'general'")
    guard_rules: Annotated[list[GuardRule] | None, BeforeValidator(_typed_rules)] = Field(
        None, max_length=50)
    shadow: StrictBool = False


class Command(Versioned):
    """A rollout command: a reason, optionally the version it must still be at."""


class WithEvidence(Versioned):
    evidence: JsonObject | None = Field(
        None, description=f"what the decision is based on; at most {MAX_EVIDENCE_BYTES} bytes")


class AnyAction(WithEvidence):
    """The legacy catch-all body: evidence is accepted (and ignored) by every action."""


SIMPLE = {"start": "start_rollout", "advance": "advance_rollout",
          "complete": "complete_rollout"}
WITH_EVIDENCE = {"pause": "pause_rollout", "freeze": "freeze_rollout", "rollback": "roll_back"}
ACTIONS = sorted([*SIMPLE, *WITH_EVIDENCE, "resume"])


def rollouts_router(runtime: Runtime, auth: Authenticator,
                    on_change: Callable[[], None]) -> APIRouter:
    router = APIRouter(tags=["rollouts"])
    app = runtime.app
    writer, reader = auth.role(*WRITERS), auth.role(*READERS)

    def act(action: str, rollout_id: UUID, body: Versioned, who: Principal) -> Any:
        if action == "resume":
            return run("resume_rollout", lambda: app.resume_rollout(
                rollout_id, who.actor, body.reason, expected_version=body.expected_version,
                may_unfreeze=who.role == "admin"), on_change)
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
        return app.rollout(rollout_id).summary()

    @router.get("/v1/rollouts/{rollout_id}/history", response_model=History,
                responses=READ_ERRORS)
    def rollout_history(rollout_id: UUID, _: Principal = reader) -> Any:
        app.rollout(rollout_id)
        return history(runtime, rollout_id)

    def simple(action: str, summary: str) -> None:
        def endpoint(rollout_id: UUID, body: Command, who: Principal = writer) -> Any:
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

    simple("start", "Start a planned rollout at its first step")
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
