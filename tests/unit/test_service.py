"""The application layer over in-memory persistence: attribution, and refusals record nothing."""

from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest
from relctl.application.service import ControlPlane
from relctl.domain.errors import ConflictError, NotFoundError, ValidationError
from relctl.domain.ids import blueprint_id, release_id, task_id, tenant_id

from .support import (
    ACTOR,
    BAD_ATTRIBUTIONS,
    OTHER,
    REASON,
    TASK,
    new_app,
    notification_count,
    released_task,
    rollout_id,
    spec,
    stages,
)

CAROL = "carol"  # has not confirmed anything yet
Command = Callable[[ControlPlane, dict[str, Any], Any, Any], Any]


def world() -> tuple[ControlPlane, dict[str, Any]]:
    """A task with v1 Stable (default), v2 Beta and v3 Draft; tenants; a blueprint; rollouts
    in the states the rollout commands need."""
    app = new_app()
    released_task(app, count=2, default=1)
    app.create_release(TASK, spec(prompt_template="v3 draft"), ACTOR, REASON)
    for task in ("t-planned", "t-running", "t-final", "t-paused"):
        released_task(app, task=task, count=2, default=1)
    ctx: dict[str, Any] = {}
    ctx["planned"] = rollout_id(app.plan_rollout("t-planned", 2, ACTOR, REASON))
    ctx["running"] = rollout_id(app.plan_rollout("t-running", 2, ACTOR, REASON))
    app.start_rollout(ctx["running"], ACTOR, REASON)
    ctx["final"] = rollout_id(app.plan_rollout("t-final", 2, ACTOR, REASON, steps=[100]))
    app.start_rollout(ctx["final"], ACTOR, REASON)
    ctx["paused"] = rollout_id(app.plan_rollout("t-paused", 2, ACTOR, REASON))
    app.start_rollout(ctx["paused"], ACTOR, REASON)
    app.pause_rollout(ctx["paused"], ACTOR, REASON)

    app.register_tenant("acme", "Acme", "general", ACTOR, REASON)
    app.set_override("acme", TASK, "prompt", "Be brief.", ACTOR, REASON)
    app.pin("acme", TASK, 2, ACTOR, REASON)
    app.create_blueprint("qa-default", stages(critical={"s0/b0": "never swear"}), ACTOR, REASON)
    app.confirm_critical("qa-default", "s0", "b0", OTHER, REASON)
    app.create_blueprint("qa-ready", stages(critical={"s0/b0": "never swear"}), ACTOR, REASON)
    app.confirm_critical("qa-ready", "s0", "b0", ACTOR, REASON)
    app.confirm_critical("qa-ready", "s0", "b0", OTHER, REASON)
    return app, ctx


COMMANDS: dict[str, Command] = {
    "create_release": lambda app, _, a, r: app.create_release(
        TASK, spec(prompt_template="v4"), a, r),
    "create_release_new_task": lambda app, _, a, r: app.create_release("fresh", spec(), a, r),
    "revise_release": lambda app, _, a, r: app.revise_release(
        TASK, 3, spec(prompt_template="v3 better"), a, r),
    "promote_release": lambda app, _, a, r: app.promote_release(TASK, 3, "InternalTest", a, r),
    "set_default_release": lambda app, _, a, r: app.set_default_release(TASK, 2, a, r),
    "create_blueprint": lambda app, _, a, r: app.create_blueprint("qa-other", stages(), a, r),
    "update_blueprint": lambda app, _, a, r: app.update_blueprint(
        "qa-default", stages((20, 80), critical={"s0/b0": "never swear"}), a, r),
    "confirm_critical": lambda app, _, a, r: app.confirm_critical(
        "qa-default", "s0", "b0", a, r),
    "publish_blueprint": lambda app, _, a, r: app.publish_blueprint("qa-ready", a, r),
    "register_tenant": lambda app, _, a, r: app.register_tenant("globex", "G", "internal", a, r),
    "move_tenant": lambda app, _, a, r: app.move_tenant("acme", "internal", a, r),
    "flip_flag": lambda app, _, a, r: app.flip_flag("acme", "enable_blueprints", True, a, r),
    "flip_flag_no_op": lambda app, _, a, r: app.flip_flag(
        "acme", "enable_blueprints", False, a, r),
    "set_override": lambda app, _, a, r: app.set_override("acme", TASK, "filter", "f", a, r),
    "clear_override": lambda app, _, a, r: app.clear_override("acme", TASK, "prompt", a, r),
    "pin": lambda app, _, a, r: app.pin("acme", TASK, 1, a, r, days=60),
    "unpin": lambda app, _, a, r: app.unpin("acme", TASK, a, r),
    "reset_tenant": lambda app, _, a, r: app.reset_tenant("acme", None, a, r),
    "plan_rollout": lambda app, _, a, r: app.plan_rollout(TASK, 2, a, r),
    "start_rollout": lambda app, c, a, r: app.start_rollout(c["planned"], a, r),
    "advance_rollout": lambda app, c, a, r: app.advance_rollout(c["running"], a, r),
    "pause_rollout": lambda app, c, a, r: app.pause_rollout(c["running"], a, r),
    "pause_rollout_no_op": lambda app, c, a, r: app.pause_rollout(c["paused"], a, r),
    "resume_rollout": lambda app, c, a, r: app.resume_rollout(c["paused"], a, r),
    "freeze_rollout": lambda app, c, a, r: app.freeze_rollout(c["running"], a, r),
    "roll_back": lambda app, c, a, r: app.roll_back(c["running"], a, r),
    "complete_rollout": lambda app, c, a, r: app.complete_rollout(c["final"], a, r),
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_succeeds_with_attribution(name: str) -> None:
    app, ctx = world()
    before = notification_count(app)
    COMMANDS[name](app, ctx, CAROL, "a good reason")
    if name.endswith("_no_op"):
        assert notification_count(app) == before
    else:
        assert notification_count(app) > before


@pytest.mark.parametrize(("actor", "reason"), BAD_ATTRIBUTIONS)
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_without_attribution_records_nothing(
    name: str, actor: Any, reason: Any,
) -> None:
    app, ctx = world()
    before = notification_count(app)
    message = "authenticated actor" if reason == REASON else "reason of at least 3 characters"
    with pytest.raises(ValidationError, match=message):
        COMMANDS[name](app, ctx, actor, reason)
    assert notification_count(app) == before


# ---- other refusals record nothing -------------------------------------------------------

REFUSALS: dict[str, tuple[Command, type[Exception], str]] = {
    "default-draft": (lambda app, _, a, r: app.set_default_release(TASK, 3, a, r),
                      ConflictError, "v3 is Draft; promote it"),
    "default-same": (lambda app, _, a, r: app.set_default_release(TASK, 1, a, r),
                     ConflictError, "v1 is already the default"),
    "default-missing": (lambda app, _, a, r: app.set_default_release(TASK, 9, a, r),
                        NotFoundError, "release csat-scoring v9 does not exist"),
    "promote-back": (lambda app, _, a, r: app.promote_release(TASK, 2, "Draft", a, r),
                     ConflictError, "only moves forward"),
    "register-twice": (lambda app, _, a, r: app.register_tenant("acme", "A", "general", a, r),
                       ConflictError, "tenant .acme. already exists"),
    "move-same": (lambda app, _, a, r: app.move_tenant("acme", "general", a, r),
                  ConflictError, "already in cohort general"),
    "unknown-tenant": (lambda app, _, a, r: app.move_tenant("nobody", "internal", a, r),
                       NotFoundError, "tenant 'nobody' does not exist"),
    "unknown-flag": (lambda app, _, a, r: app.flip_flag("acme", "enable_magic", True, a, r),
                     ValidationError, "unknown flag"),
    "override-missing-release": (
        lambda app, _, a, r: app.set_override("acme", TASK, "prompt", "x", a, r,
                                              base_release=9),
        NotFoundError, "task csat-scoring has no release v9"),
    "override-unknown-task": (
        lambda app, _, a, r: app.set_override("acme", "nope", "prompt", "x", a, r),
        NotFoundError, "task 'nope' does not exist"),
    "clear-missing-override": (
        lambda app, _, a, r: app.clear_override("acme", TASK, "filter", a, r),
        NotFoundError, "no filter override"),
    "pin-61-days": (lambda app, _, a, r: app.pin("acme", TASK, 1, a, r, days=61),
                    ValidationError, "1 to 60 days"),
    "pin-0-days": (lambda app, _, a, r: app.pin("acme", TASK, 1, a, r, days=0),
                   ValidationError, "1 to 60 days"),
    "unpin-missing": (lambda app, _, a, r: app.unpin("acme", "t-running", a, r),
                      NotFoundError, "has no pin for t-running"),
    "reset-nothing": (lambda app, _, a, r: app.reset_tenant("acme", "t-running", a, r),
                      ConflictError, "already follows the defaults for t-running"),
    "plan-second": (lambda app, _, a, r: app.plan_rollout("t-running", 1, a, r, baseline=2),
                    ConflictError, "only one rollout per task may be active"),
    "unknown-rollout": (lambda app, _, a, r: app.start_rollout(uuid4(), a, r),
                        NotFoundError, "does not exist"),
    "rollout-id-of-a-task": (lambda app, _, a, r: app.start_rollout(task_id(TASK), a, r),
                             NotFoundError, "does not exist"),
    "publish-unconfirmed": (lambda app, _, a, r: app.publish_blueprint("qa-default", a, r),
                            ValidationError, "has 1 confirmation"),
    "confirm-twice": (lambda app, _, a, r: app.confirm_critical("qa-default", "s0", "b0", OTHER,
                                                                r),
                      ConflictError, "bob already confirmed"),
    "blueprint-version-missing": (
        lambda app, _, a, r: app.create_release(TASK, spec(blueprint_version_id="qa-default@v1"),
                                                a, r),
        NotFoundError, "blueprint version qa-default@v1 does not exist"),
    "stale-release": (lambda app, _, a, r: app.promote_release(TASK, 3, "Beta", a, r,
                                                               expected_version=5),
                      ConflictError, "is at version 1, not 5"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refused_commands_record_nothing(name: str) -> None:
    command, error, message = REFUSALS[name]
    app, ctx = world()
    before = notification_count(app)
    with pytest.raises(error, match=message):
        command(app, ctx, ACTOR, REASON)
    assert notification_count(app) == before


# ---- outcomes ----------------------------------------------------------------------------


def test_flag_no_op_says_so() -> None:
    app, _ = world()
    outcome = app.flip_flag("acme", "enable_blueprints", False, ACTOR, REASON)
    assert outcome["changed"] is False
    assert outcome["note"] == "enable_blueprints is already False"
    outcome = app.flip_flag("acme", "enable_blueprints", True, ACTOR, REASON)
    assert outcome["changed"] is True
    assert "note" not in outcome
    assert app.tenant("acme").flags["enable_blueprints"] is True


def test_override_defaults_its_base_to_the_task_default() -> None:
    app, _ = world()
    assert app.tenant("acme").overrides[TASK]["base_release"] == 1
    app.set_override("acme", TASK, "filter", "no-pii", ACTOR, REASON)
    assert app.tenant("acme").overrides[TASK]["base_release"] == 1
    app.set_override("acme", TASK, "filter", "no-pii", ACTOR, REASON, base_release=2)
    assert app.tenant("acme").overrides[TASK]["base_release"] == 2


def test_override_without_any_default_is_refused() -> None:
    app = new_app()
    released_task(app, count=1, default=None)
    app.register_tenant("acme", "Acme", "general", ACTOR, REASON)
    before = notification_count(app)
    with pytest.raises(ConflictError, match="no default release for the override"):
        app.set_override("acme", TASK, "prompt", "x", ACTOR, REASON)
    assert notification_count(app) == before


def test_ids_are_derived_from_keys() -> None:
    app, _ = world()
    assert app.task(TASK).id == task_id(TASK)
    assert app.release(TASK, 2).id == release_id(TASK, 2)
    assert app.tenant("acme").id == tenant_id("acme")
    assert app.blueprint("qa-default").id == blueprint_id("qa-default")
    assert release_id(TASK, 1) != release_id(TASK, 2)
    assert release_id(TASK, 1) != release_id("csat-scoring-v2", 1)
    assert isinstance(task_id(TASK), UUID)


def test_history_lists_an_aggregates_events() -> None:
    app, _ = world()
    names = [type(e).__qualname__ for e in app.history(tenant_id("acme"))]
    assert names == ["Tenant.Registered", "Tenant.OverrideSet", "Tenant.Pinned"]


def test_events_carry_actor_and_reason() -> None:
    app = new_app()
    app.register_tenant("acme", "Acme", "general", "dana", "onboarding call 42")
    app.flip_flag("acme", "enable_blueprints", True, "erin", "pilot starts")
    events = app.history(tenant_id("acme"))
    assert [(e.actor, e.reason) for e in events] == [
        ("dana", "onboarding call 42"), ("erin", "pilot starts")]
