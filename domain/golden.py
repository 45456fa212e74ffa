"""Golden sets: versioned, immutable JSON Lines of calls with human QA labels.

A golden set is identified by the SHA-256 of its canonical rows (each row re-serialised with
sorted keys, rows in file order), so reformatting a file does not make a new version and
changing any label or transcript does. The rows are never mutated: a new content is a new
version. Gate bundles name the version they were computed on, and promotion asks for a bundle
on the *current* version.
"""

import hashlib
import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError
from relctl.domain.errors import ValidationError

GOLDEN_SET_REGISTERED_TYPE = "io.relctl.golden_set.registered.v1"
MAX_GOLDEN_ROWS = 100_000

Score = Annotated[float, Field(strict=True, ge=0, le=100)]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]


class Verdict(StrEnum):
    """A category's verdict; ordered so a regression is a move towards ``fail``."""

    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return 1 if self is Verdict.PASS else 0


class CategoryLabel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    score: Score
    verdict: Verdict


class HumanLabels(BaseModel):
    """What a human QA reviewer decided about one call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    total_score: Score
    categories: dict[Name, CategoryLabel] = Field(min_length=1)
    critical_detections: list[Name] = Field(default_factory=list)
    reviewer: str | None = None


class GoldenCall(BaseModel):
    """One call of a golden set: the transcript the model sees (after redaction) and the labels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    call_id: Name
    transcript: str = Field(min_length=1, max_length=200_000)
    tenant_segment: Name
    intent: Name
    risk_tags: list[Name] = Field(default_factory=list)
    labels: HumanLabels


class GoldenSetRef(BaseModel):
    """Which golden set (name) at which content (hash) and its registration order (version)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    version: int = Field(strict=True, ge=1)
    content_hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")


class GoldenSetRegistered(BaseModel):
    """Event payload: a golden set content was registered (the lead wires the aggregate).

    ``object_path`` is relative to the data directory's content-addressed store.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = GOLDEN_SET_REGISTERED_TYPE
    golden_set: GoldenSetRef
    rows: int = Field(strict=True, ge=1)
    segments: dict[str, int]
    critical_calls: int = Field(strict=True, ge=0)
    object_path: str
    registered_by: str = Field(min_length=1)
    reason: str = Field(min_length=1)


def canonical_row(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(canonical_rows: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for line in canonical_rows:
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()


def parse_golden_lines(lines: Iterable[str]) -> list[GoldenCall]:
    """Parse JSON Lines into calls; every bad line is reported with its line number."""
    calls: list[GoldenCall] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            call = GoldenCall.model_validate_json(line)
        except PydanticError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise ValidationError(
                f"golden set line {number}: {where or 'row'}: {first.get('msg')}") from None
        if call.call_id in seen:
            raise ValidationError(f"golden set line {number}: duplicate call_id {call.call_id!r}")
        seen.add(call.call_id)
        calls.append(call)
        if len(calls) > MAX_GOLDEN_ROWS:
            raise ValidationError(f"golden set has more than {MAX_GOLDEN_ROWS} rows")
    if not calls:
        raise ValidationError("golden set is empty")
    return calls


def golden_hash(calls: Iterable[GoldenCall]) -> str:
    return content_hash(canonical_row(call.model_dump(mode="json")) for call in calls)


def segment_counts(calls: Iterable[GoldenCall]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.tenant_segment] = counts.get(call.tenant_segment, 0) + 1
    return dict(sorted(counts.items()))
