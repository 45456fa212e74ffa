"""Resolution: precedence, rollout membership, shadow mode, flags and time travel."""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from relctl.domain.errors import NotFoundError
from relctl.domain.ids import release_id
from relctl.domain.release import Release, ReleaseSpec
from relctl.domain.resolution import ControlView, Resolution, resolve
from relctl.domain.rollout import Rollout, tenant_bucket
from relctl.domain.task import Task
from relctl.domain.tenant import FLAGS, Tenant

from .support import (
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

AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def tenant_keys(inside: float, outside: float) -> tuple[str, str]:
    """One tenant whose bucket is below ``inside`` and one between ``inside`` and ``outside``."""
    keys = (f"tenant-{i}" for i in range(10_000))
    low = next(k for k in keys if tenant_bucket(TASK, k) < inside)
    mid = next(k for k in keys if inside <= tenant_bucket(TASK, k) < outside)
    return low, mid


class World:
    """Control aggregates built directly from the domain, folded into a view on demand."""

    def __init__(self, releases: int = 4, default: int | None = 1) -> None:
        self.events: list[Any] = []
        self.task = Task.open(TASK, ACTOR, REASON)
        for number in range(1, releases + 1):
            self.task.admit_release(number, ACTOR, REASON)
            release = Release.draft(TASK, number, ReleaseSpec.from_dict(
                spec(prompt_template=f"v{number}", seed=number)), ACTOR, REASON)
            release.promote("Beta", ACTOR, REASON)
            self.keep(release)
        if default is not None:
            self.task.set_default(default, ACTOR, REASON)
        self.keep(self.task)
        self.tenants: dict[str, Tenant] = {}

    def keep(self, *aggregates: Any) -> None:
        for aggregate in aggregates:
            self.events.extend(aggregate.collect_events())

    def tenant(self, key: str, cohort: str = "general", **flags: bool) -> Tenant:
        tenant = Tenant.register(key, key, cohort, ACTOR, REASON)
        for flag, value in flags.items():
            tenant.flip_flag(flag, value, ACTOR, REASON)
        self.tenants[key] = tenant
        self.keep(tenant)
        return tenant

    def rollout(self, steps: Any = None, shadow: bool = False, start: bool = True,
                baseline: int = 1, candidate: int = 2) -> Rollout:
        rollout = Rollout.plan(TASK, baseline, candidate, steps, None, shadow, ACTOR, REASON)
        self.task.open_rollout(rollout.id, ACTOR, REASON)
        if start:
            rollout.start(ACTOR, REASON)
        self.keep(self.task, rollout)
        return rollout

    def resolve(self, tenant: str, at: datetime = AT) -> Resolution:
        return resolve(fold(self.events), tenant, TASK, at)


# ---- precedence --------------------------------------------------------------------------


def test_precedence_pin_then_override_then_rollout_then_default() -> None:
    world = World(releases=4, default=1)
    acme = world.tenant("acme", cohort="internal")
    rollout = world.rollout(steps=["internal", "general"])
    acme.set_override(TASK, "prompt", "Be brief.", 3, ACTOR, "customer wants brevity")
    acme.pin(TASK, 4, 30, AT - timedelta(days=1), "carol", "audit in progress")
    world.keep(acme)

    result = world.resolve("acme")
    assert (result.release, result.source) == (4, "pin")
    assert result.explanation[0].startswith("pinned to v4 by carol until ")
    assert result.explanation[0].endswith(": audit in progress")
    assert result.rollout is None

    acme.unpin(TASK, ACTOR, REASON)
    world.keep(acme)
    result = world.resolve("acme")
    assert (result.release, result.source) == (3, "override")
    assert result.overrides["values"]["prompt"]["by"] == ACTOR
    assert "does not receive global updates" in result.explanation[0]

    acme.reset_to_defaults(TASK, ACTOR, REASON)
    world.keep(acme)
    result = world.resolve("acme")
    assert (result.release, result.source) == (2, "rollout-candidate")
    assert result.rollout is not None
    assert result.rollout["in_step"] is True
    assert result.rollout["id"] == str(rollout.id)

    rollout.roll_back(ACTOR, REASON)
    world.task.close_rollout(rollout.id, "RolledBack", None, ACTOR, REASON)
    world.keep(world.task, rollout)
    result = world.resolve("acme")
    assert (result.release, result.source) == (1, "default")
    assert result.explanation[0] == "default release of csat-scoring is v1"


def test_override_without_base_follows_the_task_default() -> None:
    world = World(default=2)
    acme = world.tenant("acme")
    acme.set_override(TASK, "filter", "no-pii", None, ACTOR, REASON)
    world.keep(acme)
    assert (world.resolve("acme").release, world.resolve("acme").source) == (2, "override")


def test_expired_pin_is_ignored() -> None:
    world = World(default=1)
    acme = world.tenant("acme")
    acme.pin(TASK, 3, 30, AT - timedelta(days=31), ACTOR, REASON)  # expired a day before AT
    world.keep(acme)
    result = world.resolve("acme")
    assert (result.release, result.source) == (1, "default")
    assert result.explanation[0].startswith("pin to v3 expired ")
    assert result.explanation[0].endswith("; ignored")
    # the same pin was in force before it expired
    assert world.resolve("acme", AT - timedelta(days=2)).release == 3


def test_pin_expires_at_exactly_its_expiry_instant() -> None:
    world = World(default=1)
    acme = world.tenant("acme")
    acme.pin(TASK, 3, 10, AT, ACTOR, REASON)
    world.keep(acme)
    expiry = AT + timedelta(days=10)
    assert world.resolve("acme", expiry - timedelta(microseconds=1)).source == "pin"
    assert world.resolve("acme", expiry).source == "default"


def test_expired_pin_falls_through_to_an_override() -> None:
    world = World(default=1)
    acme = world.tenant("acme")
    acme.pin(TASK, 4, 1, AT - timedelta(days=5), ACTOR, REASON)
    acme.set_override(TASK, "prompt", "x", 3, ACTOR, REASON)
    world.keep(acme)
    assert (world.resolve("acme").release, world.resolve("acme").source) == (3, "override")


def test_pin_on_another_task_does_not_apply() -> None:
    world = World(default=1)
    acme = world.tenant("acme")
    acme.pin("other-task", 4, 10, AT, ACTOR, REASON)
    acme.set_override("other-task", "prompt", "x", 3, ACTOR, REASON)
    world.keep(acme)
    result = world.resolve("acme")
    assert (result.release, result.source, result.overrides) == (1, "default", {})


# ---- rollouts ----------------------------------------------------------------------------


def test_planned_rollout_is_not_in_force() -> None:
    world = World(default=1)
    world.tenant("acme", cohort="internal")
    world.rollout(steps=["internal", "general"], start=False)
    assert (world.resolve("acme").release, world.resolve("acme").source) == (1, "default")


def test_percentage_steps() -> None:
    low, mid = tenant_keys(10, 25)
    world = World(default=1)
    rollout = world.rollout()  # 10, 25, 50, 100
    first_low, first_mid = world.resolve(low), world.resolve(mid)
    assert (first_low.release, first_low.source) == (2, "rollout-candidate")
    assert (first_mid.release, first_mid.source) == (1, "rollout-baseline")
    assert first_mid.rollout is not None
    assert first_mid.rollout["step"] == 10
    assert f"bucket {tenant_bucket(TASK, mid):.2f} vs 10%" in first_mid.explanation[0]
    rollout.advance(ACTOR, REASON)
    world.keep(rollout)
    assert world.resolve(low).release == 2
    assert world.resolve(mid).release == 2


@pytest.mark.parametrize(
    ("step", "on_candidate"),
    [(0, {"in-internal"}),
     (1, {"in-internal", "in-closed"}),
     (2, {"in-internal", "in-closed", "in-general", "unregistered"})],
)
def test_cohort_steps(step: int, on_candidate: set[str]) -> None:
    world = World(default=1)
    world.tenant("in-internal", cohort="internal")
    world.tenant("in-closed", cohort="closed_beta")
    world.tenant("in-general", cohort="general")
    rollout = world.rollout(steps=["internal", "closed_beta", "general"])
    for _ in range(step):
        rollout.advance(ACTOR, REASON)
    world.keep(rollout)
    for tenant in ("in-internal", "in-closed", "in-general", "unregistered"):
        result = world.resolve(tenant)
        expected = 2 if tenant in on_candidate else 1
        assert result.release == expected, tenant
        assert result.source == ("rollout-candidate" if expected == 2 else "rollout-baseline")


@pytest.mark.parametrize("state", ["Paused", "Frozen"])
def test_stopped_rollout_keeps_tenants_where_they_are(state: str) -> None:
    world = World(default=1)
    world.tenant("inside", cohort="internal")
    world.tenant("outside", cohort="general")
    rollout = world.rollout(steps=["internal", "general"])
    (rollout.pause if state == "Paused" else rollout.freeze)(ACTOR, REASON)
    world.keep(rollout)
    assert world.resolve("inside").release == 2
    assert world.resolve("outside").release == 1
    assert world.resolve("inside").rollout["state"] == state  # type: ignore[index]


def test_shadow_mode_keeps_the_baseline_and_reports_the_shadow_release() -> None:
    world = World(default=1)
    world.tenant("inside", cohort="internal")
    world.tenant("outside", cohort="general")
    world.rollout(steps=["internal", "general"], shadow=True)
    inside = world.resolve("inside")
    assert (inside.release, inside.source, inside.shadow_release) == (1, "rollout-baseline", 2)
    assert inside.rollout is not None
    assert inside.rollout["shadow"] is True
    assert "shadow mode" in inside.explanation[0]
    shadow = inside.shadow_release_detail
    assert shadow is not None and shadow["number"] == 2
    assert shadow["id"] == str(release_id(TASK, 2))
    assert {"prompt_hash", "model_provider", "model_name", "model_version", "temperature",
            "seed", "output_schema_version", "blueprint_version_id"} <= set(shadow)
    assert inside.release_detail["number"] == 1
    outside = world.resolve("outside")
    assert (outside.release, outside.shadow_release) == (1, None)
    assert outside.shadow_release_detail is None


def test_completed_rollout_makes_the_candidate_the_default() -> None:
    world = World(default=1)
    world.tenant("acme")
    rollout = world.rollout(steps=[100])
    rollout.complete(ACTOR, REASON)
    world.task.close_rollout(rollout.id, "Completed", 2, ACTOR, REASON)
    world.keep(rollout, world.task)
    result = world.resolve("acme")
    assert (result.release, result.source, result.rollout) == (2, "default", None)


# ---- flags and pipeline ------------------------------------------------------------------


def test_unregistered_tenant_gets_flags_off_and_the_legacy_pipeline() -> None:
    world = World(default=1)
    result = world.resolve("stranger")
    assert result.flags == dict.fromkeys(FLAGS, False)
    assert result.pipeline == "legacy"
    assert result.overrides == {}
    assert "tenant stranger is not registered: all flags off, cohort general" in (
        result.explanation)


@pytest.mark.parametrize(
    ("flags", "pipeline"),
    [({}, "legacy"),
     ({"enable_blueprints": True}, "legacy"),
     ({"enable_blueprint_production_eval": True}, "blueprint"),
     ({"enable_blueprint_production_eval": True, "enable_legacy_pipeline_fallback": True},
      "legacy"),
     ({"enable_legacy_pipeline_fallback": True}, "legacy")],
)
def test_pipeline_follows_flags(flags: dict[str, bool], pipeline: str) -> None:
    world = World(default=1)
    world.tenant("acme", **flags)
    result = world.resolve("acme")
    assert result.pipeline == pipeline
    assert result.flags == {**dict.fromkeys(FLAGS, False), **flags}
    if flags.get("enable_legacy_pipeline_fallback"):
        assert "enable_legacy_pipeline_fallback is on" in result.explanation[-1]


# ---- failures and details ----------------------------------------------------------------


def test_unknown_task_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="no task 'nope' was known at 2025-06-01"):
        resolve(fold(World().events), "acme", "nope", AT)


def test_task_without_any_release_in_force() -> None:
    world = World(default=None)
    with pytest.raises(NotFoundError, match="has no release in force"):
        world.resolve("acme")


def test_release_detail_and_dict() -> None:
    world = World(default=3)
    result = world.resolve("acme")
    detail = result.release_detail
    assert detail["number"] == 3
    assert detail["stage"] == "Beta"
    assert detail["seed"] == 3
    assert detail["model_version"] == "gpt-4o-2024-08-06"
    assert detail["id"] == str(release_id(TASK, 3))
    as_dict = result.as_dict()
    assert as_dict["release"] == 3
    assert set(as_dict) == {"tenant", "task", "release", "release_detail", "source",
                            "shadow_release", "shadow_release_detail", "rollout", "pipeline",
                            "flags", "overrides", "explanation"}


def test_release_missing_from_the_view_has_a_bare_detail() -> None:
    world = World(releases=2, default=1)
    acme = world.tenant("acme")
    acme.pin(TASK, 7, 5, AT, ACTOR, REASON)
    world.keep(acme)
    assert world.resolve("acme").release_detail == {"number": 7}


def test_view_lookups_check_the_kind() -> None:
    world = World(default=1)
    view = fold(world.events)
    assert view.task(TASK) is not None
    assert view.tenant(TASK) is None
    assert view.release(TASK, 1) is not None
    assert view.rollout(world.task.id) is None  # a task is not a rollout
    assert view.last_timestamp == world.events[-1].timestamp
    assert ControlView().task(TASK) is None


# ---- time travel: resolving as of an earlier instant ---------------------------------------


def _pause() -> datetime:
    """An instant strictly between the events before and after it."""
    time.sleep(0.002)
    instant = datetime.now(UTC)
    time.sleep(0.002)
    return instant


def test_resolving_as_of_an_earlier_instant() -> None:
    app = new_app()
    before_anything = _pause()
    released_task(app, count=2, default=1)
    app.register_tenant("acme", "Acme", "general", ACTOR, REASON)
    app.flip_flag("acme", "enable_blueprint_production_eval", True, ACTOR, REASON)
    at_v1 = _pause()
    rid = rollout_id(app.plan_rollout(TASK, 2, ACTOR, REASON, steps=[100]))
    app.start_rollout(rid, ACTOR, REASON)
    app.register_tenant("late", "Late", "general", ACTOR, REASON)
    during_rollout = _pause()
    app.complete_rollout(rid, ACTOR, REASON)
    app.flip_flag("acme", "enable_legacy_pipeline_fallback", True, ACTOR, REASON)
    now = _pause()

    events = stored_events(app)
    latest = resolve(fold(events), "acme", TASK, now)
    assert (latest.release, latest.source, latest.pipeline) == (2, "default", "legacy")

    earlier = resolve(fold(events, until=at_v1), "acme", TASK, at_v1)
    assert (earlier.release, earlier.source, earlier.pipeline) == (1, "default", "blueprint")
    assert earlier.release_detail["prompt_hash"] != latest.release_detail["prompt_hash"]

    middle = resolve(fold(events, until=during_rollout), "acme", TASK, during_rollout)
    assert (middle.release, middle.source) == (2, "rollout-candidate")

    assert resolve(fold(events, until=at_v1), "late", TASK, at_v1).explanation[-2:] == [
        "tenant late is not registered: all flags off, cohort general",
        "enable_blueprint_production_eval is off: production uses the legacy pipeline",
    ]
    with pytest.raises(NotFoundError, match="no task 'csat-scoring' was known"):
        resolve(fold(events, until=before_anything), "acme", TASK, before_anything)


def test_no_instant_of_a_completed_rollout_resolves_back_to_the_baseline() -> None:
    """Completing saves the rollout's Completed event and the task's RolloutClosed event in one
    write, but each is stamped when it was created: resolving at every recorded instant must
    never send a tenant back to the baseline once the rollout reached 100%."""
    app = new_app()
    released_task(app, count=2, default=1)
    app.register_tenant("acme", "Acme", "general", ACTOR, REASON)
    rid = rollout_id(app.plan_rollout(TASK, 2, ACTOR, REASON, steps=[100]))
    app.start_rollout(rid, ACTOR, REASON)
    app.complete_rollout(rid, ACTOR, REASON)
    events = stored_events(app)
    started = next(e.timestamp for e in events if type(e).__name__ == "Started")
    instants = sorted({e.timestamp for e in events if e.timestamp >= started})
    releases = [resolve(fold(events, until=t), "acme", TASK, t).release for t in instants]
    assert releases == [2] * len(instants)
    completed = next(e.timestamp for e in events if type(e).__name__ == "Completed")
    at_completion = resolve(fold(events, until=completed), "acme", TASK, completed)
    assert at_completion.release == 2
