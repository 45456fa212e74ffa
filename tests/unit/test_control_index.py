"""The worker's control index, built from the control events the application really records.

The events come from a real in-memory (POPO) ControlPlane, turned into CloudEvents envelopes with
``relctl.adapters.cloudevents.envelope`` exactly as the relay publishes them."""

import random
from typing import Any
from uuid import UUID

import pytest
from relctl.application.service import ControlPlane
from relctl.domain.release import prompt_hash
from relctl.streams.control_index import GUARDED_STATES, ControlIndex

from tests.unit.stream_support import (
    STARTED,
    T0,
    TASK,
    Control,
    envelopes,
    guard_command,
    guard_rule,
    iso,
    kafka_envelopes,
)
from tests.unit.support import ACTOR, REASON, spec


def snapshot(index: ControlIndex) -> dict[str, Any]:
    return {"versions": dict(index.versions), "task_keys": dict(index.task_keys),
            "tenant_keys": dict(index.tenant_keys), "releases": dict(index.releases),
            "defaults": dict(index.defaults), "active": dict(index.active),
            "cohorts": dict(index.cohorts),
            "rollouts": {k: vars(v).copy() for k, v in index.rollouts.items()}}


def started_event(app: ControlPlane, rollout: str) -> Any:
    [started] = [e for e in app.history(UUID(rollout)) if type(e).__name__ == "Started"]
    return started


def test_task_and_release_admission() -> None:
    control = Control(releases=3)
    assert control.index.releases == {TASK: {1, 2, 3}}
    assert control.index.defaults == {TASK: 1}
    assert all(control.index.known_release(TASK, n) for n in (1, 2, 3))
    assert not control.index.known_release(TASK, 4)
    assert not control.index.known_release(TASK, 0)
    assert not control.index.known_release("other-task", 1)
    assert control.release() == 4
    assert control.index.known_release(TASK, 4)


def test_tenant_registration_and_cohort_change() -> None:
    control = Control()
    control.app.register_tenant("acme", "Acme", "internal", ACTOR, REASON)
    control.app.register_tenant("globex", "Globex", "general", ACTOR, REASON)
    control.sync()
    assert control.index.cohorts == {"acme": "internal", "globex": "general"}
    control.app.move_tenant("acme", "open_beta", ACTOR, REASON)
    control.sync()
    assert control.index.cohorts == {"acme": "open_beta", "globex": "general"}


def test_planned_rollout_is_known_and_active_but_not_guarded() -> None:
    control = Control()
    rules = [guard_rule(), guard_rule(name="slow", metric="latency_p95_ms", threshold=3000)]
    rollout = control.plan(rules, steps=[10, 50, 100])
    info = control.index.rollouts[rollout]
    assert (info.id, info.task, info.baseline, info.candidate, info.shadow) == (
        rollout, TASK, 1, 2, False)
    assert (info.state, info.step_index, info.steps) == ("Planned", -1, [10, 50, 100])
    assert info.started_at is None
    assert info.guard_rules == rules
    assert control.index.active == {TASK: rollout}
    assert control.index.guarded_rollout(TASK) is None


def test_started_at_is_the_time_of_the_started_event() -> None:
    control = Control()
    rollout = control.running([guard_rule()], started_at=None)
    info = control.index.rollouts[rollout]
    assert info.started_at == started_event(control.app, rollout).timestamp.timestamp()
    # Later events carry later times; none of them moves the start.
    control.do("pause_rollout", rollout)
    control.do("resume_rollout", rollout)
    control.do("advance_rollout", rollout)
    assert info.started_at == started_event(control.app, rollout).timestamp.timestamp()


def test_started_at_follows_the_envelope_time_not_the_arrival() -> None:
    """What counts is when the control plane recorded the start (the CloudEvents ``time``),
    however late the relay publishes it."""
    control = Control()
    rollout = control.running([guard_rule()], sync=False)
    assert rollout not in control.index.rollouts
    control.sync(at=T0 + 12.5)
    assert control.index.rollouts[rollout].started_at == T0 + 12.5


@pytest.mark.parametrize("time", [None, "", "yesterday", 12])
def test_a_started_event_without_a_usable_time_leaves_started_at_unset(time: Any) -> None:
    control = Control()
    rollout = control.running([guard_rule()], sync=False)
    for env in envelopes(control.app, control.position + 1):
        published = env
        if env["type"].endswith("started.v1"):
            published = {k: v for k, v in env.items() if k != "time"}
            if time is not None:
                published["time"] = time
        assert control.index.apply(published)
    info = control.index.rollouts[rollout]
    assert (info.state, info.started_at) == ("Running", None)


def test_guarded_rollout_per_state() -> None:
    control = Control()
    rollout = control.plan([guard_rule()])
    info = control.index.rollouts[rollout]
    seen = {info.state: control.index.guarded_rollout(TASK)}
    control.app.start_rollout(UUID(rollout), ACTOR, REASON)
    control.sync(at=STARTED)
    assert (info.state, info.step_index, info.started_at) == ("Running", 0, STARTED)
    seen[info.state] = control.index.guarded_rollout(TASK)
    control.do("advance_rollout", rollout)
    assert info.step_index == 1
    for command in ("pause_rollout", "resume_rollout", "freeze_rollout"):
        control.do(command, rollout)
        seen[info.state] = control.index.guarded_rollout(TASK)
    control.do("roll_back", rollout)
    seen[info.state] = control.index.guarded_rollout(TASK)
    assert seen == {"Planned": None, "Running": info, "Paused": info, "Frozen": info,
                    "RolledBack": None}
    assert set(GUARDED_STATES) == {"Running", "Paused", "Frozen"}
    assert control.index.guarded_rollout("other-task") is None


def test_rolled_back_rollout_closes_the_task_rollout() -> None:
    control = Control()
    rollout = control.running([guard_rule()])
    control.do("freeze_rollout", rollout)
    control.do("roll_back", rollout)
    assert control.index.rollouts[rollout].state == "RolledBack"
    assert control.index.active == {}
    assert control.index.defaults == {TASK: 1}
    assert control.index.guarded_rollout(TASK) is None


def test_completed_rollout_moves_the_default_and_is_no_longer_guarded() -> None:
    control = Control()
    rollout = control.running([guard_rule()])
    control.do("advance_rollout", rollout)
    control.do("complete_rollout", rollout)
    assert control.index.rollouts[rollout].state == "Completed"
    assert control.index.active == {}
    assert control.index.defaults == {TASK: 2}
    assert control.index.guarded_rollout(TASK) is None


def test_shadow_rollout_is_guarded_and_flagged_shadow() -> None:
    control = Control()
    rollout = control.running([guard_rule()], shadow=True)
    guarded = control.index.guarded_rollout(TASK)
    assert guarded is not None and guarded.id == rollout
    assert (guarded.shadow, guarded.baseline, guarded.candidate) == (True, 1, 2)


def test_a_new_rollout_after_a_rollback_takes_over() -> None:
    control = Control()
    first = control.running([guard_rule()])
    control.do("roll_back", first)
    second = control.running([guard_rule(name="other")], candidate=3, started_at=T0)
    assert control.index.active == {TASK: second}
    guarded = control.index.guarded_rollout(TASK)
    assert guarded is not None
    assert (guarded.id, guarded.candidate, guarded.started_at) == (second, 3, T0)
    assert [r["name"] for r in guarded.guard_rules] == ["other"]
    assert control.index.rollouts[first].state == "RolledBack"
    assert control.index.rollouts[first].started_at == STARTED


def test_decisions_of_the_guard_are_recorded_as_applied_from_their_events() -> None:
    """Paused, Frozen and RolledBack events of the guard's commands (through the command
    consumer's path) carry the decision id in their evidence; the index remembers it."""
    control = Control()
    rollout = control.running([guard_rule()])
    info = control.index.rollouts[rollout]
    assert info.applied_decisions == set()
    assert control.execute(guard_command(rollout, "pause", "d-pause"))
    assert (info.state, info.applied_decisions) == ("Paused", {"d-pause"})
    control.do("resume_rollout", rollout)  # the operator's resume forgets nothing
    assert (info.state, info.applied_decisions) == ("Running", {"d-pause"})
    assert control.execute(guard_command(rollout, "freeze", "d-freeze"))
    assert (info.state, info.applied_decisions) == ("Frozen", {"d-pause", "d-freeze"})
    # A decision that changes nothing records no event, so nothing is learnt from it.
    assert not control.execute(guard_command(rollout, "freeze", "d-noop"))
    assert info.applied_decisions == {"d-pause", "d-freeze"}
    assert control.execute(guard_command(rollout, "rollback", "d-rollback"))
    assert info.state == "RolledBack"
    assert info.applied_decisions == {"d-pause", "d-freeze", "d-rollback"}
    # A fresh worker replaying the topic (after the Kafka round trip) learns the same.
    replayed = ControlIndex()
    for env in kafka_envelopes(control.app):
        replayed.apply(env)
    assert replayed.rollouts[rollout].applied_decisions == info.applied_decisions


@pytest.mark.parametrize("command", ["pause_rollout", "freeze_rollout", "roll_back"])
def test_operator_decisions_carry_no_decision_id(command: str) -> None:
    control = Control()
    rollout = control.running([guard_rule()])
    control.do(command, rollout)  # an operator's command: no evidence at all
    info = control.index.rollouts[rollout]
    assert info.state != "Running" and info.applied_decisions == set()


def test_an_operator_decision_with_evidence_but_no_decision_id_is_not_one() -> None:
    control = Control()
    rollout = control.running([guard_rule()])
    control.app.freeze_rollout(UUID(rollout), ACTOR, REASON, evidence={"ticket": "OPS-1"})
    control.sync()
    info = control.index.rollouts[rollout]
    assert (info.state, info.applied_decisions) == ("Frozen", set())


def full_history() -> tuple[Control, str]:
    control = Control()
    control.app.register_tenant("acme", "Acme", "internal", ACTOR, REASON)
    control.app.move_tenant("acme", "closed_beta", ACTOR, REASON)
    rollout = control.running([guard_rule()], started_at=None)  # the events' own times
    control.do("advance_rollout", rollout)
    assert control.execute(guard_command(rollout, "pause", "d-pause"))
    control.do("resume_rollout", rollout)
    assert control.execute(guard_command(rollout, "rollback", "d-rollback"))
    assert control.index.rollouts[rollout].applied_decisions == {"d-pause", "d-rollback"}
    return control, rollout


def test_duplicates_are_skipped() -> None:
    control, _ = full_history()
    events = envelopes(control.app)
    before = snapshot(control.index)
    applied = control.index.applied
    assert applied == len(events)
    assert [control.index.apply(env) for env in events] == [False] * len(events)
    assert control.index.applied == applied
    assert snapshot(control.index) == before


def test_interleaved_redelivery_gives_the_same_index() -> None:
    control, _ = full_history()
    events = envelopes(control.app)
    index = ControlIndex()
    for i, env in enumerate(events):
        assert index.apply(env)
        for earlier in events[: i + 1][-3:]:  # redeliver the last few events again
            assert not index.apply(earlier)
    assert snapshot(index) == snapshot(control.index)


def test_older_versions_arriving_late_are_ignored() -> None:
    control, rollout = full_history()
    events = [e for e in envelopes(control.app) if e["subject"] == rollout]
    kinds = [e["type"].split(".")[-2] for e in events]
    assert kinds == ["planned", "started", "step_advanced", "paused", "resumed", "rolled_back"]
    index = ControlIndex()
    for env in envelopes(control.app):
        if env["subject"] != rollout or env["type"].endswith(("planned.v1", "started.v1")):
            index.apply(env)
    info = index.rollouts[rollout]
    assert index.apply(events[5])  # rolled_back (v6) overtakes v3..v5
    assert info.state == "RolledBack"
    assert [index.apply(env) for env in events[2:5]] == [False, False, False]
    assert (info.state, info.step_index) == ("RolledBack", 0)
    assert info.started_at == started_event(control.app, rollout).timestamp.timestamp()


def test_a_redelivered_started_event_does_not_move_the_start() -> None:
    control, rollout = full_history()
    info = control.index.rollouts[rollout]
    started_at = info.started_at
    [started] = [e for e in envelopes(control.app)
                 if e["subject"] == rollout and e["type"].endswith("started.v1")]
    assert not control.index.apply({**started, "time": iso(T0)})
    assert info.started_at == started_at == started_event(control.app, rollout).timestamp \
        .timestamp()


def test_events_survive_the_kafka_round_trip() -> None:
    control, _ = full_history()
    index = ControlIndex()
    assert all(index.apply(env) for env in kafka_envelopes(control.app))
    assert snapshot(index) == snapshot(control.index)


def test_shuffled_redelivery_never_changes_a_caught_up_index() -> None:
    control, _ = full_history()
    events = envelopes(control.app) + kafka_envelopes(control.app)
    random.Random(7).shuffle(events)
    before = snapshot(control.index)
    assert not any(control.index.apply(env) for env in events)
    assert snapshot(control.index) == before


@pytest.mark.parametrize("bad_id", ["", "no-version", "agg:", "agg:x", "agg:1.5"])
def test_envelope_without_a_version_is_refused(bad_id: str) -> None:
    index = ControlIndex()
    assert not index.apply({"id": bad_id, "type": "io.relctl.task.opened.v1",
                            "data": {"key": "x"}})
    assert index.applied == 0 and index.task_keys == {}


def test_event_types_the_index_does_not_use_are_counted_but_change_nothing() -> None:
    control = Control(releases=1)
    kinds = {env["type"] for env in envelopes(control.app)}
    assert "io.relctl.release.stage_changed.v1" in kinds
    index = ControlIndex()
    assert index.apply({"id": "r:1", "type": "io.relctl.release.stage_changed.v1", "data": {}})
    assert index.apply({"id": "r:2", "type": "io.relctl.something.new.v9", "data": None})
    assert index.applied == 2 and index.versions == {"r": 2}
    assert (index.rollouts, index.releases, index.cohorts) == ({}, {}, {})


def test_the_index_keeps_what_each_release_runs() -> None:
    """The trace contract a record is checked against: the Drafted event's content, replaced
    by a Revised one while the release is a draft."""
    control = Control(releases=2)
    first, second = control.index.trace(TASK, 1), control.index.trace(TASK, 2)
    assert first is not None and second is not None
    assert first.prompt_hash != second.prompt_hash
    assert (first.model_provider, first.seed) == ("openai", 7)
    assert control.index.trace(TASK, 3) is None
    draft = control.app.create_release(TASK, spec(prompt_template="draft one"), ACTOR, REASON)
    number = int(draft["aggregate"]["number"])
    control.app.revise_release(TASK, number, spec(prompt_template="draft two", seed=8),
                               ACTOR, REASON)
    control.sync()
    revised = control.index.trace(TASK, number)
    assert revised is not None and revised.seed == 8
    assert revised.prompt_hash == prompt_hash("draft two")


def test_the_index_reports_the_rollouts_it_learns_once_and_only_while_guarded() -> None:
    control = Control()
    rollout = control.plan([guard_rule()], steps=[10, 50, 100])
    assert control.index.take_learned() == [], "a planned rollout is not guarded yet"
    control.app.start_rollout(UUID(rollout), ACTOR, REASON)
    control.sync()
    assert control.index.take_learned() == [TASK]
    assert control.index.take_learned() == [], "each learning is reported once"
    control.sync()  # nothing new
    assert control.index.take_learned() == []
    control.do("pause_rollout", rollout)
    assert control.index.take_learned() == [], "a pause is no news to judge"
    control.do("resume_rollout", rollout)
    assert control.index.take_learned() == [TASK]
    control.do("advance_rollout", rollout)
    assert control.index.take_learned() == [TASK]
    control.do("advance_rollout", rollout)
    control.do("roll_back", rollout)
    assert control.index.take_learned() == [], "no longer guarded: nothing to judge"
