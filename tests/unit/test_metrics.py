"""Window statistics: every metric a guard or alert reads, merging, and the wire format."""

import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relctl.domain.guards import METRICS
from relctl.domain.metrics import (
    COUNTERS,
    RELATIVE_ACCURACY,
    WindowStats,
    metric_value,
    sketches_read,
)

from tests.unit.stream_support import T0, record

# Five evaluations whose every metric is easy to work out by hand.
HAND_BUILT: list[dict[str, Any]] = [
    {"call_id": "r1", "outcome": "ok", "fallback_used": True, "human_review_requested": True,
     "tokens": 100, "cost_usd": 0.25, "latency_ms": 100.0, "queue_wait_ms": 10.0,
     "queue_depth": 5, "confidence": 0.75, "score": 80.0, "human_score": 70.0,
     "categories": {"a": "pass", "b": "fail"}, "human_categories": {"a": "pass", "b": "pass"},
     "critical_detections": ["x"], "human_critical": ["x"]},
    {"call_id": "r2", "outcome": "llm_error", "schema_valid": False, "repaired": True,
     "tokens": 200, "cost_usd": 0.5, "latency_ms": 200.0, "queue_wait_ms": 20.0,
     "queue_depth": 12, "confidence": 0.5, "score": 60.0, "human_score": 75.0,
     "categories": {"a": "pass"}, "human_categories": {"a": "fail"},
     "critical_detections": ["x", "y"], "human_critical": ["x"]},
    {"call_id": "r3", "outcome": "ok", "arm": "sandbox", "tokens": 300, "cost_usd": 0.75,
     "latency_ms": 300.0, "queue_wait_ms": 30.0, "queue_depth": None, "confidence": None,
     "score": None, "human_score": 50.0, "critical_detections": [], "human_critical": ["z"]},
    {"call_id": "r4", "outcome": "transcription_error", "arm": "sandbox", "tokens": 400,
     "cost_usd": 1.0, "latency_ms": 400.0, "queue_wait_ms": 40.0, "confidence": None,
     "score": 90.0, "categories": {}, "critical_detections": ["q"]},
    {"call_id": "r5", "outcome": "timeout", "arm": "shadow", "tokens": 500, "cost_usd": 1.25,
     "latency_ms": 500.0, "queue_wait_ms": 50.0, "queue_depth": 3, "confidence": None,
     "score": None, "categories": {}},
]

# (value, samples) of every metric over HAND_BUILT, a 120 s window, plus two shadow pairs.
EXPECTED: dict[str, tuple[float, int]] = {
    "llm_error_rate": (0.2, 5),
    "timeout_rate": (0.2, 5),
    "transcription_error_rate": (0.2, 5),
    "fallback_rate": (0.2, 5),
    "human_review_rate": (0.2, 5),
    "schema_invalid_rate": (0.2, 5),
    "repair_rate": (0.2, 5),
    "sandbox_failure_rate": (0.5, 2),          # r3 ok, r4 failed
    "category_agreement": (1 / 3, 3),          # r1: a agrees, b not; r2: a not
    "critical_false_positive_rate": (1 / 3, 3),  # r2 detected y, not labelled
    "critical_false_negative_rate": (1 / 3, 3),  # r3 missed z
    "tokens_per_eval": (300.0, 5),
    "cost_per_eval": (0.75, 5),
    "confidence_mean": (0.625, 2),
    "score_mean": (230 / 3, 3),
    "score_delta_human": (-2.5, 2),            # (80-70 + 60-75) / 2; r3 has no score
    "abs_score_delta_human": (12.5, 2),
    "score_delta_shadow": (1.0, 2),            # pairs +3 and -1
    "evaluations_per_minute": (2.5, 5),        # 5 in 120 s
    "queue_depth_max": (12.0, 5),
}
# DDSketch returns the value at rank floor(q * (n - 1)) within its relative accuracy.
QUANTILES = {"latency_p50_ms": (300.0, 5), "latency_p95_ms": (400.0, 5),
             "queue_wait_p95_ms": (40.0, 5)}


def hand_built() -> WindowStats:
    stats = WindowStats()
    for i, changes in enumerate(HAND_BUILT):
        stats.add(record(T0 + i, **changes))
    stats.add_shadow_pair(3.0)
    stats.add_shadow_pair(-1.0)
    return stats


def test_every_metric_is_covered() -> None:
    extra = {"sandbox_failure_rate", "queue_depth_max", "score_mean"}
    assert (METRICS | extra) - {"score_delta_baseline"} == set(EXPECTED) | set(QUANTILES)


def test_counters_of_the_hand_built_set() -> None:
    stats = hand_built()
    assert (stats.count, stats.llm_error, stats.timeout, stats.transcription_error) == (5, 1, 1, 1)
    assert (stats.sandbox_n, stats.sandbox_failed) == (2, 1)
    assert (stats.category_total, stats.category_agree) == (3, 1)
    assert (stats.critical_labelled, stats.critical_fp, stats.critical_fn) == (3, 1, 1)
    assert (stats.human_n, stats.score_n, stats.confidence_n) == (2, 3, 2)
    assert (stats.shadow_pairs, stats.shadow_delta_sum) == (2, 2.0)
    assert stats.tokens == 1500 and stats.cost == 3.75
    assert stats.latency.count == stats.queue_wait.count == 5
    assert stats.confidence.count == 2


@pytest.mark.parametrize(("metric", "expected"), sorted(EXPECTED.items()))
def test_metric_value(metric: str, expected: tuple[float, int]) -> None:
    value, samples = metric_value(metric, hand_built(), None, 120.0)
    assert value == pytest.approx(expected[0], rel=1e-12)
    assert samples == expected[1]


@pytest.mark.parametrize(("metric", "expected"), sorted(QUANTILES.items()))
def test_quantile_metrics_are_within_the_sketch_accuracy(
        metric: str, expected: tuple[float, int]) -> None:
    value, samples = metric_value(metric, hand_built())
    assert value == pytest.approx(expected[0], rel=RELATIVE_ACCURACY)
    assert samples == expected[1]


def test_score_delta_baseline_compares_means() -> None:
    baseline = WindowStats()
    for i, score in enumerate((70.0, 80.0, 90.0, 100.0)):
        baseline.add(record(T0, call_id=f"b{i}", score=score))
    value, samples = metric_value("score_delta_baseline", hand_built(), baseline)
    assert value == pytest.approx(230 / 3 - 85.0)
    assert samples == 3  # the smaller of 3 candidate and 4 baseline scores


@pytest.mark.parametrize("baseline", [None, WindowStats(), WindowStats(count=10)])
def test_score_delta_baseline_needs_scores_on_both_sides(baseline: WindowStats | None) -> None:
    assert metric_value("score_delta_baseline", hand_built(), baseline) == (None, 0)
    assert metric_value("score_delta_baseline", WindowStats(), hand_built()) == (None, 0)


@pytest.mark.parametrize("metric", sorted(
    (METRICS | {"sandbox_failure_rate", "score_mean"}) - {"evaluations_per_minute"}))
def test_nothing_is_computable_from_no_evidence(metric: str) -> None:
    assert metric_value(metric, WindowStats(), WindowStats()) == (None, 0)


def test_queue_depth_max_and_rate_of_an_empty_window() -> None:
    assert metric_value("queue_depth_max", WindowStats()) == (None, 0)
    assert metric_value("evaluations_per_minute", WindowStats(), None, 300.0) == (0.0, 0)


def test_labels_absent_means_not_computable() -> None:
    """Scores without human labels: the human deltas are unknown, not zero."""
    stats = WindowStats()
    for i in range(10):
        stats.add(record(T0, call_id=f"c{i}", score=80.0))
    assert metric_value("score_delta_human", stats) == (None, 0)
    assert metric_value("abs_score_delta_human", stats) == (None, 0)
    assert metric_value("category_agreement", stats) == (None, 0)
    assert metric_value("critical_false_negative_rate", stats) == (None, 0)
    assert metric_value("score_mean", stats) == (80.0, 10)


def test_unknown_metric_raises() -> None:
    with pytest.raises(KeyError, match="nope"):
        metric_value("nope", hand_built())


def test_json_round_trip_preserves_every_metric() -> None:
    stats = hand_built()
    wire = orjson.loads(orjson.dumps(stats.to_json()))
    again = WindowStats.from_json(wire)
    for metric in (*EXPECTED, *QUANTILES):
        assert metric_value(metric, again, None, 120.0) == pytest.approx(
            metric_value(metric, stats, None, 120.0), rel=1e-9), metric
    assert {name: getattr(again, name) for name in COUNTERS} == {
        name: getattr(stats, name) for name in COUNTERS}
    assert again.queue_depth_max == 12


def test_json_of_an_empty_window_has_no_sketches_and_round_trips() -> None:
    data = WindowStats().to_json()
    assert not {"latency", "queue_wait", "confidence"} & set(data)
    again = WindowStats.from_json(data)
    assert again.count == 0 and again.latency.count == 0
    assert metric_value("latency_p95_ms", again) == (None, 0)


def test_decoded_stats_merge_with_fresh_ones() -> None:
    """The guard merges stored (decoded) buckets with freshly decoded partials and vice versa."""
    decoded = WindowStats.from_json(hand_built().to_json())
    fresh = hand_built()
    decoded.merge(fresh)
    fresh.merge(WindowStats.from_json(hand_built().to_json()))
    for stats in (decoded, fresh):
        assert stats.count == 10 and stats.latency.count == 10
        assert metric_value("latency_p50_ms", stats)[0] == pytest.approx(300.0, rel=0.01)


def test_merged_of_nothing_is_empty() -> None:
    assert WindowStats.merged([]).count == 0


@pytest.mark.parametrize("metric", sorted(METRICS | {"score_mean"}))
def test_a_window_merged_with_the_sketches_a_metric_reads_gives_its_value(metric: str) -> None:
    parts = [hand_built(), hand_built()]
    whole = WindowStats.merged(parts)
    lean = WindowStats.merged(parts, sketches_read([metric]))
    baseline = hand_built()
    assert metric_value(metric, lean, baseline) == metric_value(metric, whole, baseline)


def test_sketches_read_names_only_what_quantile_metrics_read() -> None:
    assert sketches_read(["llm_error_rate", "confidence_mean", "tokens_per_eval"]) == ()
    assert sketches_read(["queue_wait_p95_ms", "latency_p50_ms"]) == ("latency", "queue_wait")
    lean = WindowStats.merged([hand_built()], ())
    assert lean.count == 5 and lean.latency.count == 0


# ---- properties -------------------------------------------------------------------------

# Values are dyadic fractions, so float sums are exact in any order and "counters exactly"
# can be asserted with ==.
dyadic = st.integers(0, 4096).map(lambda i: i / 64)
records = st.builds(
    dict,
    outcome=st.sampled_from(["ok", "ok", "llm_error", "timeout", "transcription_error"]),
    arm=st.sampled_from(["production", "shadow", "sandbox"]),
    fallback_used=st.booleans(), schema_valid=st.booleans(), repaired=st.booleans(),
    human_review_requested=st.booleans(),
    tokens=st.integers(0, 10_000), cost_usd=dyadic, latency_ms=dyadic.map(lambda v: v * 100),
    queue_wait_ms=dyadic, queue_depth=st.none() | st.integers(0, 1000),
    confidence=st.none() | st.integers(0, 64).map(lambda i: i / 64),
    score=st.none() | st.integers(0, 200).map(lambda i: i / 2),
    human_score=st.none() | st.integers(0, 200).map(lambda i: i / 2),
    categories=st.dictionaries(st.sampled_from("abc"), st.sampled_from(["y", "n"]), max_size=3),
    human_categories=st.none() | st.dictionaries(st.sampled_from("abc"),
                                                 st.sampled_from(["y", "n"]), max_size=3),
    critical_detections=st.lists(st.sampled_from("xyz"), max_size=3),
    human_critical=st.none() | st.lists(st.sampled_from("xyz"), max_size=3),
)


def _stats(items: list[dict[str, Any]]) -> WindowStats:
    stats = WindowStats()
    for i, item in enumerate(items):
        stats.add(record(T0, call_id=f"c{i}", **item))
    return stats


def _true_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


@settings(max_examples=60, deadline=None)
@given(items=st.lists(records, min_size=1, max_size=40), data=st.data())
def test_merging_a_random_split_equals_the_whole(items: list[dict[str, Any]],
                                                 data: st.DataObject) -> None:
    parts = data.draw(st.lists(st.integers(0, 3), min_size=len(items), max_size=len(items)))
    groups: list[list[dict[str, Any]]] = [[], [], [], []]
    for item, part in zip(items, parts, strict=True):
        groups[part].append(item)
    whole = _stats(items)
    # Some parts go over the wire first, as stage 1 -> stage 2 partials do.
    pieces = [_stats(g) if i % 2 else WindowStats.from_json(_stats(g).to_json())
              for i, g in enumerate(groups)]
    merged = WindowStats.merged(pieces)
    for name in (*COUNTERS, "queue_depth_max"):
        assert getattr(merged, name) == getattr(whole, name), name
    latencies = [item["latency_ms"] for item in items]
    waits = [item["queue_wait_ms"] for item in items]
    for metric, values, q in (("latency_p50_ms", latencies, 0.5),
                              ("latency_p95_ms", latencies, 0.95),
                              ("queue_wait_p95_ms", waits, 0.95)):
        value, samples = metric_value(metric, merged)
        assert samples == len(items)
        assert value == pytest.approx(_true_quantile(values, q), rel=RELATIVE_ACCURACY, abs=1e-9)
        assert value == pytest.approx(metric_value(metric, whole)[0], rel=1e-9, abs=1e-9)
    assert merged.confidence.count == whole.confidence.count


@settings(max_examples=40, deadline=None)
@given(items=st.lists(records, max_size=30))
def test_json_round_trip_of_random_windows(items: list[dict[str, Any]]) -> None:
    stats = _stats(items)
    again = WindowStats.from_json(orjson.loads(orjson.dumps(stats.to_json())))
    for metric in sorted(METRICS | {"sandbox_failure_rate", "queue_depth_max", "score_mean"}):
        expected = metric_value(metric, stats, stats)
        actual = metric_value(metric, again, again)
        assert actual[1] == expected[1], metric
        if expected[0] is None:
            assert actual[0] is None, metric
        else:
            assert actual[0] == pytest.approx(expected[0], rel=1e-9, abs=1e-12), metric
