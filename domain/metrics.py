"""Mergeable window statistics for evaluations, and the metrics guards and alerts read.

Stats for one (scope, time bucket) are sums and counts plus DDSketch quantile sketches (a
maintained, mergeable sketch with a relative-accuracy guarantee), so partial aggregates built on
different partitions or workers merge exactly, and a window is the merge of its buckets.
"""

import base64
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.pb.ddsketch_pb2 import DDSketch as DDSketchMessage
from ddsketch.pb.proto import DDSketchProto
from ddsketch.store import DenseStore

RELATIVE_ACCURACY = 0.01
STORE_CHUNK = 16
SKETCHES = ("latency", "queue_wait", "confidence")
COUNTERS = (
    "count", "llm_error", "timeout", "transcription_error", "fallback", "schema_invalid",
    "repaired", "human_review", "tokens", "cost", "confidence_sum", "confidence_n",
    "score_sum", "score_n", "human_n", "human_delta_sum", "human_abs_delta_sum",
    "category_total", "category_agree", "critical_labelled", "critical_fp", "critical_fn",
    "sandbox_n", "sandbox_failed", "shadow_pairs", "shadow_delta_sum",
)


# The sketch each metric reads; every other metric reads counters only. A window merged for a
# set of metrics needs only these sketches (:func:`sketches_read`): merging sketches is most of
# what merging a window's buckets costs, and the platform alert rules read none.
SKETCH_OF = {"latency_p50_ms": "latency", "latency_p95_ms": "latency",
             "queue_wait_p95_ms": "queue_wait"}


def sketches_read(metrics: Iterable[str]) -> tuple[str, ...]:
    """The sketches ``metrics`` read (in SKETCHES order)."""
    wanted = {SKETCH_OF.get(metric) for metric in metrics}
    return tuple(name for name in SKETCHES if name in wanted)


_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)  # immutable once built: shared by all sketches


def _sketch() -> BaseDDSketch:
    """A DDSketch (1% relative accuracy) whose stores grow in small chunks: most buckets see a
    narrow range of values, and the default 128-bin chunks dominated worker memory."""
    return BaseDDSketch(_MAPPING, DenseStore(STORE_CHUNK), DenseStore(STORE_CHUNK), 0.0)


@dataclass
class WindowStats:
    """Aggregates of the evaluations of one scope in one time bucket (or a merged window)."""

    count: int = 0
    llm_error: int = 0
    timeout: int = 0
    transcription_error: int = 0
    fallback: int = 0
    schema_invalid: int = 0
    repaired: int = 0
    human_review: int = 0
    tokens: float = 0.0
    cost: float = 0.0
    confidence_sum: float = 0.0
    confidence_n: int = 0
    score_sum: float = 0.0
    score_n: int = 0
    human_n: int = 0
    human_delta_sum: float = 0.0
    human_abs_delta_sum: float = 0.0
    category_total: int = 0
    category_agree: int = 0
    critical_labelled: int = 0
    critical_fp: int = 0
    critical_fn: int = 0
    sandbox_n: int = 0
    sandbox_failed: int = 0
    shadow_pairs: int = 0
    shadow_delta_sum: float = 0.0
    queue_depth_max: int = 0
    latency: BaseDDSketch = field(default_factory=_sketch)
    queue_wait: BaseDDSketch = field(default_factory=_sketch)
    confidence: BaseDDSketch = field(default_factory=_sketch)

    def add(self, record: Any) -> None:  # noqa: PLR0912 - one flat pass per record
        """Fold one evaluation (an EvaluationRecord or anything with its attributes) in."""
        self.count += 1
        outcome = record.outcome
        if outcome != "ok":
            if outcome == "llm_error":
                self.llm_error += 1
            elif outcome == "timeout":
                self.timeout += 1
            elif outcome == "transcription_error":
                self.transcription_error += 1
        if record.arm == "sandbox":
            self.sandbox_n += 1
            if outcome != "ok":
                self.sandbox_failed += 1
        if record.fallback_used:
            self.fallback += 1
        if not record.schema_valid:
            self.schema_invalid += 1
        if record.repaired:
            self.repaired += 1
        if record.human_review_requested:
            self.human_review += 1
        self.tokens += record.tokens
        self.cost += record.cost_usd
        self.latency.add(max(record.latency_ms, 0.0))
        self.queue_wait.add(max(record.queue_wait_ms, 0.0))
        if record.queue_depth is not None and record.queue_depth > self.queue_depth_max:
            self.queue_depth_max = record.queue_depth
        if record.confidence is not None:
            self.confidence_sum += record.confidence
            self.confidence_n += 1
            self.confidence.add(record.confidence)
        if record.score is not None:
            self.score_sum += record.score
            self.score_n += 1
        self._add_human(record)

    def add_many(self, rows: Sequence[Any]) -> None:
        """Fold many evidence rows (:class:`relctl.domain.dedup.Evidence`, any order of one
        cell) in: the same result as :meth:`add` on each, column by column (sums may differ
        in the last bits of a float, as any other order of adding would)."""
        if not rows:
            return
        (_, _, arms, outcomes, fallback, valid, repaired, review, tokens, cost, latency,
         queue_wait, depth, confidence, score, human, _, human_categories, _,
         human_critical) = zip(*rows, strict=True)
        n = len(rows)
        self.count += n
        tally = Counter(outcomes)
        self.llm_error += tally.get("llm_error", 0)
        self.timeout += tally.get("timeout", 0)
        self.transcription_error += tally.get("transcription_error", 0)
        if "sandbox" in arms:
            sandbox = [outcome for arm, outcome in zip(arms, outcomes, strict=True)
                       if arm == "sandbox"]
            self.sandbox_n += len(sandbox)
            self.sandbox_failed += len(sandbox) - sandbox.count("ok")
        self.fallback += sum(fallback)
        self.schema_invalid += n - sum(valid)
        self.repaired += sum(repaired)
        self.human_review += sum(review)
        self.tokens += sum(tokens)
        self.cost += sum(cost)
        _add_values(self.latency, [value if value > 0.0 else 0.0 for value in latency])
        _add_values(self.queue_wait, [value if value > 0.0 else 0.0 for value in queue_wait])
        depths = [value for value in depth if value is not None] if \
            depth.count(None) != n else None
        if depths:
            self.queue_depth_max = max(self.queue_depth_max, *depths)
        known = [value for value in confidence if value is not None]
        if known:
            self.confidence_sum += sum(known)
            self.confidence_n += len(known)
            _add_values(self.confidence, known)
        scored = [value for value in score if value is not None]
        if scored:
            self.score_sum += sum(scored)
            self.score_n += len(scored)
        if n * 3 != human.count(None) + human_categories.count(None) + \
                human_critical.count(None):
            for row in rows:  # human review is rare: the row-by-row rules, shared with add()
                self._add_human(row)

    def _add_human(self, record: Any) -> None:
        """The human-review comparisons of one evaluation (see :meth:`add`)."""
        if record.score is not None and record.human_score is not None:
            delta = record.score - record.human_score
            self.human_n += 1
            self.human_delta_sum += delta
            self.human_abs_delta_sum += abs(delta)
        if record.human_categories is not None:
            for name, label in record.human_categories.items():
                self.category_total += 1
                if record.categories.get(name) == label:
                    self.category_agree += 1
        if record.human_critical is not None:
            self.critical_labelled += 1
            detected, truth = set(record.critical_detections), set(record.human_critical)
            if detected - truth:
                self.critical_fp += 1
            if truth - detected:
                self.critical_fn += 1

    def add_shadow_pair(self, delta: float) -> None:
        """A paired comparison: shadow score minus production score of the same call."""
        self.shadow_pairs += 1
        self.shadow_delta_sum += delta

    def merge(self, other: "WindowStats",
              sketches: Sequence[str] = SKETCHES) -> "WindowStats":
        """Add ``other`` in; only the named ``sketches`` (the others are left as they are)."""
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.queue_depth_max = max(self.queue_depth_max, other.queue_depth_max)
        for name in sketches:
            theirs = getattr(other, name)
            if theirs.count:
                getattr(self, name).merge(theirs)
        return self

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
        data["queue_depth_max"] = self.queue_depth_max
        for name in SKETCHES:
            sketch = getattr(self, name)
            if sketch.count:
                blob = DDSketchProto.to_proto(sketch).SerializeToString()
                data[name] = base64.b64encode(blob).decode()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "WindowStats":
        stats = cls(**{name: data.get(name, 0) for name in (*COUNTERS, "queue_depth_max")})
        for name in SKETCHES:
            if data.get(name):
                message = DDSketchMessage()
                message.ParseFromString(base64.b64decode(data[name]))
                setattr(stats, name, DDSketchProto.from_proto(message))
        return stats

    @classmethod
    def merged(cls, parts: Iterable["WindowStats"],
               sketches: Sequence[str] = SKETCHES) -> "WindowStats":
        """The sum of ``parts``; sketches not named in ``sketches`` stay empty (see
        :func:`sketches_read`)."""
        total = cls()
        for part in parts:
            total.merge(part, sketches)
        return total


def _add_values(sketch: BaseDDSketch, values: list[float]) -> None:
    """``sketch.add(value)`` for each of ``values``, in one pass: keys are computed with the
    sketch's own formula and each distinct key is added once with its count, in order of
    first appearance, so the store ends up exactly as adding one by one leaves it. It reads
    and writes DDSketch's private fields (``_mapping``, ``_store``, ``_count``, …) as
    ``BaseDDSketch.add`` does in ddsketch 3.0.1, the pinned version; tests/unit/
    test_column_fold.py checks the result against ``add``, so an upgrade that changes them
    fails there."""
    if not values:
        return
    mapping = sketch._mapping
    low = mapping.min_possible
    multiplier, offset = mapping._multiplier, mapping._offset
    positive = [value for value in values if value > low]
    if len(positive) != len(values) and any(value < -low for value in values):
        for value in values:  # negative values: not produced by the guard's measures
            sketch.add(value)
        return
    keys: Counter[int] = Counter()
    for value, weight in Counter(positive).items():  # repeated values are common (0.0, 0.9)
        keys[int(math.ceil(math.log(value, 2) * multiplier) + offset)] += weight
    store = sketch._store
    for key, weight in keys.items():
        store.add(key, float(weight))
    sketch._zero_count += len(values) - len(positive)
    sketch._count += len(values)
    sketch._sum += sum(values)
    sketch._min = min(sketch._min, *values)
    sketch._max = max(sketch._max, *values)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _quantile(sketch: BaseDDSketch, q: float) -> float | None:
    value = sketch.get_quantile_value(q) if sketch.count else None
    return float(value) if value is not None else None


def metric_value(
    metric: str, stats: WindowStats, baseline: WindowStats | None = None,
    window_seconds: float = 60.0,
) -> tuple[float | None, int]:
    """(value, number of samples behind it) of ``metric`` over ``stats``; None if it cannot be
    computed from the evidence (that is Inconclusive, never Passed)."""
    n = stats.count
    simple = {
        "llm_error_rate": (lambda: _ratio(stats.llm_error, n), n),
        "timeout_rate": (lambda: _ratio(stats.timeout, n), n),
        "transcription_error_rate": (lambda: _ratio(stats.transcription_error, n), n),
        "fallback_rate": (lambda: _ratio(stats.fallback, n), n),
        "human_review_rate": (lambda: _ratio(stats.human_review, n), n),
        "schema_invalid_rate": (lambda: _ratio(stats.schema_invalid, n), n),
        "repair_rate": (lambda: _ratio(stats.repaired, n), n),
        "sandbox_failure_rate": (lambda: _ratio(stats.sandbox_failed, stats.sandbox_n),
                                 stats.sandbox_n),
        "category_agreement": (lambda: _ratio(stats.category_agree, stats.category_total),
                               stats.category_total),
        "critical_false_positive_rate": (
            lambda: _ratio(stats.critical_fp, stats.critical_labelled), stats.critical_labelled),
        "critical_false_negative_rate": (
            lambda: _ratio(stats.critical_fn, stats.critical_labelled), stats.critical_labelled),
        "latency_p50_ms": (lambda: _quantile(stats.latency, 0.5), n),
        "latency_p95_ms": (lambda: _quantile(stats.latency, 0.95), n),
        "queue_wait_p95_ms": (lambda: _quantile(stats.queue_wait, 0.95), n),
        "tokens_per_eval": (lambda: _ratio(stats.tokens, n), n),
        "cost_per_eval": (lambda: _ratio(stats.cost, n), n),
        "confidence_mean": (lambda: _ratio(stats.confidence_sum, stats.confidence_n),
                            stats.confidence_n),
        "score_mean": (lambda: _ratio(stats.score_sum, stats.score_n), stats.score_n),
        "score_delta_human": (lambda: _ratio(stats.human_delta_sum, stats.human_n),
                              stats.human_n),
        "abs_score_delta_human": (lambda: _ratio(stats.human_abs_delta_sum, stats.human_n),
                                  stats.human_n),
        "score_delta_shadow": (lambda: _ratio(stats.shadow_delta_sum, stats.shadow_pairs),
                               stats.shadow_pairs),
        "evaluations_per_minute": (lambda: n / (window_seconds / 60.0), n),
        "queue_depth_max": (lambda: float(stats.queue_depth_max) if n else None, n),
    }
    if metric in simple:
        compute, samples = simple[metric]
        return compute(), samples
    if metric == "score_delta_baseline":
        if baseline is None or not stats.score_n or not baseline.score_n:
            return None, 0
        delta = stats.score_sum / stats.score_n - baseline.score_sum / baseline.score_n
        return delta, min(stats.score_n, baseline.score_n)
    raise KeyError(f"unknown metric {metric!r}")

