"""Guard verdicts: what operators see of each rule, published only on change; the guard tick
that judges without traffic; the published shapes of alerts, decisions and verdicts.

See tests/unit/guard_support.py for the rig.
"""

import asyncio
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
from relctl.adapters.cloudevents import verdict_record
from relctl.adapters.schemas import PACKAGE_SCHEMAS
from relctl.domain.alerts import DEFAULT_RULES
from relctl.domain.verdicts import ArmFigure, RuleVerdict, VerdictChanges, significant_change
from relctl.streams.agents import GuardAgent
from relctl.streams.attribute import Partial

from tests.unit.guard_support import B0, Rig
from tests.unit.stream_support import BASE, CAND, SCOPE, T0, errors, guard_rule, iso


def verdict(**changes: Any) -> RuleVerdict:
    base: dict[str, Any] = {
        "rollout_id": "r1", "rule": "errors", "metric": "llm_error_rate", "comparator": ">",
        "threshold": 0.05, "gate_class": "RollbackTrigger", "outcome": "Passed",
        "value": 0.02, "samples": 100, "min_samples": 50, "window_seconds": 120.0,
        "for_seconds": 0.0, "candidate": {"value": 0.02, "samples": 100},
        "baseline": {"value": 0.01, "samples": 100}, "breach_since": None,
        "at": iso(T0)}
    base.update(changes)
    return RuleVerdict.model_validate(base)


# ---- change detection (pure) --------------------------------------------------------------

@pytest.mark.parametrize(("changes", "expected"), [
    ({}, False),
    ({"at": iso(T0 + 30)}, False),  # time alone is no news
    ({"outcome": "Failed"}, True),
    ({"breach_since": iso(T0)}, True),
    ({"window_seconds": 60.0}, True),
    ({"value": 0.02 + 0.0004}, False),  # within 1 % of the threshold (0.0005)
    ({"value": 0.02 + 0.0006}, True),
    ({"value": None}, True),
    ({"samples": 110}, False),  # 10 % of max(100, 50) = 10
    ({"samples": 111}, True),
    ({"baseline": {"value": 0.01, "samples": 89}}, True),
    ({"candidate": {"value": 0.03, "samples": 100}}, True),
])
def test_a_verdict_is_news_only_when_it_moved_beyond_a_small_step(
    changes: dict[str, Any], expected: bool,
) -> None:
    assert significant_change(verdict(), verdict(**changes)) is expected


def test_few_samples_still_move_by_a_tenth_of_the_minimum() -> None:
    before = verdict(outcome="Inconclusive", samples=20, candidate={"value": 0.1, "samples": 20})
    five_more = verdict(outcome="Inconclusive", samples=25,
                        candidate={"value": 0.1, "samples": 25})
    six_more = verdict(outcome="Inconclusive", samples=26,
                       candidate={"value": 0.1, "samples": 26})
    assert not significant_change(before, five_more)
    assert significant_change(before, six_more)


def test_changes_remember_per_rollout_and_rule_what_was_published() -> None:
    changes = VerdictChanges(limit=2)
    first = [verdict(), verdict(rule="latency")]
    assert changes.changed(first) == first
    assert changes.changed([verdict(at=iso(T0 + 1)), verdict(rule="latency")]) == []
    failed = verdict(outcome="Failed", at=iso(T0 + 2))
    assert changes.changed([failed, verdict(rollout_id="r2")]) == [failed, verdict(rollout_id="r2")]
    assert len(changes.published) == 2, "bounded: the oldest rule is forgotten"
    assert changes.changed([verdict(rule="latency")]) == [verdict(rule="latency")]


def test_pending_time_left_is_counted_from_the_read() -> None:
    pending = verdict(outcome="Pending", breach_since=iso(T0), for_seconds=30.0,
                      decides_at=iso(T0 + 30), time_left_seconds=30.0)
    later = pending.as_of(datetime.fromtimestamp(T0 + 12, UTC))
    assert later.time_left_seconds == pytest.approx(18.0)
    assert pending.as_of(datetime.fromtimestamp(T0 + 99, UTC)).time_left_seconds == 0.0
    assert verdict().as_of(datetime.now(UTC)) == verdict()


# ---- verdicts from the guard ----------------------------------------------------------------

def test_the_guard_reports_inconclusive_pending_and_failed_with_both_arms() -> None:
    rig = Rig([guard_rule(for_seconds=30)])
    few = rig.guard.handle(_partial({(CAND, B0): errors(20, 10), (BASE, B0): errors(40, 0)}),
                           T0 + 1).rule_verdicts
    assert [(v.outcome, v.samples, v.min_samples, v.value) for v in few] == [
        ("Inconclusive", 20, 50, 0.5)]
    assert few[0].baseline == ArmFigure(value=0.0, samples=40)
    assert few[0].message == "20 samples, 50 needed"
    pending = rig.guard.handle(_partial({(CAND, B0): errors(40, 0)}), T0 + 2).rule_verdicts[0]
    assert (pending.outcome, pending.samples, pending.breach_since) == ("Pending", 60, iso(T0 + 2))
    assert (pending.decides_at, pending.time_left_seconds) == (iso(T0 + 32), 30.0)
    assert (pending.candidate.value, pending.candidate.samples) == (pytest.approx(10 / 60), 60)
    failed = rig.guard.handle(_partial({}), T0 + 32)
    assert [(v.outcome, v.breach_since, v.decides_at) for v in failed.rule_verdicts] == [
        ("Failed", iso(T0 + 2), None)]
    assert [c.action for c in failed.commands] == ["rollback"]


def test_the_tick_judges_every_guarded_rollout_without_new_records() -> None:
    """The timer's empty partial is all the guard needs for a for-duration to complete."""
    rig = Rig([guard_rule(for_seconds=4)])
    agent, topics = _agent(rig)
    pending = rig.guard.handle(_partial({(CAND, B0): errors(60, 6)}), T0 + 1)
    assert [v.outcome for v in pending.verdicts] == ["Pending"] and pending.commands == []
    asyncio.run(agent.tick())
    assert [key for key, _ in topics.partials.sent] == [SCOPE.encode()]
    tick = Partial.decode(topics.partials.sent[0][1])
    assert (tick.scope, tick.arms, tick.evaluations) == (SCOPE, {}, 0)
    decided = rig.guard.handle(tick, T0 + 5)
    assert [(v.outcome, v.samples) for v in decided.verdicts] == [("Failed", 60)]
    assert [c.action for c in decided.commands] == ["rollback"]


def test_no_tick_before_the_index_caught_up_nor_for_tasks_without_a_guarded_rollout() -> None:
    rig = Rig([guard_rule()], start=False)
    agent, topics = _agent(rig)
    asyncio.run(agent.tick())
    assert topics.partials.sent == []
    running = Rig([guard_rule()])
    agent, topics = _agent(running, ready=False)
    asyncio.run(agent.tick())
    assert topics.partials.sent == []


def test_stage_two_publishes_a_verdict_only_when_it_changed() -> None:
    rig = Rig([guard_rule(for_seconds=30)])
    agent, topics = _agent(rig)

    def judge(now: float, buckets: dict[tuple[str, float], Any]) -> list[dict[str, Any]]:
        before = len(topics.verdicts.sent)
        async def publish() -> None:
            await agent.publish(rig.guard.handle(_partial(buckets), now))
            await asyncio.gather(*agent._background)  # verdicts are sent off the event

        asyncio.run(publish())
        return [json.loads(value) for _, value in topics.verdicts.sent[before:]]

    assert [v["outcome"] for v in judge(T0 + 1, {(CAND, B0): errors(20, 10)})] == ["Inconclusive"]
    assert judge(T0 + 1.5, {(CAND, B0): errors(2, 1)}) == [], "two samples more are no news"
    assert [v["outcome"] for v in judge(T0 + 2, {(CAND, B0): errors(40, 0)})] == ["Pending"]
    assert judge(T0 + 10, {}) == [], "the time left shrinks, the verdict is the same"
    assert [v["outcome"] for v in judge(T0 + 32, {})] == ["Failed"]
    key, value = topics.verdicts.sent[-1]
    assert key == rig.rollout.encode()
    RuleVerdict.model_validate_json(value)


# ---- one alert contract: wire shapes against the published schemas -----------------------------

def _schema(ce_type: str) -> dict[str, Any]:
    return json.loads((PACKAGE_SCHEMAS / f"{ce_type}.json").read_text())


def _validate(ce_type: str, data: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(_schema(ce_type)).validate(json.loads(json.dumps(data)))


def emitted() -> tuple[list[Any], list[Any], list[RuleVerdict]]:
    """Every kind of alert, decision and verdict the guard emits, from real guard runs."""
    llm = replace(next(r for r in DEFAULT_RULES if r.name == "llm-error-rate"),
                  for_seconds=0, resolve_seconds=0, min_samples=10)
    rig = Rig([guard_rule(name="drift", gate_class="Signal", threshold=0.02),
               guard_rule(for_seconds=1)], alert_rules=(llm,))
    results = [rig.guard.handle(_partial({(CAND, B0): errors(60, 6), (BASE, B0): errors(60, 6)}),
                                T0 + 1),
               rig.guard.handle(_partial({}), T0 + 3),
               rig.guard.handle(_partial({}), T0 + 3 + 2.5),  # re-sent, not applied yet
               rig.guard.handle(_partial({}), T0 + 1000),  # out of the window: all clear
               rig.guard.handle(_partial({}), T0 + 1061)]  # and resolve (hysteresis)
    alerts = [a for r in results for a in r.alerts]
    decisions = [c for r in results for c in r.commands]
    verdicts = [v for r in results for v in r.rule_verdicts]
    return alerts, decisions, verdicts


def test_every_emitted_alert_decision_and_verdict_validates_against_its_schema() -> None:
    alerts, decisions, verdicts = emitted()
    shapes = {(a.kind, a.scope.split("|")[0]) for a in alerts}
    assert shapes == {("fired", "release"), ("resolved", "release"), ("fired", "rollout"),
                      ("resolved", "rollout"), ("decision", "task")}, "every shape is covered"
    assert len(decisions) >= 2 and {v.outcome for v in verdicts} >= {"Pending", "Failed"}
    for alert in alerts:
        _validate(f"io.relctl.alert.{alert.kind}.v1", alert.wire())
    for decision in decisions:
        _validate(f"io.relctl.command.{decision.action}.v1", decision.wire())
    for item in verdicts:
        _validate("io.relctl.guard.verdict_changed.v1", item.model_dump(mode="json"))


def test_guard_alerts_carry_a_cohort_name_and_their_own_step() -> None:
    alerts, _, _ = emitted()
    guard = [a.wire() for a in alerts if a.scope.startswith("rollout|")]
    assert {(a["cohort"], a["step"]) for a in guard} == {("all", 50)}
    assert {a["cohort"] for a in (a.wire() for a in alerts) if "cohort" in a} == {"all"}


def test_every_instant_is_iso_8601_with_an_offset() -> None:
    alerts, decisions, _ = emitted()
    signal = next(a.wire() for a in alerts if a.scope.startswith("rollout|"))
    assert signal["evidence"]["breach_since"] == iso(T0 + 1)
    decision = next(d.wire() for d in decisions if "all_rules" in d.evidence)
    assert {r["rule"]: r["breach_since"] for r in decision["evidence"]["all_rules"]} == {
        "drift": iso(T0 + 1), "errors": iso(T0 + 1)}
    for value in (signal["at"], decision["evidence"]["breach_since"],
                  decision["evidence"]["decided_at"]):
        assert datetime.fromisoformat(value).utcoffset() is not None


def test_decision_reason_reads_as_a_sentence() -> None:
    _, decisions, _ = emitted()
    assert decisions[0].reason == (
        "Rolled back because guard rule errors failed: llm_error_rate was 0.1, above the "
        "threshold 0.05, over 60 samples in the last 2 min, breached for 2 s")


@pytest.mark.parametrize(("ce_type", "data"), [
    ("io.relctl.alert.fired.v1", {"kind": "fired", "scope": "rollout|r", "at": T0}),
    ("io.relctl.alert.fired.v1", {"kind": "fired", "scope": "rollout|r", "cohort": 50}),
    ("io.relctl.alert.fired.v1", {"kind": "resolved", "scope": "rollout|r"}),
    ("io.relctl.alert.decision.v1", {"kind": "decision", "scope": "task|t",
                                     "evidence": {"breach_since": T0}}),
    ("io.relctl.command.rollback.v1", {"rollout_id": "r", "action": "rollback",
                                       "decision_id": "r:e:1", "reason": "x",
                                       "evidence": {"breach_since": "2026-12-02 10:00"}}),
    ("io.relctl.guard.verdict_changed.v1", {**verdict().model_dump(mode="json"),
                                            "breach_since": T0}),
])
def test_the_schemas_refuse_the_old_shapes(ce_type: str, data: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        _validate(ce_type, data)


def test_verdict_record_is_a_cloudevent_keyed_by_rollout() -> None:
    key, value, headers = verdict_record(verdict().model_dump(mode="json"))
    attributes = {k: v.decode() for k, v in headers}
    assert key == b"r1"
    assert attributes["ce_type"] == "io.relctl.guard.verdict_changed.v1"
    assert attributes["ce_id"] == f"r1:errors:{iso(T0)}"
    assert attributes["ce_source"] == "urn:relctl:guard"
    assert RuleVerdict.model_validate_json(value) == verdict()


# ---- helpers ---------------------------------------------------------------------------------

def _partial(buckets: dict[tuple[str, float], Any]) -> Partial:
    from tests.unit.stream_support import partial

    return Partial.decode(partial(buckets).encode())


@dataclass
class FakeTopic:
    sent: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def send(self, key: bytes, value: bytes, headers: Any = None) -> None:
        self.sent.append((key, value))


@dataclass
class FakeTopics:
    partials: FakeTopic = field(default_factory=FakeTopic)
    commands: FakeTopic = field(default_factory=FakeTopic)
    alerts: FakeTopic = field(default_factory=FakeTopic)
    verdicts: FakeTopic = field(default_factory=FakeTopic)


def _agent(rig: Rig, ready: bool = True) -> tuple[GuardAgent, FakeTopics]:
    topics = FakeTopics()
    event = asyncio.Event()
    if ready:
        event.set()
    return GuardAgent(rig.guard, topics, event, None), topics  # type: ignore[arg-type]

