"""Tenant: flags, cohorts, overrides with who/why, pins and reset to defaults."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from relctl.domain.errors import ConflictError, NotFoundError, ValidationError
from relctl.domain.tenant import COHORTS, DEFAULT_PIN_DAYS, FLAGS, MAX_PIN_DAYS, Tenant

from .support import ACTOR, OTHER, REASON, TASK, new_app, notification_count, released_task

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def tenant(cohort: str = "general") -> Tenant:
    t = Tenant.register("acme", "Acme Inc", cohort, ACTOR, REASON)
    t.collect_events()
    return t


def event_names(t: Tenant) -> list[str]:
    return [type(e).__name__ for e in t.collect_events()]


# ---- registration and cohorts ------------------------------------------------------------


def test_registration_defaults() -> None:
    t = Tenant.register("acme", "", "internal", ACTOR, REASON)
    assert t.name == "acme"
    assert t.cohort == "internal"
    assert t.flags == dict.fromkeys(FLAGS, False)
    assert len(FLAGS) == 5
    assert (t.overrides, t.pins) == ({}, {})


@pytest.mark.parametrize("cohort", ["beta", "General", "", "everyone"])
def test_unknown_cohort_is_refused(cohort: str) -> None:
    with pytest.raises(ValidationError, match="unknown cohort"):
        Tenant.register("acme", "Acme", cohort, ACTOR, REASON)
    t = tenant()
    with pytest.raises(ValidationError, match="unknown cohort"):
        t.move_to_cohort(cohort, ACTOR, REASON)
    assert t.collect_events() == []


@pytest.mark.parametrize("key", ["Acme", "acme inc", "", "_acme"])
def test_tenant_key_must_be_valid(key: str) -> None:
    with pytest.raises(ValidationError, match="invalid tenant key"):
        Tenant.register(key, "Acme", "general", ACTOR, REASON)


@pytest.mark.parametrize("cohort", COHORTS)
def test_move_between_cohorts(cohort: str) -> None:
    t = tenant("general")
    if cohort == "general":
        with pytest.raises(ConflictError, match="already in cohort general"):
            t.move_to_cohort(cohort, ACTOR, REASON)
        assert t.collect_events() == []
    else:
        t.move_to_cohort(cohort, ACTOR, REASON)
        assert t.cohort == cohort
        events = t.collect_events()
        assert [(e.from_cohort, e.to_cohort) for e in events] == [("general", cohort)]


# ---- flags -------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", FLAGS)
def test_each_flag_flips_on_and_off(flag: str) -> None:
    t = tenant()
    assert t.flip_flag(flag, True, ACTOR, REASON) is True
    assert t.flags[flag] is True
    assert all(value is False for name, value in t.flags.items() if name != flag)
    assert t.flip_flag(flag, False, ACTOR, REASON) is True
    assert t.flags[flag] is False
    assert event_names(t) == ["FlagFlipped", "FlagFlipped"]


@pytest.mark.parametrize("flag", FLAGS)
def test_flipping_to_the_same_value_is_a_no_op(flag: str) -> None:
    t = tenant()
    assert t.flip_flag(flag, False, ACTOR, REASON) is False
    assert t.collect_events() == []
    t.flip_flag(flag, True, ACTOR, REASON)
    t.collect_events()
    version = t.version
    assert t.flip_flag(flag, True, ACTOR, REASON) is False
    assert t.version == version
    assert t.collect_events() == []


@pytest.mark.parametrize("flag", ["enable_everything", "ENABLE_BLUEPRINTS", "", "blueprints"])
def test_unknown_flag_is_refused(flag: str) -> None:
    t = tenant()
    with pytest.raises(ValidationError, match="unknown flag"):
        t.flip_flag(flag, True, ACTOR, REASON)
    assert t.collect_events() == []


@pytest.mark.parametrize("value", [1, 0, "true", None])
def test_flag_value_must_be_boolean(value: Any) -> None:
    t = tenant()
    with pytest.raises(ValidationError, match="switched to true or false"):
        t.flip_flag("enable_blueprints", value, ACTOR, REASON)
    assert t.flags["enable_blueprints"] is False


# ---- overrides ---------------------------------------------------------------------------


def test_override_records_who_and_why() -> None:
    t = tenant()
    t.set_override(TASK, "prompt", "Be brief.", 2, ACTOR, "customer asked for brevity")
    t.set_override(TASK, "filter", "no-pii", None, OTHER, "legal requirement")
    assert t.overrides == {TASK: {"base_release": 2, "values": {
        "prompt": {"value": "Be brief.", "by": ACTOR, "reason": "customer asked for brevity"},
        "filter": {"value": "no-pii", "by": OTHER, "reason": "legal requirement"},
    }}}
    t.set_override(TASK, "prompt", "Be very brief.", 3, OTHER, "tighter")
    assert t.overrides[TASK]["base_release"] == 3
    assert t.overrides[TASK]["values"]["prompt"] == {
        "value": "Be very brief.", "by": OTHER, "reason": "tighter"}
    assert event_names(t) == ["OverrideSet"] * 3


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [("model", "x", "override kind must be one of prompt, filter"),
     ("prompt", "", "non-empty value"), ("prompt", "   ", "non-empty value"),
     ("filter", None, "non-empty value")],
)
def test_override_rules(kind: str, value: Any, message: str) -> None:
    t = tenant()
    with pytest.raises(ValidationError, match=message):
        t.set_override(TASK, kind, value, 1, ACTOR, REASON)
    with pytest.raises(ValidationError, match="invalid task key"):
        t.set_override("Bad Task", "prompt", "x", 1, ACTOR, REASON)
    assert t.collect_events() == []


def test_clearing_overrides() -> None:
    t = tenant()
    t.set_override(TASK, "prompt", "p", 1, ACTOR, REASON)
    t.set_override(TASK, "filter", "f", 1, ACTOR, REASON)
    t.clear_override(TASK, "prompt", ACTOR, REASON)
    assert list(t.overrides[TASK]["values"]) == ["filter"]
    t.clear_override(TASK, "filter", ACTOR, REASON)
    assert t.overrides == {}
    t.collect_events()
    with pytest.raises(NotFoundError, match="has no filter override for csat-scoring"):
        t.clear_override(TASK, "filter", ACTOR, REASON)
    assert t.collect_events() == []


# ---- pins --------------------------------------------------------------------------------


@pytest.mark.parametrize("days", [1, DEFAULT_PIN_DAYS, 45, MAX_PIN_DAYS])
def test_pin_lasts_the_given_days(days: int) -> None:
    t = tenant()
    t.pin(TASK, 2, days, NOW, ACTOR, "customer needs time to migrate")
    assert t.pins[TASK] == {"release": 2, "expires_at": (NOW + timedelta(days=days)).isoformat(),
                            "by": ACTOR, "reason": "customer needs time to migrate"}
    assert t.active_pin(TASK, NOW + timedelta(days=days, seconds=-1)) == t.pins[TASK]
    assert t.active_pin(TASK, NOW + timedelta(days=days)) is None


def test_pin_limits() -> None:
    assert (DEFAULT_PIN_DAYS, MAX_PIN_DAYS) == (30, 60)


@pytest.mark.parametrize("days", [0, -1, 61, 365, 30.0, True, "30", None])
def test_pin_outside_1_to_60_days_is_refused(days: Any) -> None:
    t = tenant()
    with pytest.raises(ValidationError, match="a pin lasts 1 to 60 days"):
        t.pin(TASK, 1, days, NOW, ACTOR, REASON)
    assert t.pins == {}
    assert t.collect_events() == []


def test_repinning_replaces_the_pin() -> None:
    t = tenant()
    t.pin(TASK, 1, 10, NOW, ACTOR, REASON)
    t.pin(TASK, 2, 20, NOW, OTHER, REASON)
    assert t.pins[TASK]["release"] == 2
    assert t.pins[TASK]["by"] == OTHER


def test_unpin() -> None:
    t = tenant()
    t.pin(TASK, 1, 10, NOW, ACTOR, REASON)
    t.unpin(TASK, ACTOR, REASON)
    assert t.pins == {}
    assert t.active_pin(TASK, NOW) is None
    t.collect_events()
    with pytest.raises(NotFoundError, match="has no pin for csat-scoring"):
        t.unpin(TASK, ACTOR, REASON)
    assert t.collect_events() == []


def test_default_pin_through_the_application_is_30_days() -> None:
    app = new_app()
    released_task(app)
    app.register_tenant("acme", "Acme", "general", ACTOR, REASON)
    before = datetime.now(UTC)
    app.pin("acme", TASK, 1, ACTOR, REASON)
    after = datetime.now(UTC)
    expires = datetime.fromisoformat(app.tenant("acme").pins[TASK]["expires_at"])
    assert before + timedelta(days=30) <= expires <= after + timedelta(days=30)
    count = notification_count(app)
    for days in (0, 61):
        with pytest.raises(ValidationError, match="a pin lasts 1 to 60 days"):
            app.pin("acme", TASK, 1, ACTOR, REASON, days=days)
    with pytest.raises(NotFoundError, match="has no release v9"):
        app.pin("acme", TASK, 9, ACTOR, REASON)
    assert notification_count(app) == count


# ---- reset to defaults -------------------------------------------------------------------


def test_reset_one_task() -> None:
    t = tenant()
    t.set_override(TASK, "prompt", "p", 1, ACTOR, REASON)
    t.pin(TASK, 1, 10, NOW, ACTOR, REASON)
    t.set_override("other-task", "prompt", "p", 1, ACTOR, REASON)
    t.reset_to_defaults(TASK, ACTOR, REASON)
    assert TASK not in t.overrides
    assert TASK not in t.pins
    assert "other-task" in t.overrides
    events = t.collect_events()
    assert events[-1].tasks == [TASK]


def test_reset_everything() -> None:
    t = tenant()
    t.set_override("b-task", "prompt", "p", 1, ACTOR, REASON)
    t.pin("a-task", 1, 10, NOW, ACTOR, REASON)
    t.reset_to_defaults(None, ACTOR, REASON)
    assert (t.overrides, t.pins) == ({}, {})
    assert t.collect_events()[-1].tasks == ["a-task", "b-task"]


def test_reset_keeps_flags_and_cohort() -> None:
    t = tenant("internal")
    t.flip_flag("enable_blueprints", True, ACTOR, REASON)
    t.pin(TASK, 1, 10, NOW, ACTOR, REASON)
    t.reset_to_defaults(None, ACTOR, REASON)
    assert t.flags["enable_blueprints"] is True
    assert t.cohort == "internal"


@pytest.mark.parametrize("task", [None, TASK])
def test_reset_when_already_on_defaults_is_a_conflict(task: str | None) -> None:
    t = tenant()
    t.set_override("other-task", "prompt", "p", 1, ACTOR, REASON)
    t.collect_events()
    if task is None:
        t.reset_to_defaults(None, ACTOR, REASON)
        t.collect_events()
    with pytest.raises(ConflictError, match="already follows the defaults"):
        t.reset_to_defaults(task, ACTOR, REASON)
    assert t.collect_events() == []


# ---- attribution -------------------------------------------------------------------------


@pytest.mark.parametrize(("actor", "reason"), [("", REASON), (" ", REASON), (ACTOR, "ok")])
def test_tenant_commands_need_attribution(actor: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=r"actor|reason"):
        Tenant.register("acme", "Acme", "general", actor, reason)
    t = tenant()
    t.set_override(TASK, "prompt", "p", 1, ACTOR, REASON)
    t.pin(TASK, 1, 10, NOW, ACTOR, REASON)
    t.collect_events()
    before = t.summary()
    commands = [
        lambda: t.move_to_cohort("internal", actor, reason),
        lambda: t.flip_flag("enable_blueprints", True, actor, reason),
        lambda: t.flip_flag("enable_blueprints", False, actor, reason),  # even a no-op
        lambda: t.set_override(TASK, "filter", "f", 1, actor, reason),
        lambda: t.clear_override(TASK, "prompt", actor, reason),
        lambda: t.pin(TASK, 2, 5, NOW, actor, reason),
        lambda: t.unpin(TASK, actor, reason),
        lambda: t.reset_to_defaults(None, actor, reason),
    ]
    for command in commands:
        with pytest.raises(ValidationError, match=r"actor|reason"):
            command()
    assert t.collect_events() == []
    assert t.summary() == before


@pytest.mark.parametrize("name", ["a\x00", "bell\x07", "n" * 201, "\ud800"])
def test_tenant_names_are_bounded_text(name: str) -> None:
    with pytest.raises(ValidationError, match="tenant name"):
        Tenant.register("acme", name, "general", ACTOR, REASON)
