"""Folding evidence rows column by column (WindowStats.add_many) equals adding them one by one,
and evidence travels between the stages as columns without changing a row."""

import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relctl.domain.dedup import Evidence
from relctl.domain.evaluation import EvaluationRecord
from relctl.domain.metrics import COUNTERS, SKETCHES, WindowStats
from relctl.streams.attribute import Partial

from tests.unit.evaluation_support import records

FLOATS = {"tokens", "cost", "confidence_sum", "score_sum", "human_delta_sum",
          "human_abs_delta_sum", "shadow_delta_sum"}


def _sketch_state(sketch: Any) -> tuple[Any, ...]:
    store = sketch._store
    return (store.bins, store.offset, store.min_key, store.max_key, store.count,
            sketch._negative_store.count, sketch._zero_count, sketch.count, sketch._min,
            sketch._max)


def _assert_same(mine: WindowStats, theirs: WindowStats) -> None:
    for name in COUNTERS:
        if name in FLOATS:
            assert math.isclose(getattr(mine, name), getattr(theirs, name), rel_tol=1e-9,
                                abs_tol=1e-6), name
        else:
            assert getattr(mine, name) == getattr(theirs, name), name
    assert mine.queue_depth_max == theirs.queue_depth_max
    for name in SKETCHES:
        assert _sketch_state(getattr(mine, name)) == _sketch_state(getattr(theirs, name)), name
        assert math.isclose(getattr(mine, name).sum, getattr(theirs, name).sum, rel_tol=1e-9,
                            abs_tol=1e-6)


@settings(max_examples=80, deadline=None)
@given(st.lists(records, min_size=1, max_size=25), st.booleans())
def test_column_fold_equals_one_by_one(items: list[dict[str, Any]], prefilled: bool) -> None:
    rows = [Evidence.of(EvaluationRecord.from_mapping(item)) for item in items]
    one_by_one, columns = WindowStats(), WindowStats()
    if prefilled:  # folding into stats that already hold something
        first = Evidence.of(EvaluationRecord.from_mapping(items[0]))
        one_by_one.add(first)
        columns.add(first)
    for row in rows:
        one_by_one.add(row)
    columns.add_many(rows)
    _assert_same(columns, one_by_one)
    for name in SKETCHES:
        for q in (0.0, 0.5, 0.95, 1.0):
            assert getattr(columns, name).get_quantile_value(q) == \
                getattr(one_by_one, name).get_quantile_value(q)


def test_an_empty_fold_changes_nothing() -> None:
    stats = WindowStats()
    stats.add_many([])
    assert stats.to_json() == WindowStats().to_json()


@settings(max_examples=40, deadline=None)
@given(st.lists(records, min_size=1, max_size=10))
def test_rows_cross_the_wire_as_columns_unchanged(items: list[dict[str, Any]]) -> None:
    partial = Partial("task|t")
    for item in items:
        row = Evidence.of(EvaluationRecord.from_mapping(item))
        partial.add(f"1|{row.arm}", 100, row)
    assert Partial.decode(partial.encode()).rows == partial.rows


def test_a_partial_from_an_earlier_worker_still_decodes() -> None:
    row = Evidence.of(EvaluationRecord.from_mapping(
        {"tenant": "acme", "task": "t", "call_id": "c", "release": 1, "prompt_hash": "h",
         "model_provider": "p", "model_version": "m-1", "temperature": 0.0, "seed": 1,
         "outcome": "ok", "latency_ms": 5.0, "tokens": 3, "cost_usd": 0.1, "score": 50.0,
         "occurred_at": "2026-11-21T10:00:00Z"}))
    old = Partial("task|t")
    old.add("1|production", 100, row)
    data = Partial.decode(old.encode())
    assert data.rows == old.rows
    wire = orjson.loads(old.encode())
    wire["rows"] = {"1|production": {"100": [row.encode()]}}
    del wire["columns"]
    assert Partial.decode(orjson.dumps(wire)).rows == old.rows
    wire["rows"] = {"1|production": {"100": [row.encode()[:-1]]}}
    with pytest.raises(ValueError, match="fields"):
        Partial.decode(orjson.dumps(wire))
