"""Gate metrics against hand-computed expectations, gate outcomes and the promotion decision."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError as PydanticError
from relctl.domain.errors import ConflictError, ForbiddenError, ValidationError
from relctl.domain.gates import (
    Acknowledgement,
    Arm,
    BreakGlass,
    CallTrace,
    Comparator,
    GateClass,
    GateEvaluated,
    GateMetric,
    GateOutcome,
    GateThreshold,
    Measure,
    PromotionStep,
    Scorecard,
    build_bundle,
    compute_metrics,
    decide_gate_passage,
    default_thresholds,
    evaluate_gate,
    percentile,
    require_gate_passage,
    wilson,
)
from relctl.domain.golden import GoldenCall, GoldenSetRef, golden_hash

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


def call(call_id: str, total: float, a: str, b: str, critical: list[str],
         intent: str = "billing") -> GoldenCall:
    return GoldenCall.model_validate({
        "call_id": call_id, "transcript": f"transcript of {call_id}", "tenant_segment": "smb",
        "intent": intent, "risk_tags": ["critical"] if critical else [],
        "labels": {"total_score": total, "critical_detections": critical,
                   "categories": {"a": {"score": 50, "verdict": a},
                                  "b": {"score": 50, "verdict": b}}}})


def card(total: float, a: str, b: str, critical: list[str] | None = None) -> Scorecard:
    return Scorecard.model_validate({
        "total_score": total, "critical_detections": critical or [],
        "categories": {"a": {"score": 50, "verdict": a}, "b": {"score": 50, "verdict": b}}})


def trace(call_id: str, output: Scorecard | None = None, error: str | None = None,
          latency: float = 100, tokens: tuple[int, int] = (100, 50), cost: float = 0.01,
          arm: Arm = Arm.CANDIDATE) -> CallTrace:
    return CallTrace(
        call_id=call_id, arm=arm, release_id=f"rel-{arm}", prompt_hash="sha256:x",
        requested_model="m-1", temperature=0, seed=1, output=output, error=error,
        schema_valid=output is not None, latency_ms=latency, prompt_tokens=tokens[0],
        completion_tokens=tokens[1], cost_usd=cost)


CALLS = [
    call("c1", 80, "pass", "fail", []),
    call("c2", 60, "fail", "fail", ["legal_threat"]),
    call("c3", 90, "pass", "pass", []),
    call("c4", 50, "pass", "fail", ["self_harm"]),
]
BY_ID = {c.call_id: c for c in CALLS}
CANDIDATE = [
    trace("c1", card(84, "pass", "pass"), latency=100, tokens=(1000, 200), cost=0.01),
    trace("c2", card(60, "fail", "fail"), latency=200, tokens=(1000, 400), cost=0.02),
    trace("c3", None, latency=300, tokens=(1000, 600), cost=0.03),
    trace("c4", error="HTTP 500: InternalServerError"),
]


def test_metrics_match_a_hand_computed_example():
    m = compute_metrics(CANDIDATE, BY_ID)
    # |84-80| and |60-60| over the two usable answers
    assert m[GateMetric.ABS_SCORE_DELTA_HUMAN] == Measure(value=2.0, samples=2)
    # c1 agrees on a only, c2 on both: 3 of 4 category verdicts
    assert (m[GateMetric.CATEGORY_AGREEMENT].value, m[GateMetric.CATEGORY_AGREEMENT].samples) \
        == (0.75, 4)
    # c1 is the only usable human-negative call and is not flagged
    assert (m[GateMetric.CRITICAL_FALSE_POSITIVE_RATE].value,
            m[GateMetric.CRITICAL_FALSE_POSITIVE_RATE].samples) == (0.0, 1)
    # c2 is the only usable human-positive call and the model missed it
    assert (m[GateMetric.CRITICAL_FALSE_NEGATIVE_RATE].value,
            m[GateMetric.CRITICAL_FALSE_NEGATIVE_RATE].samples) == (1.0, 1)
    # c3 answered but did not fit the schema: 1 of 3 answers; c4 failed: 1 of 4 calls
    assert m[GateMetric.SCHEMA_INVALID_RATE].successes == 1
    assert m[GateMetric.SCHEMA_INVALID_RATE].samples == 3
    assert (m[GateMetric.LLM_ERROR_RATE].value, m[GateMetric.LLM_ERROR_RATE].samples) == (0.25, 4)
    assert m[GateMetric.TOKENS_PER_EVAL].value == pytest.approx((1200 + 1400 + 1600) / 3)
    assert m[GateMetric.COST_PER_EVAL].value == pytest.approx(0.02)
    assert m[GateMetric.LATENCY_P50_MS].value == 200
    assert m[GateMetric.LATENCY_P95_MS].value == 300


def test_wilson_interval_matches_published_values():
    low, high = wilson(0, 10)
    assert low == 0.0
    assert high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))


def test_nearest_rank_percentile_is_a_real_value():
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95) == 10
    assert percentile([7], 95) == 7


@pytest.mark.parametrize(("metric", "comparator", "threshold", "needed"), [
    (GateMetric.CRITICAL_FALSE_NEGATIVE_RATE, Comparator.LT, 0.01, 100),
    (GateMetric.CRITICAL_FALSE_POSITIVE_RATE, Comparator.LT, 0.02, 50),
    (GateMetric.SCHEMA_INVALID_RATE, Comparator.LT, 0.005, 200),
    (GateMetric.CATEGORY_AGREEMENT, Comparator.GE, 0.92, 13),
    (GateMetric.TOKENS_PER_EVAL, Comparator.LT, 1500, 30),
])
def test_required_samples_follow_the_threshold(metric, comparator, threshold, needed):
    gate = GateThreshold(name="g", metric=metric, comparator=comparator, threshold=threshold,
                         gate_class=GateClass.BLOCK)
    assert gate.required_samples() == needed


FN_GATE = GateThreshold(name="fn", metric=GateMetric.CRITICAL_FALSE_NEGATIVE_RATE,
                        comparator=Comparator.LT, threshold=0.01, gate_class=GateClass.BLOCK)


@pytest.mark.parametrize(("measure", "outcome"), [
    (Measure(value=0.0, samples=99, successes=0), GateOutcome.INCONCLUSIVE),
    (Measure(value=None, samples=0), GateOutcome.INCONCLUSIVE),
    (Measure(value=0.0, samples=100, successes=0), GateOutcome.PASSED),
    (Measure(value=0.01, samples=100, successes=1), GateOutcome.FAILED),
    (Measure(value=0.009, samples=1000, successes=9), GateOutcome.PASSED),
])
def test_gate_outcomes(measure, outcome):
    assert evaluate_gate(FN_GATE, measure).outcome is outcome


def test_gate_thresholds_reject_bad_input():
    with pytest.raises(PydanticError, match="fraction"):
        GateThreshold(name="x", metric=GateMetric.CATEGORY_AGREEMENT, comparator=Comparator.GE,
                      threshold=92, gate_class=GateClass.BLOCK)
    with pytest.raises(PydanticError):
        GateThreshold.model_validate({"name": "x", "metric": "nope", "comparator": "<",
                                      "threshold": 1, "gate_class": "Block"})


@pytest.mark.parametrize("field", [{"threshold": False}, {"threshold": "0.5"},
                                   {"min_samples": True}, {"min_samples": 2.0}])
def test_gate_thresholds_take_numbers_only_as_numbers(field):
    """A JSON ``false`` is not a threshold: the published schema says number (found by
    schemathesis: ``"threshold": false`` registered a golden set)."""
    row = {"name": "x", "metric": "cost_per_eval", "comparator": "<", "threshold": 0.02,
           "gate_class": "Block", **field}
    with pytest.raises(PydanticError):
        GateThreshold.model_validate(row)
    assert GateThreshold.model_validate({**row, **dict.fromkeys(field, 1)})


def ref(calls=CALLS) -> GoldenSetRef:
    return GoldenSetRef(name="tiny", version=1, content_hash=golden_hash(calls))


def test_bundle_compares_arms_and_lists_regressions():
    baseline = [trace(c.call_id, card(c.labels.total_score,
                                      c.labels.categories["a"].verdict.value,
                                      c.labels.categories["b"].verdict.value,
                                      c.labels.critical_detections), arm=Arm.BASELINE)
                for c in CALLS]
    bundle = build_bundle(bundle_id="b1", task_id="t", golden_set=ref(), calls=CALLS,
                          candidate=CANDIDATE, baseline=baseline,
                          thresholds=default_thresholds(), evaluated_at=NOW)
    assert bundle.release_id == "rel-candidate"
    assert bundle.deltas[GateMetric.CATEGORY_AGREEMENT] == pytest.approx(0.75 - 1.0)
    # c3 and c4 lost their output (3 each); c2 lost the critical detection (3); c1 one verdict
    assert [(r.call_id, r.severity) for r in bundle.regressions] == [
        ("c2", 3), ("c3", 3), ("c4", 3), ("c1", 1)]
    assert bundle.score_deltas == {"c1": 4.0, "c2": 0.0}
    # four calls are far too few for any rate gate: nothing passes by default
    assert bundle.outcome_of("critical-false-negatives") is GateOutcome.INCONCLUSIVE
    intent = next(s for s in bundle.segments if s.segment == "billing")
    assert intent.calls == 4


def test_bundle_refuses_an_unfinished_run():
    with pytest.raises(ValidationError, match="no trace"):
        build_bundle(bundle_id="b1", task_id="t", golden_set=ref(), calls=CALLS,
                     candidate=CANDIDATE[:2], baseline=CANDIDATE, thresholds=default_thresholds(),
                     evaluated_at=NOW)


def evaluated(outcomes: dict[str, tuple[GateClass, GateOutcome]], bundle_id: str = "b1",
              golden: GoldenSetRef | None = None, at: datetime = NOW) -> GateEvaluated:
    results = []
    for name, (gate_class, outcome) in outcomes.items():
        gate = GateThreshold(name=name, metric=GateMetric.TOKENS_PER_EVAL,
                             comparator=Comparator.LT, threshold=1500, gate_class=gate_class)
        results.append({"gate": gate, "outcome": outcome, "required_samples": 30,
                        "measure": Measure(value=1.0, samples=30), "message": name})
    return GateEvaluated.model_validate({
        "bundle_id": bundle_id, "task_id": "t", "release_id": "rel-1",
        "baseline_release_id": "rel-0", "golden_set": golden or ref(), "evaluated_at": at,
        "results": results, "calls": 30, "injection_flagged_calls": 0, "model_mismatches": {},
        "report_path": "gates/bundles/b1/bundle.json", "report_hash": "sha256:0",
        "evaluated_by": "ci"})


P, F, INC = GateOutcome.PASSED, GateOutcome.FAILED, GateOutcome.INCONCLUSIVE
B, C, S = GateClass.BLOCK, GateClass.CONDITIONAL, GateClass.SIGNAL


def decide(bundles, **kwargs):
    return decide_gate_passage(release_id="rel-1", step=PromotionStep.PASS_INTERNAL_TEST,
                               bundles=bundles, current_golden=ref(), **kwargs)


@pytest.mark.parametrize(("outcomes", "allowed", "blocking", "needs", "signals"), [
    ({"acc": (B, P), "cost": (C, P), "lat": (S, P)}, True, 0, 0, 0),
    ({"acc": (B, F)}, False, 1, 0, 0),
    ({"acc": (B, INC)}, False, 1, 0, 0),
    ({"acc": (B, P), "cost": (C, F)}, False, 0, 1, 0),
    ({"acc": (B, P), "cost": (C, INC)}, False, 0, 1, 0),
    ({"acc": (B, P), "lat": (S, F)}, True, 0, 0, 1),
])
def test_decision_table(outcomes, allowed, blocking, needs, signals):
    decision = decide([evaluated(outcomes)])
    assert decision.allowed is allowed
    assert (len(decision.blocking), len(decision.needs_acknowledgement),
            len(decision.signals)) == (blocking, needs, signals)


def test_no_bundle_on_the_current_golden_set_refuses():
    old = GoldenSetRef(name="tiny", version=1, content_hash="sha256:" + "0" * 64)
    decision = decide([evaluated({"acc": (B, P)}, golden=old)])
    assert not decision.allowed
    assert decision.bundle_id is None
    assert "no gate bundle for golden set tiny" in decision.blocking[0]
    assert not decide([]).allowed


def test_the_newest_bundle_decides():
    older = evaluated({"acc": (B, P)}, bundle_id="old", at=NOW - timedelta(hours=1))
    newer = evaluated({"acc": (B, F)}, bundle_id="new")
    decision = decide([newer, older])
    assert (decision.bundle_id, decision.allowed) == ("new", False)


def test_a_conditional_failure_passes_with_an_acknowledgement():
    bundle = evaluated({"acc": (B, P), "cost": (C, F)})
    ack = Acknowledgement(bundle_id="b1", gate="cost", actor="ana", reason="cost accepted for Q1")
    decision = decide([bundle], acknowledgements=[ack])
    assert decision.allowed
    assert decision.acknowledged == [ack]
    with pytest.raises(ValidationError, match="not a failing Conditional"):
        decide([bundle], acknowledgements=[ack.model_copy(update={"gate": "acc"})])
    with pytest.raises(ValidationError, match="deciding bundle"):
        decide([bundle], acknowledgements=[ack.model_copy(update={"bundle_id": "b0"})])
    with pytest.raises(PydanticError):
        Acknowledgement(bundle_id="b1", gate="cost", actor="ana", reason="")


def test_break_glass_is_admin_only_and_recorded():
    bundle = evaluated({"acc": (B, F)})
    glass = BreakGlass(actor="root-ana", role="admin", reason="incident 4711 hotfix")
    decision = decide([bundle], break_glass=glass)
    assert decision.allowed
    assert decision.break_glass == glass
    assert decision.blocking
    assert "break-glass" in decision.message
    with pytest.raises(ForbiddenError):
        decide([bundle], break_glass=glass.model_copy(update={"role": "operator"}))


def test_require_gate_passage_raises_a_conflict():
    with pytest.raises(ConflictError, match="may not start_rollout"):
        require_gate_passage(release_id="rel-1", step=PromotionStep.START_ROLLOUT,
                             bundles=[evaluated({"acc": (B, F)})], current_golden=ref())
