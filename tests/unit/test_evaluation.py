"""The evaluation record: every field rule of the producer contract, and its JSON Schema."""

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from pydantic import ValidationError
from relctl.domain.evaluation import (
    EVALUATION_TYPE,
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    MAX_RECORD_BYTES,
    EvaluationRecord,
    evaluation_json_schema,
)

from tests.unit.evaluation_support import evaluation, records

FIELDS = [
    "tenant", "task", "call_id", "release", "release_id", "prompt_version", "prompt_hash",
    "model_provider", "model_version", "temperature", "seed", "blueprint_version_id", "arm",
    "outcome", "fallback_used", "schema_valid", "repaired", "human_review_requested",
    "confidence", "score", "category_scores", "categories", "critical_detections", "latency_ms",
    "tokens", "cost_usd", "queue_wait_ms", "queue_depth", "transcription_confidence",
    "human_score", "human_categories", "human_critical", "correlation_id",
    "validator_outcomes", "occurred_at",
]
REQUIRED = ["tenant", "task", "call_id", "release", "prompt_hash", "model_provider",
            "model_version", "temperature", "seed", "outcome", "latency_ms", "tokens",
            "cost_usd", "occurred_at"]


def errors_of(**changes: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        EvaluationRecord.from_mapping(evaluation(**changes))
    return [(".".join(str(x) for x in e["loc"]), e["msg"]) for e in caught.value.errors()]


def test_field_names_are_the_contract() -> None:
    assert list(EvaluationRecord.model_fields) == FIELDS
    assert [n for n, f in EvaluationRecord.model_fields.items() if f.is_required()] == REQUIRED


def test_a_minimal_record_gets_its_defaults() -> None:
    record = EvaluationRecord.from_mapping({k: evaluation()[k] for k in REQUIRED})
    assert record.arm == "production"
    assert (record.fallback_used, record.schema_valid, record.repaired,
            record.human_review_requested) == (False, True, False, False)
    assert record.queue_wait_ms == 0.0
    assert record.category_scores == {} and record.critical_detections == []
    assert record.human_score is record.human_categories is record.human_critical is None
    assert record.occurred_at == datetime(2026, 11, 21, 10, tzinfo=UTC)


def test_limits() -> None:
    assert (MAX_RECORD_BYTES, MAX_BATCH_RECORDS, MAX_BATCH_BYTES) == (65536, 1000, 4194304)
    assert EVALUATION_TYPE == "io.relctl.evaluation.recorded.v1"


@pytest.mark.parametrize("name", REQUIRED)
def test_every_required_field_is_required(name: str) -> None:
    assert (name, "Field required") in errors_of(**{name: ...})


def test_unknown_fields_are_refused() -> None:
    assert errors_of(model="gpt-4o") == [("model", "Extra inputs are not permitted")]


def test_records_are_frozen() -> None:
    record = EvaluationRecord.from_mapping(evaluation())
    with pytest.raises(ValidationError, match="frozen"):
        record.score = 10.0  # type: ignore[misc]


@pytest.mark.parametrize("alias", ["latest", "LATEST", " stable ", "default", "gpt-4o-latest",
                                   "claude:latest", "model@latest", "preview", "auto"])
def test_model_aliases_are_refused(alias: str) -> None:
    [(where, message)] = errors_of(model_version=alias)
    assert where == "model_version" and "alias" in message and "concrete" in message


@pytest.mark.parametrize("moment", ["2026-11-21T10:00:00", "2026-11-21 10:00:00",
                                    datetime(2026, 11, 21, 10)])
def test_naive_timestamps_are_refused(moment: Any) -> None:
    [(where, message)] = errors_of(occurred_at=moment)
    assert where == "occurred_at" and "timezone" in message


@pytest.mark.parametrize("moment", [1763719200, 1763719200.5, True, None, "yesterday", ""])
def test_timestamps_must_be_iso_text(moment: Any) -> None:
    assert [w for w, _ in errors_of(occurred_at=moment)] == ["occurred_at"]


def test_timestamps_keep_their_offset() -> None:
    record = EvaluationRecord.from_mapping(evaluation(occurred_at="2026-11-21T12:00:00+02:00"))
    assert record.occurred_at == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert record.occurred_at.utcoffset() == timedelta(hours=2)
    aware = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert EvaluationRecord.from_mapping(evaluation(occurred_at=aware)).occurred_at == aware


BAD_VALUES: list[tuple[str, Any]] = [
    ("tenant", "Acme"), ("tenant", ""), ("tenant", "-acme"), ("tenant", "a" * 64),
    ("tenant", "acme\n"), ("tenant", "ac me"), ("tenant", 7), ("task", "CSAT"), ("task", None),
    ("call_id", ""), ("call_id", "x" * 201), ("call_id", 12),
    ("release", 0), ("release", -1), ("release", "1"), ("release", 1.0), ("release", True),
    ("release", 2**63), ("release_id", 3),
    ("prompt_hash", ""), ("prompt_version", 3), ("model_provider", ""), ("model_version", ""),
    ("temperature", -0.01), ("temperature", 2.01), ("temperature", "0.5"),
    ("temperature", float("nan")), ("temperature", float("inf")), ("temperature", None),
    ("seed", 1.5), ("seed", "7"), ("seed", True), ("seed", 2**63), ("seed", -(2**63) - 1),
    ("blueprint_version_id", 4),
    ("arm", "canary"), ("arm", None), ("outcome", "error"), ("outcome", "OK"),
    ("fallback_used", 1), ("fallback_used", "true"), ("schema_valid", 0),
    ("repaired", "no"), ("human_review_requested", None),
    ("confidence", 1.01), ("confidence", -0.01), ("confidence", "high"),
    ("score", 100.01), ("score", -1), ("score", float("inf")),
    ("category_scores", {"greeting": "high"}), ("category_scores", {"greeting": True}),
    ("category_scores", {"greeting": float("nan")}), ("category_scores", [1.0]),
    ("categories", {"greeting": 1}), ("critical_detections", "abuse"),
    ("critical_detections", [1]),
    ("latency_ms", -1), ("latency_ms", "fast"), ("latency_ms", None),
    ("tokens", -1), ("tokens", 1.5), ("tokens", "1800"), ("cost_usd", -0.01),
    ("queue_wait_ms", -0.5), ("queue_depth", -1), ("queue_depth", 2.0),
    ("transcription_confidence", 1.5), ("transcription_confidence", -0.1),
    ("human_score", 101), ("human_score", -0.5), ("human_categories", {"a": 2}),
    ("human_categories", ["a"]), ("human_critical", [1]), ("human_critical", "abuse"),
    ("correlation_id", 5), ("validator_outcomes", {"schema": True}),
    ("validator_outcomes", ["pass"]),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_bad_values_are_refused_at_their_field(name: str, value: Any) -> None:
    assert {where.split(".")[0] for where, _ in errors_of(**{name: value})} == {name}


GOOD_VALUES: list[tuple[str, Any]] = [
    ("tenant", "a"), ("tenant", "a" * 63), ("tenant", "acme.eu_west-1"), ("task", "0"),
    ("call_id", "x" * 200), ("call_id", "Call 1 / é"), ("release", 2**63 - 1),
    ("release_id", "8c3e..."), ("temperature", 0), ("temperature", 2), ("seed", -5),
    ("model_version", "claude-3-5-sonnet-20241022"), ("model_version", "latest-2024-01"),
    ("arm", "shadow"), ("arm", "sandbox"), ("outcome", "transcription_error"),
    ("confidence", 0), ("confidence", 1), ("score", 0), ("score", 100), ("score", None),
    ("category_scores", {"a": -3}), ("latency_ms", 0), ("tokens", 0), ("cost_usd", 0),
    ("queue_depth", 0), ("transcription_confidence", 1), ("human_score", 100),
    ("human_categories", {}), ("human_critical", []), ("critical_detections", ["abuse"]),
]


@pytest.mark.parametrize(("name", "value"), GOOD_VALUES)
def test_boundary_values_are_accepted(name: str, value: Any) -> None:
    record = EvaluationRecord.from_mapping(evaluation(**{name: value}))
    assert getattr(record, name) == value


def test_integers_are_accepted_where_numbers_are_expected() -> None:
    record = EvaluationRecord.from_mapping(evaluation(latency_ms=10, cost_usd=0, score=50))
    assert record.latency_ms == 10.0 and isinstance(record.latency_ms, float)


def test_json_and_python_input_agree() -> None:
    good = evaluation(occurred_at="2026-11-21T10:00:00.250+05:30")
    assert (EvaluationRecord.model_validate_json(orjson.dumps(good))
            == EvaluationRecord.from_mapping(good))
    checked = 0
    for name, value in BAD_VALUES:
        try:
            payload = json.dumps(evaluation(**{name: value}), allow_nan=False, default=str)
        except ValueError:
            continue  # NaN and infinities have no JSON form
        with pytest.raises(ValidationError):
            EvaluationRecord.model_validate_json(payload)
        checked += 1
    assert checked > len(BAD_VALUES) - 6


def test_json_schema() -> None:
    schema = evaluation_json_schema()
    assert schema["$id"] == "urn:relctl:schema:io.relctl.evaluation.recorded.v1"
    assert schema["additionalProperties"] is False
    assert list(schema["properties"]) == FIELDS
    assert sorted(schema["required"]) == sorted(REQUIRED)
    assert schema["properties"]["occurred_at"]["format"] == "date-time"
    assert schema["properties"]["tenant"]["pattern"] == "^[a-z0-9][a-z0-9._-]{0,62}$"
    assert schema["properties"]["arm"]["enum"] == ["production", "shadow", "sandbox"]


@settings(max_examples=150, deadline=None)
@given(records)
def test_any_conforming_record_is_accepted_and_survives_json(data: dict[str, Any]) -> None:
    record = EvaluationRecord.from_mapping(data)
    again = EvaluationRecord.model_validate_json(record.model_dump_json())
    assert again == record
    assert again.occurred_at.utcoffset() == record.occurred_at.utcoffset()
