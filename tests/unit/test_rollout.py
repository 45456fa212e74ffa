"""Rollout: steps, the state machine (every state x command), and the task-level rules."""

from collections.abc import Callable
from typing import Any

import pytest
from relctl.domain.errors import ConflictError, NotFoundError, ValidationError
from relctl.domain.rollout import (
    DEFAULT_STEPS,
    Rollout,
    normalize_steps,
    step_includes,
    tenant_bucket,
)
from relctl.domain.tenant import COHORTS

from .support import (
    ACTOR,
    OTHER,
    REASON,
    TASK,
    new_app,
    notification_count,
    released_task,
    rollout_id,
)

# ---- steps -------------------------------------------------------------------------------


def test_default_steps() -> None:
    assert DEFAULT_STEPS == (10, 25, 50, 100)
    assert normalize_steps(None) == ("percent", [10, 25, 50, 100])


@pytest.mark.parametrize(
    ("steps", "expected"),
    [([100], [100]), ([1, 100], [1, 100]), ([5, 12.5, 100], [5, 12.5, 100]),
     ([10.0, 50.0, 100.0], [10, 50, 100]), ([0.5, 99.9, 100], [0.5, 99.9, 100])],
)
def test_valid_percentage_steps(steps: list[Any], expected: list[Any]) -> None:
    mode, normalized = normalize_steps(steps)
    assert mode == "percent"
    assert normalized == expected
    assert all(type(a) is type(b) for a, b in zip(normalized, expected, strict=True))


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([10, 10, 100], "strictly increase"),
        ([50, 25, 100], "strictly increase"),
        ([10, 100, 100], "strictly increase"),
        ([10, 25, 50], "last percentage step must be 100"),
        ([99.9], "last percentage step must be 100"),
        ([0, 100], r"in \(0, 100\]"),
        ([-5, 100], r"in \(0, 100\]"),
        ([10, 150], r"in \(0, 100\]"),
        ([float("nan"), 100], r"in \(0, 100\]"),
        ([], "non-empty list"),
        ((10, 100), "non-empty list"),
        ("10,100", "non-empty list"),
        ([10, "general"], "not a mix"),
        ([True, 100], "not a mix"),
        ([None], "not a mix"),
    ],
)
def test_invalid_percentage_steps(steps: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        normalize_steps(steps)


@pytest.mark.parametrize(
    "steps",
    [["general"], ["internal", "general"], ["internal", "closed_beta", "open_beta", "general"],
     ["closed_beta", "general"], ["internal", "open_beta", "general"]],
)
def test_valid_cohort_steps(steps: list[str]) -> None:
    assert normalize_steps(steps) == ("cohort", steps)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (["open_beta", "internal", "general"], "must follow the order internal -> closed_beta"),
        (["internal", "internal", "general"], "must follow the order"),
        (["general", "general"], "must follow the order"),
        (["internal", "open_beta"], "last cohort step must be 'general'"),
        (["internal", "beta", "general"], "unknown cohorts"),
        (["General"], "unknown cohorts"),
    ],
)
def test_invalid_cohort_steps(steps: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        normalize_steps(steps)


def test_tenant_bucket_is_stable_and_in_range() -> None:
    buckets = [tenant_bucket(TASK, f"tenant-{i}") for i in range(2000)]
    assert all(0 <= b < 100 for b in buckets)
    assert buckets == [tenant_bucket(TASK, f"tenant-{i}") for i in range(2000)]
    # spread: about a tenth of tenants fall under 10%
    assert 150 < sum(b < 10 for b in buckets) < 250
    # a different task shuffles tenants independently
    assert buckets != [tenant_bucket("other-task", f"tenant-{i}") for i in range(2000)]


def test_percentage_step_membership() -> None:
    tenant = "tenant-1"
    bucket = tenant_bucket(TASK, tenant)
    assert step_includes("percent", 100, TASK, tenant, None)
    assert step_includes("percent", bucket + 0.01, TASK, tenant, None)
    assert not step_includes("percent", bucket, TASK, tenant, None)


@pytest.mark.parametrize("cohort", [*COHORTS, None])
@pytest.mark.parametrize("step", COHORTS)
def test_cohort_step_membership(cohort: str | None, step: str) -> None:
    position = COHORTS.index(cohort or "general")
    expected = position <= COHORTS.index(step)
    assert step_includes("cohort", step, TASK, "acme", cohort) is expected


# ---- planning ----------------------------------------------------------------------------

RULES = [{"name": "errors", "metric": "llm_error_rate", "comparator": ">", "threshold": 0.02,
          "gate_class": "RollbackTrigger"}]


def plan(steps: Any = None, rules: Any = None, shadow: bool = False) -> Rollout:
    rollout = Rollout.plan(TASK, 1, 2, steps, rules, shadow, ACTOR, REASON)
    rollout.collect_events()
    return rollout


def test_plan() -> None:
    rollout = plan(rules=RULES, shadow=True)
    assert rollout.state == "Planned"
    assert (rollout.baseline, rollout.candidate) == (1, 2)
    assert rollout.steps == [10, 25, 50, 100]
    assert rollout.step_index == -1
    assert rollout.current_step is None
    assert rollout.shadow is True
    assert rollout.guard_rules[0]["min_samples"] == 1
    assert rollout.active
    assert not rollout.includes("acme", "internal")


def test_plan_refuses_same_baseline_and_candidate() -> None:
    with pytest.raises(ValidationError, match="baseline and candidate must be different"):
        Rollout.plan(TASK, 2, 2, None, None, False, ACTOR, REASON)


@pytest.mark.parametrize(
    ("steps", "rules", "message"),
    [([10, 50], None, "last percentage step"), (None, [{"name": "x"}], "unknown metric"),
     (None, [RULES[0], RULES[0]], "unique")],
)
def test_plan_validates_steps_and_rules(steps: Any, rules: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Rollout.plan(TASK, 1, 2, steps, rules, False, ACTOR, REASON)


# ---- the state machine: every (state, command) pair ---------------------------------------

COMMANDS = ("start", "advance", "pause", "resume", "freeze", "roll_back", "complete")

SETUP: dict[str, tuple[str, ...]] = {
    "Planned": (),
    "Running": ("start",),
    "Running@final": ("start", "advance", "advance", "advance"),
    "Paused": ("start", "pause"),
    "Frozen": ("start", "freeze"),
    "Frozen@paused": ("start", "pause", "freeze"),
    "RolledBack": ("start", "roll_back"),
    "Completed": ("start", "advance", "advance", "advance", "complete"),
}

C, NOOP = "conflict", "no-op"
# state -> command -> resulting state, NOOP (returns False, records nothing) or C (conflict)
TABLE: dict[str, dict[str, str]] = {
    "Planned": {"start": "Running", "advance": C, "pause": C, "resume": C, "freeze": C,
                "roll_back": "RolledBack", "complete": C},
    "Running": {"start": C, "advance": "Running", "pause": "Paused", "resume": C,
                "freeze": "Frozen", "roll_back": "RolledBack", "complete": C},
    "Running@final": {"start": C, "advance": C, "pause": "Paused", "resume": C,
                      "freeze": "Frozen", "roll_back": "RolledBack", "complete": "Completed"},
    "Paused": {"start": C, "advance": C, "pause": NOOP, "resume": "Running",
               "freeze": "Frozen", "roll_back": "RolledBack", "complete": C},
    "Frozen": {"start": C, "advance": C, "pause": C, "resume": "Running", "freeze": NOOP,
               "roll_back": "RolledBack", "complete": C},
    "Frozen@paused": {"start": C, "advance": C, "pause": C, "resume": "Running",
                      "freeze": NOOP, "roll_back": "RolledBack", "complete": C},
    "RolledBack": {"start": C, "advance": C, "pause": C, "resume": C, "freeze": C,
                   "roll_back": NOOP, "complete": C},
    "Completed": {"start": C, "advance": C, "pause": C, "resume": C, "freeze": C,
                  "roll_back": C, "complete": C},
}

EVENT_OF = {"start": "Started", "advance": "StepAdvanced", "pause": "Paused",
            "resume": "Resumed", "freeze": "Frozen", "roll_back": "RolledBack",
            "complete": "Completed"}


def rollout_in(state: str) -> Rollout:
    rollout = plan()
    for command in SETUP[state]:
        getattr(rollout, command)(actor=ACTOR, reason=REASON)
    rollout.collect_events()
    assert rollout.state == state.split("@", maxsplit=1)[0]
    return rollout


def test_table_covers_every_pair() -> None:
    assert set(TABLE) == set(SETUP)
    assert all(set(row) == set(COMMANDS) for row in TABLE.values())


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("state", list(TABLE))
def test_state_command_pair(state: str, command: str) -> None:
    rollout = rollout_in(state)
    before = rollout.summary()
    expected = TABLE[state][command]
    if expected == C:
        with pytest.raises(ConflictError, match=r"cannot|final step"):
            getattr(rollout, command)(actor=ACTOR, reason=REASON)
        assert rollout.summary() == before
        assert rollout.collect_events() == []
    elif expected == NOOP:
        assert getattr(rollout, command)(actor=ACTOR, reason=REASON) is False
        assert rollout.summary() == before
        assert rollout.collect_events() == []
    else:
        result = getattr(rollout, command)(actor=ACTOR, reason=REASON)
        assert result in (None, True)
        assert rollout.state == expected
        assert [type(e).__name__ for e in rollout.collect_events()] == [EVENT_OF[command]]
        assert rollout.version == before["aggregate_version"] + 1


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("state", list(TABLE))
def test_state_command_pair_without_attribution(state: str, command: str) -> None:
    rollout = rollout_in(state)
    before = rollout.summary()
    with pytest.raises(ValidationError, match="actor"):
        getattr(rollout, command)(actor="", reason=REASON)
    with pytest.raises(ValidationError, match="reason"):
        getattr(rollout, command)(actor=ACTOR, reason="no")
    assert rollout.summary() == before
    assert rollout.collect_events() == []


def test_conflict_messages_say_what_is_needed() -> None:
    with pytest.raises(ConflictError, match="it is Planned, and advance needs it to be Running"):
        rollout_in("Planned").advance(ACTOR, REASON)
    with pytest.raises(ConflictError, match="needs it to be Paused or Frozen"):
        rollout_in("Running").resume(ACTOR, REASON)
    with pytest.raises(ConflictError, match=r"is at its final step \(100\); complete it instead"):
        rollout_in("Running@final").advance(ACTOR, REASON)
    with pytest.raises(ConflictError, match="is at step 1 of 4; advance to the final step"):
        rollout_in("Running").complete(ACTOR, REASON)


def test_steps_advance_one_at_a_time() -> None:
    rollout = rollout_in("Running")
    seen = [rollout.current_step]
    while rollout.step_index + 1 < len(rollout.steps):
        rollout.advance(ACTOR, REASON)
        seen.append(rollout.current_step)
    assert seen == [10, 25, 50, 100]
    events = rollout.collect_events()
    assert [(e.step_index, e.step) for e in events] == [(1, 25), (2, 50), (3, 100)]


def test_resume_keeps_the_step() -> None:
    rollout = rollout_in("Running")
    rollout.advance(ACTOR, REASON)
    rollout.freeze(ACTOR, REASON)
    rollout.resume(ACTOR, REASON)
    assert (rollout.state, rollout.current_step) == ("Running", 25)


def test_guard_decisions_are_noted_with_evidence() -> None:
    rollout = rollout_in("Running")
    evidence = {"rule": "errors", "value": 0.05, "samples": 400}
    rollout.pause("guard", "errors above 2%", evidence=evidence)
    rollout.freeze("guard", "still above", evidence=evidence)
    rollout.roll_back(OTHER, "giving up")
    assert rollout.decisions == [
        {"action": "pause", "actor": "guard", "reason": "errors above 2%", "evidence": evidence},
        {"action": "freeze", "actor": "guard", "reason": "still above", "evidence": evidence},
        {"action": "rollback", "actor": OTHER, "reason": "giving up", "evidence": None},
    ]


def test_terminal_rollouts_include_nobody() -> None:
    for state in ("RolledBack", "Completed"):
        rollout = rollout_in(state)
        assert not rollout.active
        assert not rollout.includes("anyone", "internal")


def test_includes_follows_the_current_step() -> None:
    rollout = Rollout.plan(TASK, 1, 2, ["internal", "open_beta", "general"], None, False,
                           ACTOR, REASON)
    rollout.start(ACTOR, REASON)
    assert rollout.includes("a", "internal")
    assert not rollout.includes("b", "closed_beta")
    rollout.advance(ACTOR, REASON)
    assert rollout.includes("b", "closed_beta")
    assert not rollout.includes("c", None)
    rollout.pause(ACTOR, REASON)  # a paused rollout keeps tenants where they are
    assert rollout.includes("b", "closed_beta")
    rollout.resume(ACTOR, REASON)
    rollout.advance(ACTOR, REASON)
    assert rollout.includes("c", None)


# ---- through the application: task-level rules --------------------------------------------


@pytest.fixture
def app() -> Any:
    app = new_app()
    released_task(app, count=3)
    return app


def test_one_active_rollout_per_task(app: Any) -> None:
    first = app.plan_rollout(TASK, 2, ACTOR, REASON)
    assert app.task(TASK).active_rollout == rollout_id(first)
    before = notification_count(app)
    with pytest.raises(ConflictError, match="already has an active rollout"):
        app.plan_rollout(TASK, 3, ACTOR, REASON)
    assert notification_count(app) == before
    app.roll_back(rollout_id(first), ACTOR, REASON)
    second = app.plan_rollout(TASK, 3, ACTOR, REASON)
    assert app.task(TASK).active_rollout == rollout_id(second)
    assert app.task(TASK).rollouts == [rollout_id(first), rollout_id(second)]


def test_complete_only_at_final_step_and_sets_the_default(app: Any) -> None:
    rid = rollout_id(app.plan_rollout(TASK, 2, ACTOR, REASON, steps=[50, 100]))
    app.start_rollout(rid, ACTOR, REASON)
    before = notification_count(app)
    with pytest.raises(ConflictError, match="advance to the final step before completing"):
        app.complete_rollout(rid, ACTOR, REASON)
    assert notification_count(app) == before
    assert app.task(TASK).default_release == 1
    app.advance_rollout(rid, ACTOR, REASON)
    outcome = app.complete_rollout(rid, ACTOR, REASON)
    assert outcome["aggregate"]["state"] == "Completed"
    task = app.task(TASK)
    assert task.default_release == 2
    assert task.active_rollout is None


def test_rollback_leaves_the_default_at_the_baseline(app: Any) -> None:
    rid = rollout_id(app.plan_rollout(TASK, 2, ACTOR, REASON))
    app.start_rollout(rid, ACTOR, REASON)
    app.advance_rollout(rid, ACTOR, REASON)
    outcome = app.roll_back(rid, "guard", "errors too high", evidence={"value": 0.2})
    assert outcome["changed"] is True
    assert outcome["aggregate"]["state"] == "RolledBack"
    task = app.task(TASK)
    assert task.default_release == 1
    assert task.active_rollout is None


def test_second_rollback_records_nothing(app: Any) -> None:
    rid = rollout_id(app.plan_rollout(TASK, 2, ACTOR, REASON))
    app.start_rollout(rid, ACTOR, REASON)
    assert app.roll_back(rid, "guard", "errors too high")["changed"] is True
    before = notification_count(app)
    again = app.roll_back(rid, "guard", "errors too high")
    assert again["changed"] is False
    assert again["note"] == "rollout is already RolledBack; nothing recorded"
    assert notification_count(app) == before
    assert len(app.history(rid)) == 3


@pytest.mark.parametrize("command", ["pause_rollout", "freeze_rollout"])
def test_repeated_guard_commands_record_nothing(app: Any, command: str) -> None:
    rid = rollout_id(app.plan_rollout(TASK, 2, ACTOR, REASON))
    app.start_rollout(rid, ACTOR, REASON)
    assert getattr(app, command)(rid, "guard", "breach seen")["changed"] is True
    before = notification_count(app)
    assert getattr(app, command)(rid, "guard", "breach seen")["changed"] is False
    assert notification_count(app) == before


def test_rollback_from_planned_closes_the_rollout(app: Any) -> None:
    rid = rollout_id(app.plan_rollout(TASK, 2, ACTOR, REASON))
    app.roll_back(rid, ACTOR, "changed our mind")
    assert app.task(TASK).active_rollout is None
    assert app.task(TASK).default_release == 1


def test_default_cannot_be_set_during_a_rollout(app: Any) -> None:
    app.plan_rollout(TASK, 2, ACTOR, REASON)
    before = notification_count(app)
    with pytest.raises(ConflictError, match="has an active rollout"):
        app.set_default_release(TASK, 3, ACTOR, REASON)
    assert notification_count(app) == before


@pytest.mark.parametrize("stage", ["Draft", "Deprecated"])
def test_candidate_must_be_promoted_and_not_deprecated(stage: str) -> None:
    app = new_app()
    released_task(app, count=1)
    app.create_release(TASK, {**app.release(TASK, 1).content, "prompt_template": "v2"},
                       ACTOR, REASON)
    if stage == "Deprecated":
        app.promote_release(TASK, 2, "Deprecated", ACTOR, REASON)
    before = notification_count(app)
    with pytest.raises(ConflictError, match=f"candidate csat-scoring v2 is {stage}"):
        app.plan_rollout(TASK, 2, ACTOR, REASON)
    assert notification_count(app) == before


def test_plan_needs_a_baseline() -> None:
    app = new_app()
    released_task(app, count=2, default=None)
    with pytest.raises(ConflictError, match="no default release to roll out from"):
        app.plan_rollout(TASK, 2, ACTOR, REASON)
    outcome = app.plan_rollout(TASK, 2, ACTOR, REASON, baseline=1)
    assert outcome["aggregate"]["baseline"] == 1


def test_plan_refers_to_existing_releases(app: Any) -> None:
    before = notification_count(app)
    with pytest.raises(NotFoundError, match="release csat-scoring v9 does not exist"):
        app.plan_rollout(TASK, 9, ACTOR, REASON)
    with pytest.raises(NotFoundError, match="task 'nope' does not exist"):
        app.plan_rollout("nope", 2, ACTOR, REASON)
    assert notification_count(app) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"steps": [10, 5, 100]}, "strictly increase"),
     ({"steps": ["internal", "open_beta"]}, "must be 'general'"),
     ({"guard_rules": [{**RULES[0], "threshold": 2}]}, "fraction between 0 and 1"),
     ({"guard_rules": [{**RULES[0], "for_seconds": 600}]}, "for_seconds must be between")],
)
def test_invalid_plan_records_nothing(app: Any, kwargs: dict[str, Any], message: str) -> None:
    before = notification_count(app)
    with pytest.raises(ValidationError, match=message):
        app.plan_rollout(TASK, 2, ACTOR, REASON, **kwargs)
    assert notification_count(app) == before
    assert app.task(TASK).active_rollout is None


def test_stale_expected_version_is_refused(app: Any) -> None:
    rid = rollout_id(app.plan_rollout(TASK, 2, ACTOR, REASON))
    app.start_rollout(rid, ACTOR, REASON, expected_version=1)
    before = notification_count(app)
    with pytest.raises(ConflictError, match="is at version 2, not 1"):
        app.advance_rollout(rid, ACTOR, REASON, expected_version=1)
    assert notification_count(app) == before


SERVICE_COMMANDS: dict[str, Callable[..., Any]] = {
    "start": lambda app, rid: app.start_rollout(rid, ACTOR, REASON),
    "advance": lambda app, rid: app.advance_rollout(rid, ACTOR, REASON),
    "pause": lambda app, rid: app.pause_rollout(rid, ACTOR, REASON),
    "resume": lambda app, rid: app.resume_rollout(rid, ACTOR, REASON),
    "freeze": lambda app, rid: app.freeze_rollout(rid, ACTOR, REASON),
    "roll_back": lambda app, rid: app.roll_back(rid, ACTOR, REASON),
    "complete": lambda app, rid: app.complete_rollout(rid, ACTOR, REASON),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("state", list(TABLE))
def test_state_command_pair_through_the_application(app: Any, state: str, command: str) -> None:
    rid = rollout_id(app.plan_rollout(TASK, 2, ACTOR, REASON))
    for step in SETUP[state]:
        SERVICE_COMMANDS[step](app, rid)
    before = notification_count(app)
    expected = TABLE[state][command]
    if expected == C:
        with pytest.raises(ConflictError):
            SERVICE_COMMANDS[command](app, rid)
        assert notification_count(app) == before
    elif expected == NOOP:
        assert SERVICE_COMMANDS[command](app, rid)["changed"] is False
        assert notification_count(app) == before
    else:
        outcome = SERVICE_COMMANDS[command](app, rid)
        assert outcome["changed"] is True
        assert outcome["aggregate"]["state"] == expected
        closes = expected in ("RolledBack", "Completed")
        # closing also records on the task; starting also records the candidate's GatePassed
        # (the task's gates are waived: the passage names the waiver)
        assert notification_count(app) == before + (2 if closes or command == "start" else 1)
        assert (app.task(TASK).active_rollout is None) is closes
