"""Release: an immutable artifact that fully describes what scores a call for one task.

A prompt is versioned as an *artifact* (template, model, temperature, seed, schema, blueprint),
not a text snippet; the model identity is the concrete resolved version, never an alias; the
lifecycle is Draft -> InternalTest -> Beta -> Stable -> Deprecated. Content is
editable only while Draft, so anything that ever ran in front of a customer can be reproduced.
"""

import hashlib
import math
import re
from enum import StrEnum
from typing import Annotated, Any

import jsonschema
import orjson
from eventsourcing.domain import event
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from relctl.domain.base import (
    INT64,
    ControlAggregate,
    JsonObject,
    _name_ok,
    _text_ok,
    check_attribution,
    check_json,
    check_text,
)
from relctl.domain.errors import ConflictError, ValidationError
from relctl.domain.ids import check_key, release_id

# Names providers use for moving targets. A release must name what actually ran.
MODEL_ALIASES = frozenset({"latest", "default", "stable", "current", "preview", "auto", "newest"})


def prompt_hash(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_alias(model_version: str) -> bool:
    lowered = model_version.strip().lower()
    return lowered in MODEL_ALIASES or lowered.endswith(("-latest", ":latest", "@latest"))


class Stage(StrEnum):
    """A release's lifecycle stage; it only moves forward, and Deprecated is reachable always."""

    DRAFT = "Draft"
    INTERNAL_TEST = "InternalTest"
    BETA = "Beta"
    STABLE = "Stable"
    DEPRECATED = "Deprecated"


STAGES = tuple(stage.value for stage in Stage)
MAX_PROMPT_LENGTH = 200_000
MAX_FIELD_LENGTH = 200
MAX_LIMITATIONS = 100
# A JSON Schema a release carries: nested at most this deep, and at most this big as JSON.
MAX_SCHEMA_DEPTH = 32
MAX_SCHEMA_BYTES = 64 * 1024
BLUEPRINT_VERSION_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}@v[1-9][0-9]{0,8}$"

_Short = Annotated[str, Field(min_length=1, max_length=MAX_FIELD_LENGTH), AfterValidator(_name_ok)]


class TenantAction(StrEnum):
    """What a tenant admin should do when a release reaches them (for the release notes)."""

    RECALIBRATE_THRESHOLDS = "recalibrate-thresholds"
    REVALIDATE = "revalidate"
    NONE = "none"


_Note = Annotated[str, Field(max_length=2_000), AfterValidator(_text_ok)]


class ExpectedDelta(BaseModel):
    """A declared expected shift of one score statistic, e.g. ``score_mean`` +2.5 points."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    metric: _Short = Field(description="the statistic, e.g. score_mean, pass_rate, a stage")
    delta: Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)] = Field(
        description="expected change (new minus old), in ``unit``")
    unit: _Short | None = Field(None, description="e.g. points, percentage points")
    note: _Note | None = None


class ExpectedEffect(BaseModel):
    """What the release's author expects it to do to tenants' score distributions, and what
    tenants should do about it; read by the release notes."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    summary: _Note | None = Field(None, description="e.g. 'scores may shift up slightly'")
    deltas: Annotated[list[ExpectedDelta], Field(max_length=50)] = Field(default_factory=list)
    tenant_actions: Annotated[list[Annotated[TenantAction, Field(strict=False)]],
                              Field(max_length=3)] = Field(
        default_factory=list, description="default: derived from what changed")


class ReleaseSpec(BaseModel):
    """The content of a release, validated as a whole before any event is recorded.

    The field types are the contract (the API's schema and the published command schemas);
    ``validate`` holds the rules across fields, with messages a person can act on. Building a
    spec directly does not run those rules; ``from_dict`` and every command do.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    prompt_template: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_LENGTH),
                               AfterValidator(_text_ok)]
    model_provider: _Short
    model_name: _Short
    model_version: Annotated[_Short, Field(
        description="the concrete resolved version, never an alias such as 'latest'")]
    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)]
    seed: Annotated[int, Field(ge=INT64[0], le=INT64[1])]
    output_schema: Annotated[JsonObject, Field(
        description=f"a JSON Schema (checked as one), at most {MAX_SCHEMA_DEPTH} levels deep "
                    f"and {MAX_SCHEMA_BYTES} bytes as JSON")]
    output_schema_version: _Short
    blueprint_version_id: Annotated[str, Field(pattern=BLUEPRINT_VERSION_PATTERN)] | None = None
    model_alias: _Short | None = None
    alias_resolved_at: _Short | None = None
    retrieval: JsonObject = Field(default_factory=dict)
    known_limitations: Annotated[list[Annotated[str, Field(max_length=2_000),
                                                AfterValidator(_text_ok)]],
                                 Field(max_length=MAX_LIMITATIONS)] = Field(default_factory=list)
    release_notes: JsonObject = Field(default_factory=dict)
    expected_effect: ExpectedEffect | None = Field(
        None, description="declared expected shifts of score distributions (release notes)")

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)

    @classmethod
    def from_dict(cls, data: Any) -> "ReleaseSpec":
        if isinstance(data, ReleaseSpec):
            data = data.as_dict()
        if not isinstance(data, dict):
            raise ValidationError("a release spec is an object")
        allowed = set(cls.model_fields)
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValidationError(f"unknown release fields: {', '.join(map(str, unknown))}")
        required = [
            "prompt_template", "model_provider", "model_name", "model_version",
            "temperature", "seed", "output_schema", "output_schema_version",
        ]
        missing = [name for name in required if data.get(name) is None]
        if missing:
            raise ValidationError(f"release is missing required fields: {', '.join(missing)}")
        spec = cls.model_construct(**data)
        spec.validate()
        try:
            return cls.model_validate(data)
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ()))
            raise ValidationError(f"release spec {where}: {first.get('msg')}") from None

    def validate(self) -> None:  # type: ignore[override]  # noqa: PLR0912 - one flat list of rules
        if not isinstance(self.prompt_template, str) or not self.prompt_template.strip():
            raise ValidationError("prompt_template must be non-empty text")
        for name in ("model_provider", "model_name", "model_version", "output_schema_version"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValidationError(f"{name} must be a non-empty string")
        if is_alias(self.model_version):
            raise ValidationError(
                f"model_version {self.model_version!r} is an alias; give the concrete resolved "
                "version (e.g. 'gpt-4o-2024-08-06') and record the alias in model_alias "
                "with alias_resolved_at"
            )
        if self.model_alias is not None and not self.alias_resolved_at:
            raise ValidationError(
                "model_alias given without alias_resolved_at: record when the alias was "
                "resolved to model_version"
            )
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, int | float):
            raise ValidationError("temperature must be a number")
        if not math.isfinite(self.temperature) or not 0 <= self.temperature <= 2:
            raise ValidationError("temperature must be between 0 and 2")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValidationError("seed must be an integer (every evaluation records its seed)")
        if not isinstance(self.output_schema, dict) or not self.output_schema:
            raise ValidationError("output_schema must be a non-empty JSON Schema object")
        check_json(self.output_schema, "output_schema", MAX_SCHEMA_DEPTH)
        check_schema_shape(self.output_schema, "output_schema")
        check_json_schema(self.output_schema, "output_schema")
        if self.blueprint_version_id is not None and (
                not isinstance(self.blueprint_version_id, str)
                or not re.match(BLUEPRINT_VERSION_PATTERN, self.blueprint_version_id)):
            raise ValidationError(
                "blueprint_version_id must name a compiled version such as 'qa-default@v3'"
            )
        if not isinstance(self.retrieval, dict):
            raise ValidationError("retrieval must be an object")
        if not isinstance(self.known_limitations, list) or not all(
            isinstance(item, str) for item in self.known_limitations
        ):
            raise ValidationError("known_limitations must be a list of strings")
        if not isinstance(self.release_notes, dict):
            raise ValidationError("release_notes must be an object")
        check_text(self.prompt_template, "prompt_template", MAX_PROMPT_LENGTH, multiline=True)
        for name in ("model_provider", "model_name", "model_version", "output_schema_version",
                     "model_alias", "alias_resolved_at"):
            if getattr(self, name) is not None:
                check_text(getattr(self, name), name, MAX_FIELD_LENGTH)
        for name, value in self.as_dict().items():
            check_json(value, name)

    def as_dict(self) -> dict[str, Any]:
        """The stored form (a release's ``content``): every field, in declaration order, but
        ``expected_effect`` only when declared (content stored before it existed and content
        without one stay alike)."""
        content = {name: getattr(self, name) for name in self.fields()}
        effect = content.pop("expected_effect")
        if effect is not None:
            content["expected_effect"] = (effect.model_dump(mode="json")
                                          if isinstance(effect, BaseModel) else effect)
        return content


def check_json_schema(schema: dict[str, Any], where: str) -> None:
    """A JSON Schema a release carries must be one (Draft 2020-12 meta-schema), and bounded."""
    size = len(orjson.dumps(schema))
    if size > MAX_SCHEMA_BYTES:
        raise ValidationError(f"{where} is {size} bytes as JSON; the limit is {MAX_SCHEMA_BYTES}")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValidationError(f"{where} is not a valid JSON Schema at {path}: "
                              f"{exc.message[:300]}") from None


def check_schema_shape(schema: Any, where: str) -> None:
    """The parts of a JSON Schema relctl reads to classify changes must have JSON Schema's
    shapes: ``properties`` an object of schemas, ``required`` a list of names."""
    if not isinstance(schema, dict):
        raise ValidationError(f"{where} must be a JSON Schema object")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise ValidationError(f"{where}.properties must be an object of schemas")
    for key, value in properties.items():
        check_schema_shape(value, f"{where}.properties.{key}")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ValidationError(f"{where}.required must be a list of property names")
    if "items" in schema and isinstance(schema["items"], dict):
        check_schema_shape(schema["items"], f"{where}.items")


def schema_signature(schema: dict[str, Any]) -> dict[str, Any]:
    """Keys and types of an output schema: what downstream consumers depend on."""
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    return {
        "type": schema.get("type") if isinstance(schema, dict) else None,
        "properties": {
            key: (value.get("type"),
                  schema_signature(value) if value.get("properties") or value.get("items")
                  else None)
            for key, value in sorted(props.items())
            if isinstance(value, dict)
        },
        "required": sorted(schema.get("required", [])) if isinstance(schema, dict) else [],
        # array elements are read by consumers too: their keys and types count
        "items": (schema_signature(schema["items"])
                  if isinstance(schema, dict) and isinstance(schema.get("items"), dict) else None),
    }


class Release(ControlAggregate):
    """One numbered version of a task's scoring artifact (``number``; ``version`` is the
    aggregate's event count, used for optimistic concurrency)."""

    kind = "release"

    @staticmethod
    def create_id(task: str, number: int, **_: Any) -> Any:
        return release_id(task, number)

    @classmethod
    def draft(cls, task: str, number: int, spec: ReleaseSpec, actor: str, reason: str) -> "Release":
        check_key("task", task)
        check_attribution(actor, reason)
        spec.validate()
        return cls(
            task=task, number=number, content=spec.as_dict(),
            prompt_hash=prompt_hash(spec.prompt_template), actor=actor, reason=reason,
        )

    @event("Drafted")
    def __init__(
        self, task: str, number: int, content: dict[str, Any], prompt_hash: str,
        actor: str, reason: str,
    ) -> None:
        self.task = task
        self.number = number
        self.content = content
        self.prompt_hash = prompt_hash
        self.stage = "Draft"
        self.created_by = actor

    @property
    def spec(self) -> ReleaseSpec:
        # Stored content is read as it was stored, whatever rules were in force then.
        return ReleaseSpec.model_construct(**self.content)

    def revise(self, spec: ReleaseSpec, actor: str, reason: str) -> None:
        check_attribution(actor, reason)
        if self.stage != "Draft":
            raise ConflictError(
                f"release {self.task} v{self.number} is {self.stage}; content is frozen once it "
                "leaves Draft, so create a new version instead"
            )
        spec.validate()
        self._revised(content=spec.as_dict(), prompt_hash=prompt_hash(spec.prompt_template),
                      actor=actor, reason=reason)

    @event("Revised")
    def _revised(self, content: dict[str, Any], prompt_hash: str, actor: str, reason: str) -> None:
        self.content = content
        self.prompt_hash = prompt_hash

    def promote(self, stage: str, actor: str, reason: str) -> None:
        """Move forward through the lifecycle; Deprecated is reachable from any stage."""
        check_attribution(actor, reason)
        if stage not in STAGES:
            raise ValidationError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        current, target = STAGES.index(self.stage), STAGES.index(stage)
        if stage == "Deprecated" and self.stage != "Deprecated":
            pass
        elif target <= current:
            raise ConflictError(
                f"release {self.task} v{self.number} is {self.stage}; the lifecycle only moves "
                f"forward ({' -> '.join(STAGES)})"
            )
        self._stage_changed(from_stage=self.stage, to_stage=stage, actor=actor, reason=reason)

    @event("StageChanged")
    def _stage_changed(self, from_stage: str, to_stage: str, actor: str, reason: str) -> None:
        self.stage = to_stage

    # ---- release gates ---------------------------------------------------------------------

    @property
    def display_id(self) -> str:
        """How gate bundles name this release: ``<task>@<number>``."""
        return f"{self.task}@{self.number}"

    @property
    def gate_bundles(self) -> list[dict[str, Any]]:
        """What each recorded ``GateEvaluated`` decides with (oldest first)."""
        return list(getattr(self, "_gate_bundles", []))

    def record_gate_evaluation(self, evaluation: dict[str, Any], actor: str, reason: str,
                               role: str) -> None:
        """Record a gate bundle computed for this release (``GateEvaluated`` payload as JSON,
        checked by the caller against :class:`relctl.domain.gates.GateEvaluated`)."""
        check_attribution(actor, reason)
        if evaluation.get("release_id") != self.display_id:
            raise ValidationError(f"the bundle is of release {evaluation.get('release_id')}, "
                                  f"not {self.display_id}")
        if any(b["bundle_id"] == evaluation["bundle_id"] for b in self.gate_bundles):
            raise ConflictError(f"bundle {evaluation['bundle_id']} is already recorded on "
                                f"{self.display_id}")
        check_json(evaluation, "gate evaluation")
        verdicts = {r["gate"]["name"]: r["outcome"] for r in evaluation["results"]}
        self._gate_evaluated(bundle_id=evaluation["bundle_id"],
                             golden_set=evaluation["golden_set"], verdicts=verdicts,
                             evidence=evaluation, actor=actor, reason=reason, role=role)

    @event("GateEvaluated")
    def _gate_evaluated(self, bundle_id: str, golden_set: dict[str, Any], verdicts: dict[str, str],
                        evidence: dict[str, Any], actor: str, reason: str, role: str) -> None:
        """``evidence`` is the whole ``GateEvaluated`` payload: golden set, runner
        configuration, every metric of both arms, each gate's result, report path and hash."""
        if not hasattr(self, "_gate_bundles"):
            self._gate_bundles: list[dict[str, Any]] = []
        summary = {key: value for key, value in evidence.items()
                   if key not in ("candidate_metrics", "baseline_metrics", "runner")}
        self._gate_bundles.append(summary)

    def record_gate_passage(self, passage: dict[str, Any], actor: str, reason: str,
                            role: str) -> None:
        """Record why this release may take a gated step (pass InternalTest, start a rollout):
        gates passed, conditional gates acknowledged, an admin's break-glass, or an ungated
        task. Saved with the step's own event, so no gated step exists without one."""
        check_attribution(actor, reason)
        check_json(passage, "gate passage")
        evidence = {key: value for key, value in passage.items() if key not in ("step", "basis")}
        self._gate_passed(step=passage["step"], basis=passage["basis"], evidence=evidence,
                          actor=actor, reason=reason, role=role)

    @event("GatePassed")
    def _gate_passed(self, step: str, basis: str, evidence: dict[str, Any], actor: str,
                     reason: str, role: str) -> None:
        """``evidence``: golden set, deciding bundle, acknowledgements, break-glass (actor,
        role, reason) and the gates it overrode, signals; the audit trail shows it as is."""

    def summary(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "kind": self.kind, "task": self.task, "number": self.number,
            "stage": self.stage, "prompt_hash": self.prompt_hash, "content": self.content,
            "created_by": self.created_by, "aggregate_version": self.version,
        }
