"""Regression tests for behaviour a review found missing: each would fail without its fix."""

from datetime import UTC, datetime

import pytest
from relctl.domain.errors import ConflictError, ForbiddenError, ValidationError
from relctl.domain.resolution import resolve

from tests.unit.support import (
    ACTOR,
    REASON,
    TASK,
    fold,
    new_app,
    released_task,
    rollout_id,
    spec,
    stored_events,
)


def test_rollback_sends_every_tenant_to_the_baseline_even_when_it_is_not_the_default() -> None:
    app = new_app()
    released_task(app, count=3, default=1)
    rollout = rollout_id(app.plan_rollout(TASK, 3, ACTOR, REASON, baseline=2, steps=[100]))
    app.start_rollout(rollout, ACTOR, REASON)
    app.roll_back(rollout, ACTOR, REASON)
    view = fold(stored_events(app))
    now = datetime.now(UTC)
    assert {resolve(view, f"t{i}", TASK, now).release for i in range(20)} == {2}
    assert app.task(TASK).default_release == 2


def test_revising_a_draft_into_a_breaking_change_is_refused() -> None:
    app = new_app()
    app.create_release(TASK, spec(), ACTOR, REASON)
    app.create_release(TASK, spec(prompt_template="v2"), ACTOR, REASON)
    breaking = spec(output_schema={"type": "object", "properties": {"score": {"type": "string"}}})
    with pytest.raises(ValidationError, match=f"{TASK}-v2"):
        app.revise_release(TASK, 2, breaking, ACTOR, REASON)
    app.revise_release(TASK, 2, spec(prompt_template="v2, reworded"), ACTOR, REASON)


@pytest.mark.parametrize("command", ["pin", "override"])
def test_a_draft_release_cannot_serve_a_tenant(command: str) -> None:
    app = new_app()
    released_task(app, count=1, default=1, stage="Stable")
    app.create_release(TASK, spec(prompt_template="draft"), ACTOR, REASON)
    app.register_tenant("acme", "", "general", ACTOR, REASON)
    def attempt() -> object:
        if command == "pin":
            return app.pin("acme", TASK, 2, ACTOR, REASON)
        return app.set_override("acme", TASK, "prompt", "ours", ACTOR, REASON, base_release=2)

    with pytest.raises(ConflictError, match="Draft"):
        attempt()


def test_unfreezing_without_permission_is_refused_by_the_aggregate_itself() -> None:
    app = new_app()
    released_task(app, count=2, default=1)
    rollout = rollout_id(app.plan_rollout(TASK, 2, ACTOR, REASON))
    app.start_rollout(rollout, ACTOR, REASON)
    app.freeze_rollout(rollout, ACTOR, REASON)
    before = len(stored_events(app))
    with pytest.raises(ForbiddenError, match="admin"):
        app.resume_rollout(rollout, ACTOR, REASON, may_unfreeze=False)
    assert len(stored_events(app)) == before
    app.resume_rollout(rollout, ACTOR, REASON, may_unfreeze=True)


def test_a_resent_automatic_pause_after_an_operator_resume_records_nothing() -> None:
    app = new_app()
    released_task(app, count=2, default=1)
    rollout = rollout_id(app.plan_rollout(TASK, 2, ACTOR, REASON))
    app.start_rollout(rollout, ACTOR, REASON)
    evidence = {"decision_id": f"{rollout}:errors:1", "value": 0.2}
    assert app.pause_rollout(rollout, "relctl-guard", REASON, evidence=evidence)["changed"]
    app.resume_rollout(rollout, ACTOR, "investigated, fine")
    again = app.pause_rollout(rollout, "relctl-guard", REASON, evidence=evidence)
    assert again["changed"] is False
    assert app.rollout(rollout).state == "Running"
    other = {"decision_id": f"{rollout}:errors:2"}
    assert app.pause_rollout(rollout, "relctl-guard", REASON, evidence=other)["changed"]


def test_evidence_consumers_cannot_read_is_refused() -> None:
    app = new_app()
    released_task(app, count=2, default=1)
    rollout = rollout_id(app.plan_rollout(TASK, 2, ACTOR, REASON))
    app.start_rollout(rollout, ACTOR, REASON)
    with pytest.raises(ValidationError, match="64 bits"):
        app.roll_back(rollout, ACTOR, REASON, evidence={"samples": 2**64})
