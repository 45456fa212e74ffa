"""Guard rules: every validation rule of a rollout's breach conditions."""

import math
from typing import Any

import pytest
from pydantic import ValidationError as PydanticValidationError
from relctl.domain.errors import ValidationError
from relctl.domain.guards import (
    COMPARATORS,
    GATE_ACTIONS,
    GATE_CLASSES,
    MAX_WINDOW_SECONDS,
    METRICS,
    RATE_METRICS,
    VALUE_METRICS,
    Comparator,
    DecisionAction,
    GateClass,
    GuardRule,
    normalize_rule,
    normalize_rules,
)


def rule(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "errors", "metric": "llm_error_rate", "comparator": ">",
                            "threshold": 0.01, "gate_class": "RollbackTrigger"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not ...}


def test_defaults_are_filled_in() -> None:
    assert normalize_rule(rule()) == {
        "name": "errors", "metric": "llm_error_rate", "comparator": ">", "threshold": 0.01,
        "min_samples": 1, "window_seconds": 300.0, "for_seconds": 0.0,
        "gate_class": "RollbackTrigger",
    }


def test_full_rule_is_kept() -> None:
    full = rule(name="p95", metric="latency_p95_ms", comparator=">=", threshold=2500,
                min_samples=50, window_seconds=600, for_seconds=120, gate_class="Block")
    assert normalize_rule(full) == {**full, "threshold": 2500.0, "window_seconds": 600.0,
                                    "for_seconds": 120.0}


def test_gate_classes_map_to_actions() -> None:
    assert GATE_CLASSES == ("RollbackTrigger", "Block", "Conditional", "Signal")
    assert GATE_ACTIONS == {"RollbackTrigger": "rollback", "Block": "freeze",
                            "Conditional": "pause", "Signal": "alert"}


@pytest.mark.parametrize("gate", GATE_CLASSES)
def test_every_gate_class_is_accepted(gate: str) -> None:
    assert normalize_rule(rule(gate_class=gate))["gate_class"] == gate


@pytest.mark.parametrize("gate", ["Rollback", "rollbacktrigger", "", None, ...])
def test_unknown_gate_class_is_refused(gate: Any) -> None:
    with pytest.raises(ValidationError, match="gate_class must be one of"):
        normalize_rule(rule(gate_class=gate))


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_every_known_metric_is_accepted(metric: str) -> None:
    assert normalize_rule(rule(metric=metric, threshold=0.5))["metric"] == metric


@pytest.mark.parametrize("metric", ["error_rate", "LLM_ERROR_RATE", "", None, ...])
def test_unknown_metric_is_refused(metric: Any) -> None:
    with pytest.raises(ValidationError, match="unknown metric"):
        normalize_rule(rule(metric=metric))


@pytest.mark.parametrize("comparator", [">", ">=", "<", "<="])
def test_comparators(comparator: str) -> None:
    assert normalize_rule(rule(comparator=comparator))["comparator"] == comparator


@pytest.mark.parametrize("comparator", ["==", "!=", "gt", "=>", "", None, ...])
def test_unknown_comparator_is_refused(comparator: Any) -> None:
    with pytest.raises(ValidationError, match="comparator must be one of"):
        normalize_rule(rule(comparator=comparator))


@pytest.mark.parametrize("metric", sorted(RATE_METRICS))
@pytest.mark.parametrize("threshold", [0, 0.0, 0.5, 1, 1.0])
def test_rate_thresholds_inside_0_1(metric: str, threshold: float) -> None:
    assert normalize_rule(rule(metric=metric, threshold=threshold))["threshold"] == threshold


@pytest.mark.parametrize("metric", sorted(RATE_METRICS))
@pytest.mark.parametrize("threshold", [-0.001, 1.001, 5, 100])
def test_rate_thresholds_outside_0_1_are_refused(metric: str, threshold: float) -> None:
    with pytest.raises(ValidationError, match=r"is a fraction between 0 and 1 \(1% is 0\.01\)"):
        normalize_rule(rule(metric=metric, threshold=threshold))


@pytest.mark.parametrize("metric", sorted(VALUE_METRICS))
def test_value_metrics_take_any_finite_threshold(metric: str) -> None:
    for threshold in (-5, 0, 2500, 1e6):
        assert normalize_rule(rule(metric=metric, threshold=threshold))["threshold"] == threshold


@pytest.mark.parametrize("threshold", [math.nan, math.inf, -math.inf, True, "0.01", None, ...])
def test_threshold_must_be_a_finite_number(threshold: Any) -> None:
    with pytest.raises(ValidationError, match="threshold must be a finite number"):
        normalize_rule(rule(metric="latency_p95_ms", threshold=threshold))


@pytest.mark.parametrize("min_samples", [1, 2, 1000])
def test_min_samples_accepted(min_samples: int) -> None:
    assert normalize_rule(rule(min_samples=min_samples))["min_samples"] == min_samples


@pytest.mark.parametrize("min_samples", [0, -1, 1.5, 2.0, True, "10", None, 10**9 + 1, 2**70])
def test_min_samples_must_be_an_integer_at_least_1(min_samples: Any) -> None:
    with pytest.raises(ValidationError, match="min_samples must be an integer from 1 to"):
        normalize_rule(rule(min_samples=min_samples))


@pytest.mark.parametrize("window", [0.5, 1, 300, MAX_WINDOW_SECONDS])
def test_window_accepted(window: float) -> None:
    assert normalize_rule(rule(window_seconds=window))["window_seconds"] == window


@pytest.mark.parametrize("window", [0, -1, MAX_WINDOW_SECONDS + 1])
def test_window_must_be_within_7_days(window: float) -> None:
    with pytest.raises(ValidationError, match=r"window_seconds must be in \(0, 7 days\]"):
        normalize_rule(rule(window_seconds=window))


@pytest.mark.parametrize("window", [None, "300", math.inf, False])
def test_window_must_be_a_number(window: Any) -> None:
    with pytest.raises(ValidationError, match="window_seconds must be a finite number"):
        normalize_rule(rule(window_seconds=window))


@pytest.mark.parametrize(("window", "for_seconds"), [(300, 0), (300, 300), (60, 59.5)])
def test_for_seconds_up_to_the_window(window: float, for_seconds: float) -> None:
    normalized = normalize_rule(rule(window_seconds=window, for_seconds=for_seconds))
    assert normalized["for_seconds"] == for_seconds


@pytest.mark.parametrize(("window", "for_seconds"), [(300, 301), (60, 60.5), (300, -1),
                                                     (..., 301)])
def test_for_seconds_beyond_the_window_is_refused(window: Any, for_seconds: float) -> None:
    with pytest.raises(ValidationError, match="for_seconds must be between 0 and the window"):
        normalize_rule(rule(window_seconds=window, for_seconds=for_seconds))


@pytest.mark.parametrize("name", ["", "   ", None, 5])
def test_rule_needs_a_name(name: Any) -> None:
    with pytest.raises(ValidationError, match="each guard rule needs a name"):
        normalize_rule(rule(name=name))


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown fields: action, severity"):
        normalize_rule(rule(severity="high", action="page"))


@pytest.mark.parametrize("value", ["errors > 0.01", ["errors"], 1])
def test_rule_must_be_an_object(value: Any) -> None:
    with pytest.raises(ValidationError, match="each guard rule must be an object"):
        normalize_rule(value)


def test_rule_list() -> None:
    assert normalize_rules(None) == []
    assert normalize_rules([]) == []
    rules = normalize_rules([rule(), rule(name="latency", metric="latency_p95_ms",
                                          threshold=2000, gate_class="Signal")])
    assert [r["name"] for r in rules] == ["errors", "latency"]


@pytest.mark.parametrize("rules", [rule(), "errors", 3])
def test_rule_list_must_be_a_list(rules: Any) -> None:
    with pytest.raises(ValidationError, match="guard_rules must be a list"):
        normalize_rules(rules)


def test_rule_names_must_be_unique() -> None:
    with pytest.raises(ValidationError, match=r"guard rule names must be unique: errors$"):
        normalize_rules([rule(), rule(metric="timeout_rate"), rule(name="other")])


def test_one_bad_rule_refuses_the_list() -> None:
    with pytest.raises(ValidationError, match="guard rule 'bad': unknown metric"):
        normalize_rules([rule(), rule(name="bad", metric="vibes")])


def test_guard_rule_model_gives_the_same_messages_as_a_pydantic_error() -> None:
    with pytest.raises(PydanticValidationError) as caught:
        GuardRule.model_validate(rule(name="bad", metric="vibes"))
    assert caught.value.errors()[0]["msg"].startswith("guard rule 'bad': unknown metric 'vibes'")
    with pytest.raises(ValidationError, match="guard rule 'bad': unknown metric 'vibes'"):
        GuardRule.parse(rule(name="bad", metric="vibes"))


def test_guard_rule_model_is_frozen_typed_and_dumps_the_stored_form() -> None:
    model = GuardRule.model_validate(rule())
    assert model.gate_class is GateClass.ROLLBACK_TRIGGER and model.comparator is Comparator.GT
    assert model.model_dump(mode="json") == normalize_rule(rule())
    assert GuardRule.model_validate(model) == model
    with pytest.raises(PydanticValidationError):
        model.threshold = 0.5  # type: ignore[misc]


def test_enums_equal_the_stored_strings() -> None:
    assert [a.value for a in DecisionAction] == ["alert", "pause", "freeze", "rollback"]
    assert COMPARATORS == (">", ">=", "<", "<=")
    assert GATE_ACTIONS[GateClass.SIGNAL] is DecisionAction.ALERT


def test_guard_rule_json_schema_shows_the_constraints() -> None:
    schema = GuardRule.model_json_schema()
    props = schema["properties"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "metric", "comparator", "threshold", "gate_class"}
    assert props["metric"]["enum"] == sorted(METRICS)
    assert schema["$defs"]["GateClass"]["enum"] == list(GATE_CLASSES)
    assert props["min_samples"]["minimum"] == 1
    assert props["window_seconds"]["exclusiveMinimum"] == 0
    assert props["window_seconds"]["maximum"] == MAX_WINDOW_SECONDS
