"""The pure guard evaluator: every outcome, the for-duration, decide-once, strongest action."""

import json
from dataclasses import dataclass, field, replace
from itertools import permutations
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relctl.domain.guard_eval import (
    ACTION_STRENGTH,
    OUTCOMES,
    RuleState,
    Verdict,
    evaluate_rule,
    strongest_action,
)
from relctl.domain.guards import GATE_ACTIONS, GATE_CLASSES
from relctl.domain.metrics import WindowStats

from tests.unit.stream_support import errors, guard_rule

NOW = 10_000.0


def scored(count: int, mean: float) -> WindowStats:
    return WindowStats(count=count, score_n=count, score_sum=count * mean)


def latencies(values: list[float]) -> WindowStats:
    stats = WindowStats(count=len(values))
    for value in values:
        stats.latency.add(value)
    return stats


@dataclass
class Case:
    rule: dict[str, Any]
    candidate: WindowStats
    outcome: str
    action: str | None = None
    breach_since: float | None = None
    value: float | None = None
    samples: int | None = None
    state: RuleState = field(default_factory=RuleState)
    baseline: WindowStats | None = None
    rel: float = 1e-9


def failing(gate_class: str) -> Case:
    return Case(guard_rule(for_seconds=60, gate_class=gate_class), errors(100, 10), "Failed",
                GATE_ACTIONS[gate_class], NOW - 60, 0.1, 100,
                state=RuleState(breach_since=NOW - 60, outcome="Pending"))


CASES: dict[str, Case] = {
    # ---- Inconclusive: not enough evidence ------------------------------------------------
    "no-data": Case(guard_rule(), WindowStats(), "Inconclusive", value=None, samples=0),
    "fewer-than-min-samples": Case(guard_rule(), errors(49, 49), "Inconclusive",
                                   value=1.0, samples=49),
    "human-delta-without-labels": Case(guard_rule(metric="score_delta_human", comparator="<",
                                                  threshold=-5), scored(100, 80.0),
                                       "Inconclusive", value=None, samples=0),
    "baseline-delta-without-baseline": Case(
        guard_rule(metric="score_delta_baseline", comparator="<", threshold=-5),
        scored(100, 60.0), "Inconclusive", value=None, samples=0),
    "baseline-delta-baseline-unscored": Case(
        guard_rule(metric="score_delta_baseline", comparator="<", threshold=-5),
        scored(100, 60.0), "Inconclusive", value=None, samples=0,
        baseline=WindowStats(count=100)),
    "inconclusive-ends-a-pending-breach": Case(
        guard_rule(for_seconds=60), errors(10, 10), "Inconclusive", value=1.0, samples=10,
        state=RuleState(breach_since=NOW - 30, outcome="Pending")),
    # ---- Passed ---------------------------------------------------------------------------
    "passed": Case(guard_rule(), errors(100, 1), "Passed", value=0.01, samples=100),
    "passed-at-exactly-min-samples": Case(guard_rule(), errors(50, 0), "Passed", value=0.0,
                                          samples=50),
    "passed-ends-a-pending-breach": Case(
        guard_rule(for_seconds=60), errors(100, 0), "Passed", value=0.0, samples=100,
        state=RuleState(breach_since=NOW - 59, outcome="Pending")),
    # ---- Pending: breached, not yet for long enough ---------------------------------------
    "pending-starts-the-breach": Case(guard_rule(for_seconds=60), errors(100, 10), "Pending",
                                      breach_since=NOW, value=0.1, samples=100),
    "pending-keeps-the-start": Case(guard_rule(for_seconds=60), errors(100, 10), "Pending",
                                    breach_since=NOW - 59.9, value=0.1, samples=100,
                                    state=RuleState(breach_since=NOW - 59.9, outcome="Pending")),
    # ---- Failed ---------------------------------------------------------------------------
    **{f"failed-{gate}": failing(gate) for gate in GATE_CLASSES},
    "failed-at-min-samples-without-for": Case(guard_rule(), errors(50, 3), "Failed",
                                              "rollback", NOW, 0.06, 50),
    "failed-twice-acts-once": Case(guard_rule(), errors(100, 10), "Failed", None, NOW - 5, 0.1,
                                   100, state=RuleState(breach_since=NOW - 5, decided=True,
                                                        outcome="Failed")),
    "baseline-delta-failed": Case(
        guard_rule(metric="score_delta_baseline", comparator="<", threshold=-5,
                   gate_class="Block"),
        scored(60, 70.0), "Failed", "freeze", NOW, -10.0, 60, baseline=scored(80, 80.0)),
    "latency-p95-failed": Case(
        guard_rule(metric="latency_p95_ms", threshold=1000, min_samples=20,
                   gate_class="Conditional"),
        latencies([100.0] * 18 + [5000.0] * 2), "Failed", "pause", NOW, 5000.0, 20, rel=0.01),
    # ---- Error: the metric itself failed ---------------------------------------------------
    "error-unknown-metric": Case({**guard_rule(), "metric": "no_such_metric"}, errors(100, 10),
                                 "Error", value=None, samples=0,
                                 state=RuleState(breach_since=NOW - 30, outcome="Pending")),
    # ---- comparators, at and around the threshold -----------------------------------------
    "gt-at-threshold-passes": Case(guard_rule(comparator=">"), errors(100, 5), "Passed",
                                   value=0.05, samples=100),
    "gt-above-fails": Case(guard_rule(comparator=">"), errors(100, 6), "Failed", "rollback",
                           NOW, 0.06, 100),
    "ge-at-threshold-fails": Case(guard_rule(comparator=">="), errors(100, 5), "Failed",
                                  "rollback", NOW, 0.05, 100),
    "ge-below-passes": Case(guard_rule(comparator=">="), errors(100, 4), "Passed", value=0.04,
                            samples=100),
    "lt-at-threshold-passes": Case(guard_rule(comparator="<"), errors(100, 5), "Passed",
                                   value=0.05, samples=100),
    "lt-below-fails": Case(guard_rule(comparator="<"), errors(100, 4), "Failed", "rollback",
                           NOW, 0.04, 100),
    "le-at-threshold-fails": Case(guard_rule(comparator="<="), errors(100, 5), "Failed",
                                  "rollback", NOW, 0.05, 100),
    "le-above-passes": Case(guard_rule(comparator="<="), errors(100, 6), "Passed", value=0.06,
                            samples=100),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_outcome_table(case: Case) -> None:
    verdict, state = evaluate_rule(case.rule, case.candidate, case.baseline, NOW, case.state)
    assert verdict.outcome == case.outcome
    assert verdict.action == case.action
    assert verdict.breach_since == case.breach_since
    assert state.breach_since == case.breach_since
    assert state.outcome == case.outcome
    if case.value is None:
        assert verdict.value is None
    else:
        assert verdict.value == pytest.approx(case.value, rel=case.rel)
    assert verdict.samples == case.samples
    assert state.decided == (case.outcome == "Failed" or case.state.decided)
    assert (verdict.rule, verdict.metric, verdict.comparator) == (
        case.rule["name"], case.rule["metric"], case.rule["comparator"])
    assert verdict.threshold == case.rule["threshold"]
    assert verdict.window_seconds == case.rule["window_seconds"]


def test_the_table_covers_every_outcome_and_action() -> None:
    assert {case.outcome for case in CASES.values()} == set(OUTCOMES)
    assert {case.action for case in CASES.values()} == {None, *GATE_ACTIONS.values()}


def test_error_reports_the_failure_and_never_acts() -> None:
    rule = {**guard_rule(), "metric": "no_such_metric"}
    verdict, state = evaluate_rule(rule, errors(100, 100), None, NOW, RuleState())
    assert verdict.outcome == "Error" and verdict.action is None
    assert "metric failed" in verdict.message and "no_such_metric" in verdict.message
    assert state == RuleState(outcome="Error")


def test_inconclusive_message_names_the_sample_shortfall() -> None:
    verdict, _ = evaluate_rule(guard_rule(min_samples=50), errors(10, 0), None, NOW, RuleState())
    assert verdict.message == "10 samples, 50 needed"


def test_failed_message_and_evidence() -> None:
    rule = guard_rule(for_seconds=30)
    verdict, _ = evaluate_rule(rule, errors(200, 30), None, NOW,
                               RuleState(breach_since=NOW - 45, outcome="Pending"))
    assert verdict.message == "llm_error_rate 0.15 > 0.05 for 45.0s"
    assert verdict.evidence() == {
        "rule": "errors", "metric": "llm_error_rate", "outcome": "Failed", "value": 0.15,
        "samples": 200, "comparator": ">", "threshold": 0.05, "window_seconds": 120.0,
        "breach_since": NOW - 45, "gate_class": "RollbackTrigger",
    }


def run(rule: dict[str, Any], steps: list[tuple[float, WindowStats]],
        state: RuleState | None = None) -> list[Verdict]:
    state = state or RuleState()
    verdicts = []
    for now, stats in steps:
        verdict, state = evaluate_rule(rule, stats, None, now, state)
        verdicts.append(verdict)
    return verdicts


def test_breach_must_hold_for_the_whole_for_duration() -> None:
    verdicts = run(guard_rule(for_seconds=60), [
        (0, errors(100, 10)), (30, errors(100, 10)), (59.99, errors(100, 10)),
        (60, errors(100, 10)), (90, errors(100, 10))])
    assert [v.outcome for v in verdicts] == ["Pending", "Pending", "Pending", "Failed", "Failed"]
    assert [v.action for v in verdicts] == [None, None, None, "rollback", None]
    assert {v.breach_since for v in verdicts} == {0}


@pytest.mark.parametrize(("gap", "outcome"), [(errors(10, 10), "Inconclusive"),
                                               (WindowStats(), "Inconclusive"),
                                               (errors(100, 0), "Passed")])
def test_an_interrupted_breach_starts_over(gap: WindowStats, outcome: str) -> None:
    verdicts = run(guard_rule(for_seconds=60), [
        (0, errors(100, 10)), (50, gap), (55, errors(100, 10)), (100, errors(100, 10)),
        (115, errors(100, 10))])
    assert [v.outcome for v in verdicts] == ["Pending", outcome, "Pending", "Pending", "Failed"]
    assert [v.breach_since for v in verdicts] == [0, None, 55, 55, 55]
    assert verdicts[-1].action == "rollback"


def test_a_decided_rule_stays_decided_through_a_new_breach() -> None:
    """Decided once: after Failed, neither the same breach nor a later one acts again (the
    state keeps ``decided`` until it is reset)."""
    verdicts = run(guard_rule(), [(0, errors(100, 10)), (5, errors(100, 10)),
                                  (10, errors(100, 0)), (15, errors(100, 10))])
    assert [(v.outcome, v.action) for v in verdicts] == [
        ("Failed", "rollback"), ("Failed", None), ("Passed", None), ("Failed", None)]
    assert verdicts[-1].breach_since == 15
    fresh = run(guard_rule(), [(20, errors(100, 10))], RuleState())
    assert fresh[0].action == "rollback"


def test_rule_state_json_round_trip() -> None:
    state = RuleState(breach_since=1.5, decided=True, outcome="Failed", decision_id="r:e:1500",
                      action="rollback", decided_at=2.0, applied=True, rollout_id="r")
    assert RuleState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert state.to_json()["rollout_id"] == "r"
    # A state stored before rule states belonged to a rollout: it belongs to none.
    older = {k: v for k, v in state.to_json().items() if k != "rollout_id"}
    assert RuleState.from_json(older) == replace(state, rollout_id=None)
    assert RuleState.from_json(None) == RuleState()
    assert RuleState.from_json({}) == RuleState()


@pytest.mark.parametrize("stats", [errors(100, 10), errors(100, 0), errors(1, 0)],
                         ids=["failed", "passed", "inconclusive"])
def test_evaluation_keeps_the_rollout_the_state_belongs_to(stats: WindowStats) -> None:
    _, state = evaluate_rule(guard_rule(), stats, None, NOW, RuleState(rollout_id="r-1"))
    assert state.rollout_id == "r-1"


# ---- strongest_action -----------------------------------------------------------------------

def verdict(action: str | None, rule: str = "r") -> Verdict:
    return Verdict(rule=rule, outcome="Failed" if action else "Passed", value=0.1, samples=100,
                   threshold=0.05, comparator=">", metric="llm_error_rate",
                   gate_class="Signal", window_seconds=60.0, breach_since=None, action=action)


def test_action_strength_order() -> None:
    assert sorted(ACTION_STRENGTH, key=ACTION_STRENGTH.__getitem__) == [
        "alert", "pause", "freeze", "rollback"]


@pytest.mark.parametrize("order", list(permutations(["alert", "pause", "freeze", "rollback"])))
def test_rollback_supersedes_everything(order: tuple[str, ...]) -> None:
    chosen = strongest_action([verdict(a, rule=a) for a in order] + [verdict(None)])
    assert chosen is not None and chosen.action == "rollback" and chosen.rule == "rollback"


@pytest.mark.parametrize(("actions", "expected"), [
    ([], None), ([None, None], None), (["alert"], "alert"), (["alert", "pause"], "pause"),
    (["pause", None, "alert"], "pause"), (["freeze", "pause", "alert"], "freeze"),
    (["pause", "freeze"], "freeze"),
])
def test_strongest_action(actions: list[str | None], expected: str | None) -> None:
    chosen = strongest_action([verdict(a) for a in actions])
    assert (chosen.action if chosen else None) == expected


def test_equal_actions_keep_the_first_rule() -> None:
    chosen = strongest_action([verdict("freeze", "a"), verdict("freeze", "b")])
    assert chosen is not None and chosen.rule == "a"


# ---- properties -----------------------------------------------------------------------------

OBSERVATIONS = {
    "breach": errors(100, 10), "pass": errors(100, 0), "few": errors(10, 10),
    "none": WindowStats(), "error": errors(100, 10),
}


@settings(max_examples=100, deadline=None)
@given(
    for_seconds=st.sampled_from([0.0, 15.0, 60.0]),
    gate_class=st.sampled_from(GATE_CLASSES),
    steps=st.lists(st.tuples(st.sampled_from(sorted(OBSERVATIONS)), st.integers(0, 40)),
                   max_size=30),
)
def test_any_sequence_matches_the_model(for_seconds: float, gate_class: str,
                                        steps: list[tuple[str, int]]) -> None:
    """Against a reference model: the breach start is the first breached observation of the
    current unbroken run; Failed once it has lasted for_seconds; one action, ever."""
    rule = guard_rule(for_seconds=for_seconds, gate_class=gate_class)
    broken = {**rule, "metric": "no_such_metric"}
    state, now, start, actions, ever_failed = RuleState(), 0.0, None, [], False
    for kind, dt in steps:
        now += dt
        verdict, state = evaluate_rule(broken if kind == "error" else rule,
                                       OBSERVATIONS[kind], None, now, state)
        if kind == "breach":
            start = now if start is None else start
            expected = "Failed" if now - start >= for_seconds else "Pending"
            ever_failed = ever_failed or expected == "Failed"
        else:
            start = None
            expected = {"pass": "Passed", "error": "Error"}.get(kind, "Inconclusive")
        assert verdict.outcome == expected
        assert verdict.breach_since == start
        assert state.breach_since == start
        if verdict.outcome in ("Inconclusive", "Error", "Passed", "Pending"):
            assert verdict.action is None
        if verdict.samples < rule["min_samples"]:
            assert verdict.outcome not in ("Passed", "Failed")
        if verdict.action is not None:
            actions.append(verdict.action)
    # At most one action in the whole sequence: the first Failed acts, nothing after it.
    assert actions == ([GATE_ACTIONS[gate_class]] if ever_failed else [])


@settings(max_examples=100, deadline=None)
@given(
    count=st.integers(0, 200), failed_share=st.floats(0, 1), min_samples=st.integers(1, 300),
    breach_since=st.none() | st.floats(0, NOW), decided=st.booleans(),
    for_seconds=st.sampled_from([0.0, 30.0]),
)
def test_too_few_samples_is_never_passed_or_failed(
        count: int, failed_share: float, min_samples: int, breach_since: float | None,
        decided: bool, for_seconds: float) -> None:
    rule = guard_rule(min_samples=min_samples, for_seconds=for_seconds)
    stats = errors(count, round(count * failed_share))
    prior = RuleState(breach_since=breach_since, decided=decided)
    verdict, state = evaluate_rule(rule, stats, None, NOW, prior)
    if count < min_samples:
        assert verdict.outcome == "Inconclusive"
        assert verdict.action is None
        assert state.breach_since is None
    else:
        assert verdict.outcome in ("Passed", "Pending", "Failed")
    assert state.decided == (decided or verdict.outcome == "Failed")
