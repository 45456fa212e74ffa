"""domain/guard_decisions.py on its own: no worker, no store, a plain rollout and a windows
function; and the wire form of the Decision and Alert models."""

from dataclasses import dataclass, field
from typing import Any

from relctl.domain.alerts import Alert, AlertKind, AlertRule, AlertTransition
from relctl.domain.decisions import Decision
from relctl.domain.guard_decisions import (
    RESEND_AFTER_SECONDS,
    SentDecisions,
    judge,
    settle,
)
from relctl.domain.guard_eval import GuardOutcome, RuleState
from relctl.domain.guards import GUARD_ACTOR, DecisionAction
from relctl.domain.metrics import WindowStats

from tests.unit.stream_support import guard_rule

NOW = 1_800_000_000.0


@dataclass
class Rollout:
    id: str = "r1"
    task: str = "csat"
    baseline: int = 1
    candidate: int = 2
    guard_rules: list[dict[str, Any]] = field(default_factory=lambda: [guard_rule()])
    steps: list[Any] = field(default_factory=lambda: [10, 100])
    state: str = "Running"
    step_index: int = 0
    started_at: float | None = NOW - 3600
    applied_decisions: set[str] = field(default_factory=set)


def windows(failed: int, count: int = 100) -> Any:
    return lambda start, end: (WindowStats(count=count, llm_error=failed), WindowStats())


def test_a_breach_decides_once_with_a_typed_decision_and_its_alert() -> None:
    rules: dict[str, RuleState] = {}
    sent = SentDecisions()
    first = judge(rules, Rollout(), "task|csat", windows(10), NOW, sent, min_window=10)
    [decision] = first.decisions
    assert decision.action is DecisionAction.ROLLBACK and decision.actor == GUARD_ACTOR
    assert decision.decision_id == f"r1:errors:{int(NOW * 1000)}"
    assert [v.outcome for v in first.verdicts] == [GuardOutcome.FAILED]
    assert [a.kind for a in first.alerts] == [AlertKind.DECISION]
    assert sent[decision.decision_id] == decision
    assert rules["errors"].decided and rules["errors"].action is DecisionAction.ROLLBACK
    again = judge(rules, Rollout(), "task|csat", windows(10), NOW + 0.5, sent, min_window=10)
    assert again.decisions == [] and again.alerts == []
    resent = judge(rules, Rollout(), "task|csat", windows(10), NOW + RESEND_AFTER_SECONDS, sent,
                   min_window=10)
    assert resent.decisions == [decision]


def test_settle_marks_a_decision_applied_once_the_rollout_left_the_running_states() -> None:
    rules = {"errors": RuleState(decided=True, decision_id="r1:errors:1",
                                 action=DecisionAction.PAUSE, rollout_id="r1"),
             "old": RuleState(decided=True, decision_id="r0:old:1", rollout_id="r0")}
    settle(rules, Rollout(state="Running"))
    assert list(rules) == ["errors"] and not rules["errors"].applied
    settle(rules, Rollout(state="Paused"))
    assert rules["errors"].applied


def test_decision_wire_form_is_the_command_the_consumer_reads() -> None:
    decision = Decision(rollout_id="r1", action=DecisionAction.FREEZE, decision_id="r1:e:1",
                        reason="guard e failed", evidence={"outcome": GuardOutcome.FAILED})
    assert decision.wire() == {"rollout_id": "r1", "action": "freeze", "decision_id": "r1:e:1",
                               "actor": GUARD_ACTOR, "evidence": {"outcome": "Failed"},
                               "reason": "guard e failed"}
    assert Decision.model_validate(decision.wire()) == decision


def test_alert_wire_forms_keep_exactly_their_keys() -> None:
    rule = AlertRule("llm-error-rate", "llm_error_rate", ">", 0.01, summary="errors")
    fired = Alert.platform(AlertTransition(AlertKind.FIRED, rule, 0.05, 100, NOW, NOW), "csat", 1)
    assert set(fired.wire()) == {"kind", "scope", "rule", "severity", "summary", "task",
                                 "release", "cohort", "at", "fired_at", "evidence"}
    assert fired.wire()["kind"] == "fired" and fired.wire()["scope"] == "release|csat|1"
    decision = Decision(rollout_id="r1", action=DecisionAction.ROLLBACK, decision_id="r1:e:1",
                        reason="because")
    assert Alert.of_decision("task|csat", decision).wire() == {
        "kind": "decision", "scope": "task|csat", **decision.wire()}
