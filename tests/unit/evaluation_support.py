"""Builders for evaluation records: a valid one as a plain dict, and a Hypothesis strategy."""

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st
from relctl.domain.evaluation import KEY_PATTERN
from relctl.domain.release import is_alias

from bench.builders import evaluation

# Re-exported: the unit tests import evaluation from here (it lives in bench.builders).
__all__ = ["evaluation", "json_values", "keys", "labels", "offsets", "records", "texts"]


keys = st.from_regex(KEY_PATTERN, fullmatch=True)
texts = st.text(max_size=20)
labels = st.dictionaries(texts, texts, max_size=3)
offsets = st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))


def _unit(high: float) -> st.SearchStrategy[float]:
    return st.floats(0, high, allow_nan=False)


records = st.fixed_dictionaries(
    {
        "tenant": keys, "task": keys, "call_id": st.text(min_size=1, max_size=200),
        "release": st.integers(1, 2**63 - 1), "prompt_hash": st.text(min_size=1, max_size=80),
        "model_provider": st.text(min_size=1, max_size=20),
        "model_version": st.text(min_size=1, max_size=40).filter(lambda v: not is_alias(v)),
        "temperature": _unit(2), "seed": st.integers(-(2**63), 2**63 - 1),
        "outcome": st.sampled_from(["ok", "llm_error", "timeout", "transcription_error"]),
        "latency_ms": st.floats(0, 1e9), "tokens": st.integers(0, 2**63 - 1),
        "cost_usd": st.floats(0, 1e6),
        "occurred_at": st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1),
                                    timezones=st.just(UTC) | offsets).map(datetime.isoformat),
    },
    optional={
        "release_id": texts, "prompt_version": texts, "blueprint_version_id": texts,
        "arm": st.sampled_from(["production", "shadow", "sandbox"]),
        "fallback_used": st.booleans(), "schema_valid": st.booleans(),
        "repaired": st.booleans(), "human_review_requested": st.booleans(),
        "confidence": _unit(1) | st.none(), "score": _unit(100) | st.none(),
        "category_scores": st.dictionaries(texts, st.floats(-1e6, 1e6), max_size=3),
        "categories": labels, "critical_detections": st.lists(texts, max_size=3),
        "queue_wait_ms": _unit(1e7), "queue_depth": st.integers(0, 10**6) | st.none(),
        "transcription_confidence": _unit(1) | st.none(),
        "human_score": _unit(100) | st.none(), "human_categories": labels | st.none(),
        "human_critical": st.lists(texts, max_size=3) | st.none(),
        "correlation_id": texts | st.none(), "validator_outcomes": labels,
    },
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=15), inner,
                                                                max_size=5),
    max_leaves=20,
)
