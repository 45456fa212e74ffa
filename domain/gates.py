"""Release gates: the evidence a release needs before it passes InternalTest or rolls out.

A gate run scores a candidate and a baseline release over one golden set version; this module
is the pure core: per-call trace records in, metrics, gate outcomes and a bundle out, and the
decision whether a release may pass. Outcomes follow the guard evaluator's habit: too few
cases for a threshold is ``Inconclusive``, and Inconclusive is never Passed.

Gate classes: ``Block`` refuses promotion while failing or inconclusive;
``Conditional`` needs an explicit acknowledgement with a reason; ``Signal`` is reported only.
An admin break-glass override passes anything and is recorded with its reason. A task with no
golden set has no evidence and is refused (see ``relctl.domain.gate_policy``) unless an admin
waived its gates.
"""

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from relctl.domain.errors import ConflictError, ForbiddenError, ValidationError
from relctl.domain.gate_policy import GateWaiver, how_to_gate
from relctl.domain.golden import CategoryLabel, GoldenCall, GoldenSetRef
from relctl.domain.guard_eval import COMPARE
from relctl.domain.guards import Comparator, GateClass

GATE_EVALUATED_TYPE = "io.relctl.release.gate_evaluated.v1"
Z_95 = 1.959963984540054
BREAK_GLASS_ROLE = "admin"
TOP_REGRESSIONS = 10


class GateOutcome(StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


class Arm(StrEnum):
    CANDIDATE = "candidate"
    BASELINE = "baseline"


class GateMetric(StrEnum):
    """Metrics a gate can test; rates are fractions (1 % is 0.01)."""

    ABS_SCORE_DELTA_HUMAN = "abs_score_delta_human"
    CATEGORY_AGREEMENT = "category_agreement"
    CRITICAL_FALSE_POSITIVE_RATE = "critical_false_positive_rate"
    CRITICAL_FALSE_NEGATIVE_RATE = "critical_false_negative_rate"
    SCHEMA_INVALID_RATE = "schema_invalid_rate"
    LLM_ERROR_RATE = "llm_error_rate"
    TOKENS_PER_EVAL = "tokens_per_eval"
    COST_PER_EVAL = "cost_per_eval"
    LATENCY_P50_MS = "latency_p50_ms"
    LATENCY_P95_MS = "latency_p95_ms"

    @property
    def is_rate(self) -> bool:
        return self in RATE_METRICS


RATE_METRICS = frozenset({
    GateMetric.CATEGORY_AGREEMENT, GateMetric.CRITICAL_FALSE_POSITIVE_RATE,
    GateMetric.CRITICAL_FALSE_NEGATIVE_RATE, GateMetric.SCHEMA_INVALID_RATE,
    GateMetric.LLM_ERROR_RATE,
})


def holds(comparator: Comparator, value: float, threshold: float) -> bool:
    """A gate's comparator states its *passing* condition: ``value <comparator> threshold``."""
    return COMPARE[comparator](value, threshold)


Fraction = Annotated[float, Field(strict=True, ge=0, le=1)]


class GateThreshold(BaseModel):
    """One gate: pass while ``metric comparator threshold`` on at least ``min_samples`` cases.

    Without ``min_samples`` a rate gate needs as many cases as it takes for one case to be no
    more than the threshold's margin (``ceil(1 / threshold)`` for "below" gates,
    ``ceil(1 / (1 - threshold))`` for "at least" gates): on fewer, a single call decides the
    outcome and the result is Inconclusive. Value gates default to 30 cases.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    metric: GateMetric
    comparator: Comparator
    threshold: float = Field(strict=True, allow_inf_nan=False)
    gate_class: GateClass
    min_samples: int | None = Field(strict=True, default=None, ge=1, le=10**9)

    @model_validator(mode="after")
    def _release_gate_class(self) -> "GateThreshold":
        if self.gate_class is GateClass.ROLLBACK_TRIGGER:
            raise ValueError("RollbackTrigger is a live guard's class; a release gate is Block, "
                             "Conditional or Signal")
        return self

    @model_validator(mode="after")
    def _rate_bounds(self) -> "GateThreshold":
        if self.metric.is_rate and not 0 <= self.threshold <= 1:
            raise ValueError(f"{self.metric} is a fraction between 0 and 1 (1 % is 0.01)")
        if not self.metric.is_rate and self.threshold < 0:
            raise ValueError(f"{self.metric} threshold must not be negative")
        return self

    def required_samples(self) -> int:
        if self.min_samples is not None:
            return self.min_samples
        if not self.metric.is_rate:
            return 30
        below = self.comparator in (Comparator.LT, Comparator.LE)
        margin = self.threshold if below else 1 - self.threshold
        return math.ceil(1 / margin) if margin > 0 else 10**9


def default_thresholds() -> list[GateThreshold]:
    """The issue's gates; every one can be replaced per task."""
    t = GateThreshold
    return [
        t(name="score-delta", metric=GateMetric.ABS_SCORE_DELTA_HUMAN, comparator=Comparator.LE,
          threshold=5, gate_class=GateClass.BLOCK),
        t(name="category-agreement", metric=GateMetric.CATEGORY_AGREEMENT,
          comparator=Comparator.GE, threshold=0.92, gate_class=GateClass.BLOCK),
        t(name="critical-false-positives", metric=GateMetric.CRITICAL_FALSE_POSITIVE_RATE,
          comparator=Comparator.LT, threshold=0.02, gate_class=GateClass.BLOCK),
        t(name="critical-false-negatives", metric=GateMetric.CRITICAL_FALSE_NEGATIVE_RATE,
          comparator=Comparator.LT, threshold=0.01, gate_class=GateClass.BLOCK),
        t(name="hallucination", metric=GateMetric.SCHEMA_INVALID_RATE, comparator=Comparator.LT,
          threshold=0.005, gate_class=GateClass.BLOCK),
        t(name="llm-errors", metric=GateMetric.LLM_ERROR_RATE, comparator=Comparator.LT,
          threshold=0.01, gate_class=GateClass.BLOCK),
        t(name="tokens", metric=GateMetric.TOKENS_PER_EVAL, comparator=Comparator.LT,
          threshold=1500, gate_class=GateClass.CONDITIONAL),
        t(name="cost", metric=GateMetric.COST_PER_EVAL, comparator=Comparator.LT,
          threshold=0.02, gate_class=GateClass.CONDITIONAL),
        t(name="latency-p50", metric=GateMetric.LATENCY_P50_MS, comparator=Comparator.LE,
          threshold=5000, gate_class=GateClass.SIGNAL),
        t(name="latency-p95", metric=GateMetric.LATENCY_P95_MS, comparator=Comparator.LE,
          threshold=15000, gate_class=GateClass.SIGNAL),
    ]


def check_thresholds(thresholds: Sequence[GateThreshold]) -> None:
    names = [t.name for t in thresholds]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValidationError(f"gate names must be unique: {', '.join(duplicates)}")
    if not thresholds:
        raise ValidationError("a gate bundle needs at least one gate")


class ModelPricing(BaseModel):
    """US dollars per million tokens, from configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: float = Field(strict=True, ge=0, allow_inf_nan=False)
    output_per_million: float = Field(strict=True, ge=0, allow_inf_nan=False)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_million
                + completion_tokens * self.output_per_million) / 1_000_000


class Scorecard(BaseModel):
    """The output a QA-scoring release must produce (its schema is the release's schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    total_score: float = Field(strict=True, ge=0, le=100)
    categories: dict[str, CategoryLabel]
    critical_detections: list[str] = Field(default_factory=list)


SCORECARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["total_score", "categories", "critical_detections"],
    "properties": {
        "total_score": {"type": "number", "minimum": 0, "maximum": 100},
        "categories": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["score", "verdict"],
                "properties": {
                    "score": {"type": "number", "minimum": 0, "maximum": 100},
                    "verdict": {"type": "string", "enum": ["pass", "fail"]},
                },
            },
        },
        "critical_detections": {"type": "array", "items": {"type": "string"}},
    },
}


class CallTrace(BaseModel):
    """What one golden-set call did on one arm: the trace fields and what it cost.

    ``output`` is the validated (possibly repaired) scorecard, ``None`` when the answer could
    not be made to fit the schema or the call failed (``error``). Repairs are listed, never
    hidden. ``returned_model`` is what the endpoint said it ran; ``model_mismatch`` is set when
    that differs from the release's concrete model (an alias resolving elsewhere).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    call_id: str
    arm: Arm
    release_id: str
    prompt_version: str | None = None
    prompt_hash: str
    requested_model: str
    returned_model: str | None = None
    model_mismatch: bool = False
    temperature: float = Field(strict=True)
    seed: int = Field(strict=True)
    blueprint_version_id: str | None = None
    structured_output: bool = False
    schema_valid: bool = False
    repairs: list[str] = Field(default_factory=list)
    output: Scorecard | None = None
    raw_output: str | None = None
    injection_flags: list[str] = Field(default_factory=list)
    redactions: dict[str, int] = Field(default_factory=dict)
    prompt_tokens: int = Field(strict=True, default=0, ge=0)
    completion_tokens: int = Field(strict=True, default=0, ge=0)
    latency_ms: float = Field(strict=True, default=0, ge=0)
    cost_usd: float = Field(strict=True, default=0, ge=0)
    attempts: int = Field(strict=True, default=1, ge=1)
    error: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Measure(BaseModel):
    """A metric value with the cases it rests on and, for rates, a Wilson 95 % interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float | None = Field(strict=True)
    samples: int = Field(strict=True)
    successes: int | None = Field(default=None, strict=True)
    ci_low: float | None = Field(default=None, strict=True)
    ci_high: float | None = Field(default=None, strict=True)


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval: honest on small n and at 0 % or 100 %, unlike the normal one."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(successes: int, n: int) -> Measure:
    if n == 0:
        return Measure(value=None, samples=0, successes=0)
    low, high = wilson(successes, n)
    return Measure(value=successes / n, samples=n, successes=successes, ci_low=low, ci_high=high)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (the value of a real call, never an interpolation)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _mean(values: Sequence[float]) -> Measure:
    return Measure(value=statistics.fmean(values) if values else None, samples=len(values))


def category_matches(output: Scorecard, labels: Mapping[str, CategoryLabel]) -> tuple[int, int]:
    """(agreeing, total) category verdicts; a category the model left out disagrees."""
    agree = sum(1 for name, label in labels.items()
                if name in output.categories and output.categories[name].verdict == label.verdict)
    return agree, len(labels)


def compute_metrics(
    traces: Iterable[CallTrace], calls: Mapping[str, GoldenCall],
) -> dict[GateMetric, Measure]:
    """All gate metrics of one arm over the calls it has traces for."""
    answered: list[tuple[CallTrace, GoldenCall]] = []
    errors = invalid = total = 0
    deltas: list[float] = []
    agree = pairs = fp = negatives = fn = positives = 0
    tokens: list[float] = []
    costs: list[float] = []
    latencies: list[float] = []
    for trace in traces:
        call = calls[trace.call_id]
        total += 1
        if trace.error is not None:
            errors += 1
            continue
        answered.append((trace, call))
        tokens.append(trace.total_tokens)
        costs.append(trace.cost_usd)
        latencies.append(trace.latency_ms)
        if trace.output is None:
            invalid += 1
            continue
        deltas.append(abs(trace.output.total_score - call.labels.total_score))
        a, p = category_matches(trace.output, call.labels.categories)
        agree += a
        pairs += p
        human_critical = bool(call.labels.critical_detections)
        model_critical = bool(trace.output.critical_detections)
        if human_critical:
            positives += 1
            fn += not model_critical
        else:
            negatives += 1
            fp += model_critical
    return {
        GateMetric.ABS_SCORE_DELTA_HUMAN: _mean(deltas),
        GateMetric.CATEGORY_AGREEMENT: rate(agree, pairs),
        GateMetric.CRITICAL_FALSE_POSITIVE_RATE: rate(fp, negatives),
        GateMetric.CRITICAL_FALSE_NEGATIVE_RATE: rate(fn, positives),
        GateMetric.SCHEMA_INVALID_RATE: rate(invalid, len(answered)),
        GateMetric.LLM_ERROR_RATE: rate(errors, total),
        GateMetric.TOKENS_PER_EVAL: _mean(tokens),
        GateMetric.COST_PER_EVAL: _mean(costs),
        GateMetric.LATENCY_P50_MS: Measure(
            value=percentile(latencies, 50) if latencies else None, samples=len(latencies)),
        GateMetric.LATENCY_P95_MS: Measure(
            value=percentile(latencies, 95) if latencies else None, samples=len(latencies)),
    }


class GateResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gate: GateThreshold
    outcome: GateOutcome
    measure: Measure
    required_samples: int = Field(strict=True)
    message: str


def evaluate_gate(gate: GateThreshold, measure: Measure) -> GateResult:
    needed = gate.required_samples()
    shown = f"{gate.metric} {gate.comparator} {gate.threshold:g}"
    if measure.value is None or measure.samples < needed:
        return GateResult(
            gate=gate, outcome=GateOutcome.INCONCLUSIVE, measure=measure, required_samples=needed,
            message=f"{measure.samples} cases, {needed} needed to decide {shown}")
    passed = holds(gate.comparator, measure.value, gate.threshold)
    return GateResult(
        gate=gate, outcome=GateOutcome.PASSED if passed else GateOutcome.FAILED,
        measure=measure, required_samples=needed,
        message=f"{gate.metric} = {measure.value:.4g} ({'meets' if passed else 'breaks'} {shown})")


class SegmentKind(StrEnum):
    INTENT = "intent"
    RISK_TAG = "risk_tag"
    TENANT_SEGMENT = "tenant_segment"


class SegmentResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SegmentKind
    segment: str
    calls: int = Field(strict=True)
    candidate: dict[GateMetric, Measure]
    baseline: dict[GateMetric, Measure]


class Regression(BaseModel):
    """A call whose candidate verdict is worse than the baseline's, both outputs side by side."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    call_id: str
    severity: int = Field(strict=True)
    reasons: list[str]
    human: dict[str, Any]
    candidate: CallTrace
    baseline: CallTrace


class GateBundle(BaseModel):
    """Everything one gate run found: the machine-readable report and the gates' outcomes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bundle_id: str
    task_id: str
    release_id: str
    baseline_release_id: str
    golden_set: GoldenSetRef
    evaluated_at: datetime
    results: list[GateResult]
    candidate: dict[GateMetric, Measure]
    baseline: dict[GateMetric, Measure]
    deltas: dict[GateMetric, float | None]
    segments: list[SegmentResult]
    regressions: list[Regression]
    score_deltas: dict[str, float]
    repairs: dict[str, int]
    injection_flagged_calls: list[str]
    model_mismatches: dict[str, list[str]]
    traces: list[CallTrace]

    def outcome_of(self, gate_name: str) -> GateOutcome:
        return next(r.outcome for r in self.results if r.gate.name == gate_name)


def _correctness(trace: CallTrace, call: GoldenCall) -> tuple[int, bool]:
    """(agreeing categories, critical detection right) of one answer; a failed call has none."""
    if trace.output is None:
        return 0, False
    agree, _ = category_matches(trace.output, call.labels.categories)
    return agree, bool(trace.output.critical_detections) == bool(call.labels.critical_detections)


def find_regressions(
    candidate: Mapping[str, CallTrace], baseline: Mapping[str, CallTrace],
    calls: Mapping[str, GoldenCall], limit: int = TOP_REGRESSIONS,
) -> list[Regression]:
    found: list[tuple[int, float, Regression]] = []
    for call_id, cand in candidate.items():
        base = baseline.get(call_id)
        if base is None:
            continue
        call = calls[call_id]
        c_agree, c_crit = _correctness(cand, call)
        b_agree, b_crit = _correctness(base, call)
        reasons: list[str] = []
        severity = 0
        if base.output is not None and cand.output is None:
            reasons.append("output no longer fits the schema" if cand.error is None
                           else f"call failed: {cand.error}")
            severity += 3
        if b_crit and not c_crit and cand.output is not None:
            reasons.append("critical detection now wrong")
            severity += 3
        if c_agree < b_agree and cand.output is not None:
            reasons.append(f"{b_agree - c_agree} category verdict(s) now disagree with QA")
            severity += b_agree - c_agree
        if not severity:
            continue
        drift = 0.0
        if cand.output is not None and base.output is not None:
            drift = abs(cand.output.total_score - call.labels.total_score) - abs(
                base.output.total_score - call.labels.total_score)
        found.append((severity, drift, Regression(
            call_id=call_id, severity=severity, reasons=reasons,
            human=call.labels.model_dump(mode="json"), candidate=cand, baseline=base)))
    found.sort(key=lambda item: (-item[0], -item[1], item[2].call_id))
    return [item[2] for item in found[:limit]]


def _segments(calls: Sequence[GoldenCall]) -> dict[tuple[SegmentKind, str], list[str]]:
    groups: dict[tuple[SegmentKind, str], list[str]] = {}
    for call in calls:
        keys = [(SegmentKind.INTENT, call.intent),
                (SegmentKind.TENANT_SEGMENT, call.tenant_segment)]
        keys += [(SegmentKind.RISK_TAG, tag) for tag in call.risk_tags]
        for key in keys:
            groups.setdefault(key, []).append(call.call_id)
    return dict(sorted(groups.items()))


def build_bundle(
    *, bundle_id: str, task_id: str, golden_set: GoldenSetRef, calls: Sequence[GoldenCall],
    candidate: Sequence[CallTrace], baseline: Sequence[CallTrace],
    thresholds: Sequence[GateThreshold], evaluated_at: datetime,
) -> GateBundle:
    """Score both arms, decide every gate on the candidate, and compare it with the baseline."""
    check_thresholds(thresholds)
    by_id = {call.call_id: call for call in calls}
    cand = {t.call_id: t for t in candidate}
    base = {t.call_id: t for t in baseline}
    missing = sorted(set(by_id) - set(cand))
    if missing:
        raise ValidationError(
            f"candidate has no trace for {len(missing)} golden call(s), e.g. {missing[0]}: "
            "finish (resume) the run before building a bundle")
    unknown = sorted((set(cand) | set(base)) - set(by_id))
    if unknown:
        raise ValidationError(f"traces for calls not in the golden set: {unknown[0]} ...")
    if not candidate or not baseline:
        raise ValidationError("a bundle needs traces of both the candidate and the baseline")
    cand_metrics = compute_metrics(cand.values(), by_id)
    base_metrics = compute_metrics(base.values(), by_id)
    deltas = {
        metric: (None if cand_metrics[metric].value is None or base_metrics[metric].value is None
                 else cand_metrics[metric].value - base_metrics[metric].value)  # type: ignore[operator]
        for metric in GateMetric
    }
    segments = [
        SegmentResult(
            kind=kind, segment=name, calls=len(ids),
            candidate=compute_metrics((cand[i] for i in ids), by_id),
            baseline=compute_metrics((base[i] for i in ids if i in base), by_id))
        for (kind, name), ids in _segments(calls).items()
    ]
    repairs: dict[str, int] = {}
    for trace in candidate:
        for repair in trace.repairs:
            repairs[repair] = repairs.get(repair, 0) + 1
    mismatches: dict[str, list[str]] = {}
    for trace in [*candidate, *baseline]:
        if trace.model_mismatch and trace.returned_model:
            served = mismatches.setdefault(f"{trace.arm}:{trace.requested_model}", [])
            if trace.returned_model not in served:
                served.append(trace.returned_model)
    return GateBundle(
        bundle_id=bundle_id, task_id=task_id,
        release_id=candidate[0].release_id, baseline_release_id=baseline[0].release_id,
        golden_set=golden_set, evaluated_at=evaluated_at,
        results=[evaluate_gate(g, cand_metrics[g.metric]) for g in thresholds],
        candidate=cand_metrics, baseline=base_metrics, deltas=deltas, segments=segments,
        regressions=find_regressions(cand, base, by_id),
        score_deltas={
            cid: t.output.total_score - by_id[cid].labels.total_score
            for cid, t in sorted(cand.items()) if t.output is not None},
        repairs=dict(sorted(repairs.items())),
        injection_flagged_calls=sorted(t.call_id for t in candidate if t.injection_flags),
        model_mismatches=mismatches,
        traces=[*candidate, *baseline],
    )


class GateEvaluated(BaseModel):
    """Event payload: a gate bundle was computed for a release (no transcripts, no outputs).

    The full report stays in the data directory under ``report_path`` (content hash in
    ``report_hash``); the event carries what promotion decisions and audits read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = GATE_EVALUATED_TYPE
    bundle_id: str
    task_id: str
    release_id: str
    baseline_release_id: str
    golden_set: GoldenSetRef
    evaluated_at: datetime
    results: list[GateResult]
    calls: int = Field(strict=True)
    injection_flagged_calls: int = Field(strict=True)
    model_mismatches: dict[str, list[str]]
    report_path: str
    report_hash: str
    evaluated_by: str = Field(min_length=1)
    # What ran and what it measured: the runner's configuration (endpoint, concurrency,
    # retries, pricing, and per arm the release, model, prompt hash, temperature and seed;
    # never the API key) and every metric of both arms. Optional so payloads written before
    # these fields existed still read.
    runner: dict[str, Any] = Field(default_factory=dict)
    candidate_metrics: dict[GateMetric, Measure] = Field(default_factory=dict)
    baseline_metrics: dict[GateMetric, Measure] = Field(default_factory=dict)

    @classmethod
    def from_bundle(cls, bundle: GateBundle, *, report_path: str, report_hash: str,
                    evaluated_by: str, runner: dict[str, Any] | None = None) -> "GateEvaluated":
        return cls(
            runner=runner or {}, candidate_metrics=bundle.candidate,
            baseline_metrics=bundle.baseline,
            bundle_id=bundle.bundle_id, task_id=bundle.task_id, release_id=bundle.release_id,
            baseline_release_id=bundle.baseline_release_id, golden_set=bundle.golden_set,
            evaluated_at=bundle.evaluated_at, results=bundle.results,
            calls=len({t.call_id for t in bundle.traces}),
            injection_flagged_calls=len(bundle.injection_flagged_calls),
            model_mismatches=bundle.model_mismatches, report_path=report_path,
            report_hash=report_hash, evaluated_by=evaluated_by)

    def outcome_of(self, gate_name: str) -> GateOutcome:
        return next(r.outcome for r in self.results if r.gate.name == gate_name)


class PromotionStep(StrEnum):
    PASS_INTERNAL_TEST = "pass_internal_test"  # noqa: S105 - a step, not a password
    START_ROLLOUT = "start_rollout"


class Acknowledgement(BaseModel):
    """A person accepts a failing Conditional gate of one bundle, and says why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bundle_id: str
    gate: str
    actor: str = Field(min_length=1)
    reason: str = Field(min_length=3)


class BreakGlass(BaseModel):
    """An admin's override of every gate; recorded with the decision, never silent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actor: str = Field(min_length=1)
    role: str
    reason: str = Field(min_length=3)


class GateDecision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed: bool
    step: PromotionStep
    release_id: str
    golden_set: GoldenSetRef
    bundle_id: str | None
    blocking: list[str]
    needs_acknowledgement: list[str]
    acknowledged: list[Acknowledgement]
    signals: list[str]
    break_glass: BreakGlass | None
    message: str


def decide_gate_passage(
    *, release_id: str, step: PromotionStep, bundles: Iterable[GateEvaluated],
    current_golden: GoldenSetRef, acknowledgements: Sequence[Acknowledgement] = (),
    break_glass: BreakGlass | None = None,
) -> GateDecision:
    """May ``release_id`` pass InternalTest / start a rollout, given its gate bundles?

    The newest bundle of this release on the *current* golden set version decides. A Block gate
    that is Failed or Inconclusive refuses, as does having no such bundle; a Conditional gate
    that is not Passed needs an acknowledgement naming that bundle and gate; Signal gates are
    listed only. A break-glass override (admin only) allows anyway and is part of the decision.
    """
    if break_glass is not None and break_glass.role != BREAK_GLASS_ROLE:
        raise ForbiddenError(
            f"break-glass override needs the {BREAK_GLASS_ROLE} role, not {break_glass.role}")
    mine = [b for b in bundles if b.release_id == release_id
            and b.golden_set.content_hash == current_golden.content_hash]
    bundle = max(mine, key=lambda b: b.evaluated_at, default=None)
    if bundle is None:
        if acknowledgements:
            raise ValidationError("acknowledgements given but there is no bundle to acknowledge")
        blocking = [f"no gate bundle for golden set {current_golden.name} "
                    f"v{current_golden.version} ({current_golden.content_hash[:19]})"]
        needs: list[str] = []
        signals: list[str] = []
        acked: list[Acknowledgement] = []
    else:
        _check_acknowledgements(bundle, acknowledgements)
        blocking, needs, signals, acked = _sort_results(bundle, acknowledgements)
    passes = not blocking and not needs
    allowed = passes or break_glass is not None
    if passes:
        message = "all blocking gates passed" + (
            f"; {len(acked)} conditional gate(s) acknowledged" if acked else "")
    elif break_glass is not None:
        message = f"gates overridden by {break_glass.actor} (break-glass): {break_glass.reason}"
    else:
        message = "; ".join(
            [*(f"blocked by {b}" for b in blocking),
             *(f"needs acknowledgement: {n}" for n in needs)])
    return GateDecision(
        allowed=allowed, step=step, release_id=release_id, golden_set=current_golden,
        bundle_id=bundle.bundle_id if bundle else None, blocking=blocking,
        needs_acknowledgement=needs, acknowledged=acked, signals=signals,
        break_glass=break_glass if not passes else None, message=message)


def _check_acknowledgements(bundle: GateEvaluated, acks: Sequence[Acknowledgement]) -> None:
    by_gate = {r.gate.name: r for r in bundle.results}
    for ack in acks:
        if ack.bundle_id != bundle.bundle_id:
            raise ValidationError(
                f"acknowledgement names bundle {ack.bundle_id}; the deciding bundle is "
                f"{bundle.bundle_id}")
        result = by_gate.get(ack.gate)
        if result is None or result.gate.gate_class is not GateClass.CONDITIONAL \
                or result.outcome is GateOutcome.PASSED:
            raise ValidationError(
                f"gate {ack.gate!r} is not a failing Conditional gate of {bundle.bundle_id}")


def _sort_results(
    bundle: GateEvaluated, acks: Sequence[Acknowledgement],
) -> tuple[list[str], list[str], list[str], list[Acknowledgement]]:
    """(blocking, needing acknowledgement, signals, acknowledgements used) of a bundle."""
    acked_gates = {ack.gate: ack for ack in acks}
    blocking: list[str] = []
    needs: list[str] = []
    signals: list[str] = []
    acked: list[Acknowledgement] = []
    for result in bundle.results:
        if result.outcome is GateOutcome.PASSED:
            continue
        line = f"{result.gate.name}: {result.outcome}: {result.message}"
        if result.gate.gate_class is GateClass.BLOCK:
            blocking.append(line)
        elif result.gate.gate_class is GateClass.CONDITIONAL:
            if result.gate.name in acked_gates:
                acked.append(acked_gates[result.gate.name])
            else:
                needs.append(line)
        else:
            signals.append(line)
    return blocking, needs, signals, acked


def require_gate_passage(**kwargs: Any) -> GateDecision:
    """``decide_gate_passage`` for command handlers: a refusal raises ``ConflictError``."""
    decision = decide_gate_passage(**kwargs)
    if not decision.allowed:
        raise ConflictError(f"release {decision.release_id} may not {decision.step}: "
                            f"{decision.message}")
    return decision


# ---- gate passage: what a gated step (passing InternalTest, starting a rollout) records --------

class PassageBasis(StrEnum):
    """Why a release was let through a gated step; recorded in ``Release.GatePassed``."""

    GATES_PASSED = "gates_passed"
    ACKNOWLEDGED = "acknowledged"
    BREAK_GLASS = "break_glass"
    WAIVED = "waived"  # the task's gates were waived by an admin (Task.GatesWaived)
    UNGATED = "ungated"  # recorded before gates were required; no longer decided


GATED_FROM_STAGE = "InternalTest"


def passes_internal_test(from_stage: str, to_stage: str, stages: Sequence[str]) -> bool:
    """Is moving ``from_stage`` -> ``to_stage`` a gated promotion (to Beta or Stable)?

    Deprecating is never gated (taking a release out of service needs no evidence), and
    reaching InternalTest itself is where the evidence is gathered.
    """
    if to_stage == "Deprecated" or to_stage not in stages or from_stage not in stages:
        return False
    return stages.index(to_stage) > stages.index(GATED_FROM_STAGE)


def policy_gates(thresholds: Sequence[Mapping[str, Any]] | Sequence[GateThreshold],
                 ) -> list[dict[str, Any]]:
    """Gates as JSON, sorted by name: the form a task's gate policy is stored and compared in."""
    gates = [GateThreshold.model_validate(t) if not isinstance(t, GateThreshold) else t
             for t in thresholds]
    return [g.model_dump(mode="json") for g in sorted(gates, key=lambda g: g.name)]


def uses_policy(bundle: GateEvaluated, policy: Sequence[Mapping[str, Any]]) -> bool:
    """Was ``bundle`` decided with exactly the gates of ``policy``?"""
    return policy_gates([r.gate for r in bundle.results]) == policy_gates(policy)


class StepAcknowledgement(BaseModel):
    """On a promote / rollout-start command: accept one failing Conditional gate, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gate: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=3, max_length=2_000)


def gate_passage(
    *, release_id: str, step: PromotionStep, golden: GoldenSetRef | None,
    bundles: Sequence[Mapping[str, Any]], actor: str, role: str,
    acknowledgements: Sequence[StepAcknowledgement] = (), break_glass: str | None = None,
    policy: Sequence[Mapping[str, Any]] | None = None, waiver: GateWaiver | None = None,
) -> dict[str, Any]:
    """Decide a gated step and return what ``Release.GatePassed`` records; raise if refused.

    ``golden`` is the task's current golden set: with one, :func:`decide_gate_passage` decides
    over the release's recorded bundles. Without one the step is refused, since evidence is the
    price of production, unless the task's gates were waived (``waiver``, an admin's recorded
    choice, named by the passage) or an admin breaks glass. A refusal raises ``ConflictError``
    (nothing is recorded); a break-glass by anyone but an admin raises ``ForbiddenError``.
    """
    if break_glass is not None and role != BREAK_GLASS_ROLE:
        raise ForbiddenError(
            f"break-glass override needs the {BREAK_GLASS_ROLE} role, not {role}")
    base: dict[str, Any] = {"step": step.value, "golden_set": None, "bundle_id": None,
                            "acknowledged": [], "break_glass": None, "overridden": [],
                            "signals": []}
    if golden is None:
        return _passage_without_golden_set(base, release_id, step, actor, role,
                                           acknowledgements, break_glass, waiver)
    events = [GateEvaluated.model_validate(b) for b in bundles]
    if policy is not None:
        # A bundle decided with other gates than the task's policy is stale, like one on an
        # older golden set: it is left out (and the decision says no bundle is current).
        events = [e for e in events if uses_policy(e, policy)]
    current = [e for e in events if e.release_id == release_id
               and e.golden_set.content_hash == golden.content_hash]
    deciding = max(current, key=lambda e: e.evaluated_at, default=None)
    acks = [Acknowledgement(bundle_id=deciding.bundle_id if deciding else "-", gate=a.gate,
                            actor=actor, reason=a.reason) for a in acknowledgements]
    glass = BreakGlass(actor=actor, role=role, reason=break_glass) if break_glass else None
    decision = require_gate_passage(
        release_id=release_id, step=step, bundles=events, current_golden=golden,
        acknowledgements=acks, break_glass=glass)
    if decision.break_glass is not None:
        basis = PassageBasis.BREAK_GLASS
    elif decision.acknowledged:
        basis = PassageBasis.ACKNOWLEDGED
    else:
        basis = PassageBasis.GATES_PASSED
    return {
        **base, "basis": basis.value, "golden_set": golden.model_dump(mode="json"),
        "bundle_id": decision.bundle_id,
        "acknowledged": [a.model_dump(mode="json") for a in decision.acknowledged],
        "break_glass": (decision.break_glass.model_dump(mode="json")
                        if decision.break_glass else None),
        "overridden": ([*decision.blocking, *decision.needs_acknowledgement]
                       if decision.break_glass else []),
        "signals": decision.signals,
    }


def _passage_without_golden_set(
    base: dict[str, Any], release_id: str, step: PromotionStep, actor: str, role: str,
    acknowledgements: Sequence[StepAcknowledgement], break_glass: str | None,
    waiver: GateWaiver | None,
) -> dict[str, Any]:
    """A task with no golden set: its waiver lets the step through, an admin's break-glass
    does (overriding the missing evidence), anything else is refused with what to do."""
    task, known, number = release_id.rpartition("@")
    if not known:
        task, number = "TASK", "N"
    if acknowledgements:
        raise ValidationError(f"task {task} has no golden set registered: there is no gate to "
                              "acknowledge")
    if waiver is not None:
        if break_glass is not None:
            raise ValidationError(f"task {task}'s gates are waived ({waiver.reason}): there is "
                                  "nothing to break glass for")
        return {**base, "basis": PassageBasis.WAIVED.value,
                "waiver": waiver.model_dump(mode="json")}
    if break_glass is None:
        raise ConflictError(f"release {release_id} may not {step}: {how_to_gate(task, number)}")
    glass = BreakGlass(actor=actor, role=role, reason=break_glass)
    return {**base, "basis": PassageBasis.BREAK_GLASS.value,
            "break_glass": glass.model_dump(mode="json"),
            "overridden": [f"no golden set registered for task {task} (no evidence)"]}
