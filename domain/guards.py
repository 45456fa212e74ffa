"""Guard rules attached to a rollout: what breaks it, how sure we must be, and what happens.

A rule states a *breach* condition (``llm_error_rate > 0.01``) over a window, with a minimum
number of samples and a for-duration, and a gate class (seed 003) that says what a breach does:
RollbackTrigger rolls back, Block freezes, Conditional pauses, Signal only alerts. Rules are
validated and stored when a rollout is planned; the live guard evaluates them.
"""

import math
from typing import Any

from relctl.domain.errors import ValidationError

# The actor automatic decisions are recorded under: fixed, so the command topic cannot be used
# to impersonate a person.
GUARD_ACTOR = "relctl-guard"
GATE_CLASSES = ("RollbackTrigger", "Block", "Conditional", "Signal")
GATE_ACTIONS = {"RollbackTrigger": "rollback", "Block": "freeze", "Conditional": "pause",
                "Signal": "alert"}
COMPARATORS = (">", ">=", "<", "<=")

# Metrics a guard can watch (seed 002 §3.1, §4.1; seed 003 trace fields). Rates are fractions.
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


def normalize_rule(rule: Any) -> dict[str, Any]:
    """Validate one guard rule and return its canonical form."""
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
    if rule.get("comparator") not in COMPARATORS:
        raise ValidationError(f"guard rule {name!r}: comparator must be one of {COMPARATORS}")
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
    if gate not in GATE_CLASSES:
        raise ValidationError(f"guard rule {name!r}: gate_class must be one of {GATE_CLASSES}")
    return {
        "name": name, "metric": metric, "comparator": rule["comparator"], "threshold": threshold,
        "min_samples": min_samples, "window_seconds": window, "for_seconds": for_seconds,
        "gate_class": gate,
    }


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
