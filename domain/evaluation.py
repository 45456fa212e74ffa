"""The evaluation record: what a producer reports for every scored call.

It is the producer-facing contract of ``relctl.evaluations``: the stream workers attribute each
record to a release and tenant, window it and evaluate guards over it, so a record that is
accepted must carry everything a guard or an auditor needs and nothing it cannot check. Fields
are strict (a ``"12"`` is not a number, ``1`` is not ``true``, floats are finite) because a
lenient coercion here becomes a silently wrong metric downstream.
"""

import json
import re
import sys
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    field_validator,
)
from relctl.domain.release import is_alias

EVALUATION_TYPE = "io.relctl.evaluation.recorded.v1"
EVALUATION_SCHEMA_ID = f"urn:relctl:schema:{EVALUATION_TYPE}"

# Bounds on what one producer call may hand us: a record is a few hundred bytes to a few KiB;
# anything near these limits is a bug (a transcript pasted into a field), not an evaluation.
MAX_RECORD_BYTES = 64 * 1024
MAX_BATCH_RECORDS = 1000
MAX_BATCH_BYTES = 4 * 1024 * 1024

KEY_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"

# Integers are bounded to 64 bits: every consumer (orjson, Java, Go) must be able to read them.
INT64_MAX = 2**63 - 1

Key = Annotated[str, Field(pattern=KEY_PATTERN)]
Text = Annotated[str, Field(min_length=1)]
Count = Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]
NonNegative = Annotated[float, Field(strict=True, ge=0)]
Fraction = Annotated[float, Field(strict=True, ge=0, le=1)]
Percent = Annotated[float, Field(strict=True, ge=0, le=100)]


class EvaluationRecord(BaseModel):
    """One scored call, stamped with the exact release that scored it.

    - Attribution (``tenant``, ``task``, ``call_id``, ``release``, ``arm``): which release and
      rollout arm produced the score, so guards compare candidate with baseline per tenant
      cohort; ``tenant:call_id:arm`` is the record's identity for de-duplication.
    - What ran (``prompt_version``, ``prompt_hash``, ``model_provider``, ``model_version``,
      ``temperature``, ``seed``, ``blueprint_version_id``): what every evaluation must record,
      with the *concrete* model identity (an alias such as ``latest`` is refused: it logs a
      rumour, not a version) and the prompt hash.
    - Outcome and trust (``outcome``, ``fallback_used``, ``schema_valid``, ``repaired``,
      ``validator_outcomes``, ``human_review_requested``, ``confidence``): the pipeline's model
      errors, fallback rate, confidence distribution and human review rate; the schema
      validation result, repair/coercion events and validator outcomes.
    - Scores (``score``, ``category_scores``, ``categories``, ``critical_detections``) and the
      human reference (``human_*``): score deltas against baseline, shadow and human review.
    - Cost and load (``latency_ms``, ``tokens``, ``cost_usd``, ``queue_wait_ms``,
      ``queue_depth``, ``transcription_confidence``): latency percentiles, tokens used, cost
      per run, queue depth and wait time, transcription confidence.
    - ``correlation_id`` joins worker logs; ``occurred_at`` must carry a
      timezone, because windows and "what ran at time X" are comparisons of instants.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    tenant: Key
    task: Key
    call_id: str = Field(min_length=1, max_length=200)
    release: int = Field(strict=True, ge=1, le=INT64_MAX,
                         description="the release number actually run")
    release_id: str | None = None

    prompt_version: str | None = None
    prompt_hash: Text
    model_provider: Text
    model_version: Text = Field(description="the concrete model version; aliases are refused")
    temperature: float = Field(strict=True, ge=0, le=2)
    seed: int = Field(strict=True, ge=-INT64_MAX - 1, le=INT64_MAX)
    blueprint_version_id: str | None = None

    arm: Literal["production", "shadow", "sandbox"] = "production"
    outcome: Literal["ok", "llm_error", "timeout", "transcription_error"]
    fallback_used: StrictBool = False
    schema_valid: StrictBool = True
    repaired: StrictBool = False
    human_review_requested: StrictBool = False

    confidence: Fraction | None = None
    score: Percent | None = None
    category_scores: dict[str, StrictFloat] = Field(default_factory=dict)
    categories: dict[str, str] = Field(default_factory=dict,
                                       description="label per category")
    critical_detections: list[str] = Field(default_factory=list)

    latency_ms: NonNegative
    tokens: Count
    cost_usd: NonNegative
    queue_wait_ms: NonNegative = 0.0
    queue_depth: Count | None = None
    transcription_confidence: Fraction | None = None

    human_score: Percent | None = None
    human_categories: dict[str, str] | None = None
    human_critical: list[str] | None = None

    correlation_id: str | None = None
    validator_outcomes: dict[str, str] = Field(default_factory=dict)
    # Strict: in JSON only an ISO 8601 string is a timestamp (a bare number would be read as
    # Unix time); AwareDatetime refuses one without an offset. Both checks run in pydantic-core,
    # which matters at hundreds of thousands of records per second.
    occurred_at: Annotated[AwareDatetime, Field(
        strict=True, description="when the call was scored (ISO 8601 with offset)")]

    @field_validator("model_version")
    @classmethod
    def _concrete_model(cls, value: str) -> str:
        if is_alias(value):
            raise ValueError(f"{value!r} is an alias; record the concrete model version "
                             "that actually ran (e.g. gpt-4o-2024-08-06)")
        return value

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "EvaluationRecord":
        """Validate a mapping with the wire format's rules (it is what a producer would send:
        datetimes become ISO 8601 text). Raises pydantic's ValidationError."""
        # The standard library keeps what orjson cannot say faithfully (NaN and infinities,
        # which orjson writes as null; integers beyond 64 bits), so the schema refuses them.
        text = json.dumps(dict(data), default=_jsonable).encode()
        return cls.model_validate_json(text)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else str(value)


def evaluation_json_schema() -> dict[str, Any]:
    """JSON Schema of the record (the ``data`` of an ``io.relctl.evaluation.recorded.v1``)."""
    schema = EvaluationRecord.model_json_schema()
    schema["$id"] = EVALUATION_SCHEMA_ID
    schema["description"] = ("one scored call, reported by a producer on relctl.evaluations "
                             f"(CloudEvents type {EVALUATION_TYPE})")
    return schema


# ---- the worker's hot path: the same contract, compiled by msgspec --------------------------
#
# pydantic's EvaluationRecord is the contract. The guard worker decodes hundreds of thousands of
# records a second, and building a pydantic model per record was most of its time, so it
# decodes batches into DecodedEvaluation (a msgspec Struct with the same fields and limits)
# instead. The rule that keeps the two in step: the fast decoder may be *stricter* than the
# contract, never more lenient. Whatever it does not accept is decoded again by pydantic, so
# where they disagree the contract decides (tests/unit/test_fast_decode.py checks, with
# Hypothesis, that every input the fast decoder accepts the contract accepts with equal values).

_FLOAT_MAX = sys.float_info.max
# Python's re (which msgspec uses) lets "$" match before a trailing newline; pydantic-core's
# regex does not. \Z is the end of the string in both senses.
_KEY = Annotated[str, msgspec.Meta(pattern=r"\A[a-z0-9][a-z0-9._-]{0,62}\Z")]
_TEXT = Annotated[str, msgspec.Meta(min_length=1)]
_COUNT = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
_FINITE = Annotated[float, msgspec.Meta(ge=-_FLOAT_MAX, le=_FLOAT_MAX)]
_NON_NEGATIVE = Annotated[float, msgspec.Meta(ge=0, le=_FLOAT_MAX)]
_FRACTION = Annotated[float, msgspec.Meta(ge=0, le=1)]
_PERCENT = Annotated[float, msgspec.Meta(ge=0, le=100)]
# The one timestamp form the fast path reads itself (what every bundled producer writes);
# anything else pydantic-core reads, with its own rules.
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)\Z")

class _Instant(datetime):
    """``occurred_at`` on the fast path: msgspec hands its JSON value to
    :func:`_decode_instant` (a datetime in every other respect)."""


def _decode_instant(kind: type, value: Any) -> Any:
    if kind is not _Instant:
        raise NotImplementedError(kind)
    if not isinstance(value, str) or _TIMESTAMP.match(value) is None:
        raise ValueError("not a timestamp the fast path reads")
    return _Instant.fromisoformat(value)  # ValueError for impossible dates: pydantic decides


class DecodedEvaluation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An EvaluationRecord as the guard worker decodes it: same fields, defaults and limits
    (see the note above); read by attribute, exactly like the pydantic model."""

    tenant: _KEY
    task: _KEY
    call_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    release: Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX)]
    prompt_hash: _TEXT
    model_provider: _TEXT
    model_version: _TEXT
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)]
    seed: Annotated[int, msgspec.Meta(ge=-INT64_MAX - 1, le=INT64_MAX)]
    outcome: Literal["ok", "llm_error", "timeout", "transcription_error"]
    latency_ms: _NON_NEGATIVE
    tokens: _COUNT
    cost_usd: _NON_NEGATIVE
    occurred_at: _Instant
    release_id: str | None = None
    prompt_version: str | None = None
    blueprint_version_id: str | None = None
    arm: Literal["production", "shadow", "sandbox"] = "production"
    fallback_used: bool = False
    schema_valid: bool = True
    repaired: bool = False
    human_review_requested: bool = False
    confidence: _FRACTION | None = None
    score: _PERCENT | None = None
    category_scores: dict[str, _FINITE] = msgspec.field(default_factory=dict)
    categories: dict[str, str] = msgspec.field(default_factory=dict)
    critical_detections: list[str] = msgspec.field(default_factory=list)
    queue_wait_ms: _NON_NEGATIVE = 0.0
    queue_depth: _COUNT | None = None
    transcription_confidence: _FRACTION | None = None
    human_score: _PERCENT | None = None
    human_categories: dict[str, str] | None = None
    human_critical: list[str] | None = None
    correlation_id: str | None = None
    validator_outcomes: dict[str, str] = msgspec.field(default_factory=dict)

    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        """The record as the pydantic model would dump it (for re-encoding)."""
        data = msgspec.structs.asdict(self)
        data["occurred_at"] = self.occurred_at.isoformat() if mode == "json" else \
            self.occurred_at
        return data


class _Envelope(msgspec.Struct):
    """A structured-mode CloudEvent of an evaluation (other attributes are not read)."""

    specversion: Literal["1.0"]
    type: Literal["io.relctl.evaluation.recorded.v1"]
    data: DecodedEvaluation


# A batch item's limit is on its compact re-encoding, which can be longer than the bytes sent
# (a 3-byte "1e9" is re-encoded as "1000000000.0"; no JSON token grows more than 8-fold), so
# the fast path takes only items an eighth of the limit: real records are ~1 KiB.
_FAST_ITEM_BYTES = MAX_RECORD_BYTES // 8
_ENVELOPES = msgspec.json.Decoder(list[_Envelope], dec_hook=_decode_instant)
_RECORDS = msgspec.json.Decoder(list[DecodedEvaluation], dec_hook=_decode_instant)
_RECORD = msgspec.json.Decoder(DecodedEvaluation, dec_hook=_decode_instant)
_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
_CONCRETE: dict[str, bool] = {}


def _concrete(records: list[DecodedEvaluation]) -> bool:
    """No record names a model alias (memoised: a stream names a handful of models)."""
    for record in records:
        known = _CONCRETE.get(record.model_version)
        if known is None:
            if len(_CONCRETE) > 4096:
                _CONCRETE.clear()
            known = _CONCRETE[record.model_version] = not is_alias(record.model_version)
        if not known:
            return False
    return True


def decode_fast(value: bytes, *, envelopes: bool | None) -> list[DecodedEvaluation] | None:
    """Every record of ``value`` if the fast path accepts all of it, else None (then the
    contract's decoder decides, and explains what it refuses).

    ``envelopes``: True for a CloudEvents batch, False for a plain JSON array, None for one
    plain record. A batch qualifies only whole: at most MAX_BATCH_RECORDS items, each at
    most _FAST_ITEM_BYTES as sent, every one valid."""
    try:
        if envelopes is None:
            if len(value) > MAX_RECORD_BYTES:
                return None
            records = [_RECORD.decode(value)]
        else:
            if len(value) > _FAST_ITEM_BYTES:
                items = _ITEMS.decode(value)
                if len(items) > MAX_BATCH_RECORDS or any(
                        len(item) > _FAST_ITEM_BYTES for item in items):
                    return None
            if envelopes:
                records = [event.data for event in _ENVELOPES.decode(value)]
            else:
                records = _RECORDS.decode(value)
            if len(records) > MAX_BATCH_RECORDS:
                return None
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError):
        return None
    return records if _concrete(records) else None
