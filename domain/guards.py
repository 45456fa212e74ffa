"""Guard rules attached to a rollout: what breaks it, how sure we must be, and what happens.

A rule states a *breach* condition (``llm_error_rate > 0.01``) over a window, with a minimum
number of samples and a for-duration, and a gate class that says what a breach does:
RollbackTrigger rolls back, Block freezes, Conditional pauses, Signal only alerts. Rules are
validated and stored when a rollout is planned; the live guard evaluates them.
"""

import math
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError
from relctl.domain.errors import ValidationError

# The actor automatic decisions are recorded under: fixed, so the command topic cannot be used
# to impersonate a person.
GUARD_ACTOR = "relctl-guard"
# The role the guard's automatic decisions act in (recorded in their events and audit rows).
GUARD_ROLE = "service"


class GateClass(StrEnum):
    """What a breach of the rule does; the values are the stored strings."""

    ROLLBACK_TRIGGER = "RollbackTrigger"
    BLOCK = "Block"
    CONDITIONAL = "Conditional"
    SIGNAL = "Signal"


class DecisionAction(StrEnum):
    """What the guard decides when a rule fails, weakest first."""

    ALERT = "alert"
    PAUSE = "pause"
    FREEZE = "freeze"
    ROLLBACK = "rollback"


class Comparator(StrEnum):
    """How the metric is compared with the threshold to state a breach."""

    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="


GATE_CLASSES: tuple[GateClass, ...] = tuple(GateClass)
GATE_ACTIONS: dict[GateClass, DecisionAction] = {
    GateClass.ROLLBACK_TRIGGER: DecisionAction.ROLLBACK, GateClass.BLOCK: DecisionAction.FREEZE,
    GateClass.CONDITIONAL: DecisionAction.PAUSE, GateClass.SIGNAL: DecisionAction.ALERT,
}
COMPARATORS: tuple[Comparator, ...] = tuple(Comparator)
# The plain values, as the error messages have always spelled them.
_GATE_VALUES = tuple(g.value for g in GateClass)
_COMPARATOR_VALUES = tuple(c.value for c in Comparator)

# Metrics a guard can watch (accuracy gates, pipeline metrics, trace fields). Rates are fractions.
RATE_METRICS = frozenset({
    "llm_error_rate", "transcription_error_rate", "fallback_rate", "human_review_rate",
    "schema_invalid_rate", "repair_rate", "category_agreement",
    "critical_false_positive_rate", "critical_false_negative_rate", "timeout_rate",
    "sandbox_failure_rate",
})
VALUE_METRICS = frozenset({
    "latency_p50_ms", "latency_p95_ms", "queue_wait_p95_ms", "tokens_per_eval", "cost_per_eval",
    "confidence_mean", "score_delta_baseline", "score_delta_shadow", "score_delta_human",
    "abs_score_delta_human", "evaluations_per_minute", "queue_depth_max",
})
METRICS = RATE_METRICS | VALUE_METRICS

RULE_FIELDS = ("name", "metric", "comparator", "threshold", "min_samples", "window_seconds",
               "for_seconds", "gate_class")
MAX_WINDOW_SECONDS = 7 * 24 * 3600
MAX_MIN_SAMPLES = 10**9


def _number(rule: dict[str, Any], key: str) -> float:
    value = rule.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"guard rule {rule.get('name')!r}: {key} must be a finite number")
    return float(value)


def _check_rule(rule: Any) -> dict[str, Any]:
    """The rule's checks, in the order (and with the messages) the API has always reported."""
    if not isinstance(rule, dict):
        raise ValidationError("each guard rule must be an object")
    unknown = sorted(set(rule) - set(RULE_FIELDS))
    if unknown:
        raise ValidationError(f"guard rule has unknown fields: {', '.join(unknown)}")
    name = rule.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("each guard rule needs a name")
    metric = rule.get("metric")
    if metric not in METRICS:
        raise ValidationError(
            f"guard rule {name!r}: unknown metric {metric!r}; known: {', '.join(sorted(METRICS))}"
        )
    if rule.get("comparator") not in _COMPARATOR_VALUES:
        raise ValidationError(
            f"guard rule {name!r}: comparator must be one of {_COMPARATOR_VALUES}")
    threshold = _number(rule, "threshold")
    if metric in RATE_METRICS and not 0 <= threshold <= 1:
        raise ValidationError(
            f"guard rule {name!r}: {metric} is a fraction between 0 and 1 (1% is 0.01)"
        )
    min_samples = rule.get("min_samples", 1)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) \
            or not 1 <= min_samples <= MAX_MIN_SAMPLES:
        raise ValidationError(
            f"guard rule {name!r}: min_samples must be an integer from 1 to {MAX_MIN_SAMPLES}")
    window = _number({**rule, "window_seconds": rule.get("window_seconds", 300)}, "window_seconds")
    if not 0 < window <= MAX_WINDOW_SECONDS:
        raise ValidationError(f"guard rule {name!r}: window_seconds must be in (0, 7 days]")
    for_seconds = _number({**rule, "for_seconds": rule.get("for_seconds", 0)}, "for_seconds")
    if not 0 <= for_seconds <= window:
        raise ValidationError(
            f"guard rule {name!r}: for_seconds must be between 0 and the window ({window:g}s)"
        )
    gate = rule.get("gate_class")
    if gate not in _GATE_VALUES:
        raise ValidationError(f"guard rule {name!r}: gate_class must be one of {_GATE_VALUES}")
    return {
        "name": name, "metric": metric, "comparator": rule["comparator"], "threshold": threshold,
        "min_samples": min_samples, "window_seconds": window, "for_seconds": for_seconds,
        "gate_class": gate,
    }


class GuardRule(BaseModel):
    """One validated guard rule: breach when ``metric comparator threshold`` holds over the
    window with at least ``min_samples`` samples, for ``for_seconds``; ``gate_class`` acts.

    Validation runs the same checks, with the same messages, as the aggregate always has; a
    refusal is a pydantic ``ValidationError`` (so FastAPI answers 422) whose ``msg`` is the
    message. The field constraints below are what the JSON schema shows.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, pattern=r"\S")]
    metric: Annotated[str, Field(json_schema_extra={"enum": sorted(METRICS)},
                                 description="rates are fractions: 1% is 0.01")]
    comparator: Comparator
    threshold: Annotated[float, Field(allow_inf_nan=False)]
    min_samples: Annotated[int, Field(ge=1, le=MAX_MIN_SAMPLES)] = 1
    window_seconds: Annotated[float, Field(gt=0, le=MAX_WINDOW_SECONDS,
                                           allow_inf_nan=False)] = 300.0
    for_seconds: Annotated[float, Field(ge=0, le=MAX_WINDOW_SECONDS, allow_inf_nan=False,
                                        description="at most window_seconds")] = 0.0
    gate_class: GateClass

    @model_validator(mode="before")
    @classmethod
    def _validate(cls, data: Any) -> Any:
        if isinstance(data, GuardRule):
            return data.model_dump()
        try:
            return _check_rule(data)
        except ValidationError as exc:
            raise PydanticCustomError("guard_rule", "{message}", {"message": str(exc)}) from None

    @classmethod
    def parse(cls, rule: Any) -> Self:
        """Validate ``rule``; a refusal is relctl's own ``ValidationError``."""
        try:
            return cls.model_validate(rule)
        except PydanticValidationError as exc:
            raise ValidationError(exc.errors()[0]["msg"]) from None


def normalize_rule(rule: Any) -> dict[str, Any]:
    """Validate one guard rule and return its canonical form (what the aggregate stores)."""
    return GuardRule.parse(rule).model_dump(mode="json")


def normalize_rules(rules: Any) -> list[dict[str, Any]]:
    if rules is None:
        return []
    if not isinstance(rules, list):
        raise ValidationError("guard_rules must be a list")
    normalized = [normalize_rule(rule) for rule in rules]
    names = [rule["name"] for rule in normalized]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValidationError(f"guard rule names must be unique: {', '.join(duplicates)}")
    return normalized
