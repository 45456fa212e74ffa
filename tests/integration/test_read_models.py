"""The read models against the real PostgreSQL: time travel, pins, rebuilds, unknown events."""

import random
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import StoredEvent
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from relctl.domain.errors import NotFoundError
from relctl.domain.read_models import ChangeKind, ProjectionName, Reach
from relctl.infra.bootstrap import Runtime
from relctl.projections import queries
from relctl.projections.runner import ProjectorSet

from tests.integration.read_support import (
    TENANTS,
    WHO,
    fold_answer,
    random_commands,
    seed_tasks,
    stored_events,
)

pytestmark = pytest.mark.integration

US = timedelta(microseconds=1)


@pytest.fixture
def projectors(runtime: Runtime) -> Iterator[ProjectorSet]:
    settings = runtime.settings
    assert settings.database_url
    with ProjectorSet(runtime.app, settings.database_url, settings.database_schema,
                      batch_size=17) as instance:
        yield instance


def answer(runtime: Runtime, tenant: str, task: str, at: datetime) -> dict | None:
    try:
        return queries.resolve_at(runtime.db, tenant, task, at, runtime.app).resolution
    except NotFoundError:
        return None


def test_time_travel_equals_a_replay_of_the_store_cut_at_that_instant(
        runtime: Runtime, projectors: ProjectorSet) -> None:
    seed_tasks(runtime.app)
    random_commands(runtime.app, random.Random(20261202), 120)
    for tenant, task, days in (("acme", "csat", 1), ("globex", "qa", 2), ("hooli", "qa", 1)):
        runtime.app.pin(tenant, task, 3, **WHO, days=days)  # pins still live at the end
    projectors.catch_up()
    events = stored_events(runtime.app)
    first, last = events[0].timestamp, events[-1].timestamp
    critical = [e.timestamp + d for e in events for d in (-US, timedelta(0), US)]
    keys = {e.originator_id: e.key for e in events if type(e).__qualname__ == "Tenant.Registered"}
    around_pins = [(keys[e.originator_id], e.task, datetime.fromisoformat(e.expires_at) + d)
                   for e in events if type(e).__qualname__ == "Tenant.Pinned"
                   for d in (-US, timedelta(0), US)]
    assert around_pins, "the random history should hold some pins"
    span = int((last - first + timedelta(days=3)) / US)
    instants = st.one_of(st.sampled_from(critical),
                         st.integers(-10**6, span).map(lambda us: first + us * US))
    anywhere = st.tuples(st.sampled_from((*TENANTS, "never-registered")),
                         st.sampled_from(("csat", "qa", "no-such-task")), instants)

    @given(case=st.one_of(anywhere, st.sampled_from(around_pins)))
    @hypothesis_settings(max_examples=300, deadline=None)
    def check(case: tuple[str, str, datetime]) -> None:
        tenant, task, at = case
        assert answer(runtime, tenant, task, at) == fold_answer(events, tenant, task, at)

    check()


def test_a_pin_stops_applying_at_its_expiry_without_a_new_command(
        runtime: Runtime, projectors: ProjectorSet) -> None:
    seed_tasks(runtime.app, ("csat",))
    runtime.app.register_tenant("acme", "Acme", "general", **WHO)
    runtime.app.pin("acme", "csat", 2, **WHO, days=1)
    projectors.catch_up()
    head = projectors.head()
    (pin,) = queries.pins(runtime.db, tenant="acme")
    expiry = pin.expires_at
    before = queries.resolve_at(runtime.db, "acme", "csat", expiry - US)
    after = queries.resolve_at(runtime.db, "acme", "csat", expiry)
    assert (before.resolution["source"], before.resolution["release"]) == ("pin", 2)
    assert (after.resolution["source"], after.resolution["release"]) == ("default", 1)
    assert before.etag != after.etag
    assert projectors.head() == head  # nothing was recorded to make the pin stop
    assert not queries.pins(runtime.db, at=expiry)[0].active
    expired = queries.changes(runtime.db, expiry - US, expiry, tenant="acme", task="csat")
    assert [(c.at, c.release, c.previous_release, c.cause["kind"]) for c in expired] == [
        (expiry, 1, 2, ChangeKind.PIN_EXPIRED.value)]


def test_changes_between_two_instants_say_who_and_why(
        runtime: Runtime, projectors: ProjectorSet) -> None:
    seed_tasks(runtime.app, ("csat",))
    runtime.app.register_tenant("acme", "Acme", "general", **WHO)
    start = stored_events(runtime.app)[-1].timestamp
    runtime.app.set_default_release("csat", 2, actor="alice", reason="v2 passed the gate")
    runtime.app.set_override("acme", "csat", "prompt", "custom", actor="bob",
                             reason="customer asked")
    projectors.catch_up()
    end = stored_events(runtime.app)[-1].timestamp
    found = queries.changes(runtime.db, start, end, tenant="acme")
    assert [(c.release, c.previous_release, c.source, c.cause["actor"], c.cause["reason"])
            for c in found] == [(2, 1, "default", "alice", "v2 passed the gate"),
                                (2, 2, "override", "bob", "customer asked")]


def test_inventory_and_drift_name_who_is_shielded(
        runtime: Runtime, projectors: ProjectorSet) -> None:
    seed_tasks(runtime.app, ("csat",))
    for key in ("acme", "globex", "initech"):
        runtime.app.register_tenant(key, key, "general", **WHO)
    runtime.app.set_override("globex", "csat", "prompt", "ours", actor="bob", reason="contract")
    runtime.app.pin("initech", "csat", 1, actor="carol", reason="audit freeze", days=5)
    projectors.catch_up()
    (override,) = queries.overrides(runtime.db)
    assert (override.tenant, override.by, override.reason, override.base_release) == (
        "globex", "bob", "contract", 1)
    report = queries.drift(runtime.db, "csat")
    assert [(r.tenant, r.reach) for r in report.reached] == [("acme", Reach.DIRECT)]
    assert [(r.tenant, r.reach) for r in report.shielded] == [
        ("globex", Reach.SHIELDED_BY_OVERRIDE), ("initech", Reach.SHIELDED_BY_PIN)]
    runtime.app.reset_tenant("globex", None, **WHO)
    projectors.catch_up()
    assert queries.overrides(runtime.db) == []


def test_rollout_status_arms_and_transitions(runtime: Runtime, projectors: ProjectorSet) -> None:
    seed_tasks(runtime.app, ("csat",))
    for key in TENANTS:
        runtime.app.register_tenant(key, key, "general", **WHO)
    planned = runtime.app.plan_rollout("csat", 2, **WHO, steps=[50, 100])
    rollout_id = planned["aggregate"]["id"]
    runtime.app.start_rollout(UUID(rollout_id), actor="alice", reason="go ahead")
    runtime.app.pause_rollout(UUID(rollout_id), actor="guard", reason="error rate",
                              evidence={"decision_id": "d1", "rule": "error_rate"})
    projectors.catch_up()
    status = queries.rollout_status(runtime.db, rollout_id)
    assert (status.state, status.current_step, status.decisions[0]["actor"]) == (
        "Paused", 50, "guard")
    assert [(t.event, t.from_state, t.to_state, t.actor) for t in status.transitions] == [
        ("Rollout.Planned", None, "Planned", WHO["actor"]),
        ("Rollout.Started", "Planned", "Running", "alice"),
        ("Rollout.Paused", "Running", "Paused", "guard")]
    assert status.transitions[-1].evidence == {"decision_id": "d1", "rule": "error_rate"}
    arms = {tenant for tenants in status.arms.values() for tenant in tenants}
    assert arms == set(TENANTS)
    assert set(status.arms) <= {"rollout-candidate", "rollout-baseline"}


class Probe(Aggregate):
    """An aggregate no read model knows."""

    @event("Poked")
    def poke(self) -> None:
        pass


def test_unknown_event_types_are_ignored_and_positions_still_advance(
        runtime: Runtime, projectors: ProjectorSet) -> None:
    seed_tasks(runtime.app, ("csat",))
    runtime.app.register_tenant("acme", "Acme", "general", **WHO)
    projectors.catch_up()
    views_before = projectors.content_hash()
    probe = Probe()
    probe.poke()
    runtime.app.save(probe)
    template = runtime.app.recorder.select_notifications(start=1, limit=1)[0]
    runtime.app.recorder.insert_events([StoredEvent(
        originator_id=uuid4(), originator_version=1, topic="relctl.retired:Gone",
        state=template.state)])
    head = projectors.head()
    projectors.catch_up()
    assert set(projectors.positions().values()) == {head}
    after = projectors.content_hash()
    for name in (ProjectionName.RESOLUTION, ProjectionName.ROLLOUTS, ProjectionName.INVENTORY):
        assert after[name] == views_before[name]
    verdict = queries.verify_audit(runtime.db)
    assert verdict.ok
    assert verdict.rows == len(runtime.app.recorder.select_notifications(start=1, limit=10**6))
    # one audit row per stored event, known or not


def test_each_view_rebuilds_to_identical_rows(runtime: Runtime, projectors: ProjectorSet) -> None:
    seed_tasks(runtime.app)
    random_commands(runtime.app, random.Random(7), 80)
    projectors.catch_up()
    built = projectors.content_hash()
    projectors.rebuild([ProjectionName.AUDIT])
    assert projectors.content_hash() == built
    projectors.rebuild()
    assert projectors.content_hash() == built


def test_the_runner_follows_new_events_through_listen_notify(
        runtime: Runtime, projectors: ProjectorSet) -> None:
    seed_tasks(runtime.app, ("csat",))
    stop = threading.Event()
    thread = threading.Thread(target=projectors.run, args=(stop,), kwargs={"idle_wait": 30})
    thread.start()
    try:
        runtime.app.register_tenant("acme", "Acme", "general", **WHO)
        projectors.wait_for(projectors.head(), timeout=20)
        assert queries.resolve_at(runtime.db, "acme", "csat").resolution["release"] == 1
    finally:
        stop.set()
        # wake the listener so the thread sees the stop flag
        runtime.app.register_tenant("globex", "Globex", "general", **WHO)
        thread.join(30)
    assert not thread.is_alive()


def test_a_runner_recovers_when_another_process_rebuilds_a_view(
        runtime: Runtime, projectors: ProjectorSet) -> None:
    settings = runtime.settings
    assert settings.database_url
    seed_tasks(runtime.app, ("csat",))
    projectors.catch_up()
    with ProjectorSet(runtime.app, settings.database_url, settings.database_schema) as other:
        other.drop([ProjectionName.AUDIT])
    runtime.app.register_tenant("acme", "Acme", "general", **WHO)
    projectors.catch_up()
    verdict = queries.verify_audit(runtime.db)
    assert verdict.ok
    assert verdict.rows == len(stored_events(runtime.app))
