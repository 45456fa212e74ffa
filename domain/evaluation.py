"""The evaluation record: what a producer reports for every scored call.

It is the producer-facing contract of ``relctl.evaluations``: the stream workers attribute each
record to a release and tenant, window it and evaluate guards over it, so a record that is
accepted must carry everything a guard or an auditor needs and nothing it cannot check. Fields
are strict (a ``"12"`` is not a number, ``1`` is not ``true``, floats are finite) because a
lenient coercion here becomes a silently wrong metric downstream.
"""

import json
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

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
