"""Pure guard evaluation, modelled on Argo Rollouts' analysis runs.

Every rule evaluation has an explicit outcome:

- ``Inconclusive``: not enough evidence (fewer samples than ``min_samples``, or the metric
  cannot be computed). Never treated as Passed; it also resets a running for-duration, because a
  breach must be *observed* continuously to count.
- ``Passed``: enough evidence, and the breach condition does not hold.
- ``Pending``: the breach condition holds, but not yet for ``for_seconds``.
- ``Failed``: the breach condition has held for at least ``for_seconds``; the rule's gate class
  decides the action (RollbackTrigger → rollback, Block → freeze, Conditional → pause,
  Signal → alert only).
- ``Error``: the metric computation itself failed; reported, never acted upon.
"""

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from relctl.domain.guards import GATE_ACTIONS
from relctl.domain.metrics import WindowStats, metric_value


class GuardOutcome(StrEnum):
    """The outcome of one rule evaluation (see the module docstring)."""

    PENDING = "Pending"
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


OUTCOMES: tuple[GuardOutcome, ...] = tuple(GuardOutcome)
COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
# When several rules fail at once, the strongest action is taken (a rollback supersedes a freeze).
ACTION_STRENGTH = {"alert": 0, "pause": 1, "freeze": 2, "rollback": 3}


@dataclass(frozen=True)
class RuleState:
    """What a rule remembers between evaluations (persisted by the guard worker)."""

    breach_since: float | None = None
    decided: bool = False
    outcome: str = "Inconclusive"
    decision_id: str | None = None
    action: str | None = None
    decided_at: float | None = None
    applied: bool = False
    rollout_id: str | None = None
    clear_since: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"breach_since": self.breach_since, "decided": self.decided,
                "outcome": self.outcome, "decision_id": self.decision_id,
                "action": self.action, "decided_at": self.decided_at, "applied": self.applied,
                "rollout_id": self.rollout_id, "clear_since": self.clear_since}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "RuleState":
        return cls(**data) if data else cls()


@dataclass(frozen=True)
class Verdict:
    rule: str
    outcome: str
    value: float | None
    samples: int
    threshold: float
    comparator: str
    metric: str
    gate_class: str
    window_seconds: float
    breach_since: float | None
    action: str | None = None
    message: str = ""

    def evidence(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "metric": self.metric, "outcome": self.outcome,
            "value": self.value, "samples": self.samples, "comparator": self.comparator,
            "threshold": self.threshold, "window_seconds": self.window_seconds,
            "breach_since": self.breach_since, "gate_class": self.gate_class,
        }


def evaluate_rule(
    rule: Mapping[str, Any], candidate: WindowStats, baseline: WindowStats | None,
    now: float, state: RuleState,
) -> tuple[Verdict, RuleState]:
    """Evaluate one rule over the candidate's window; return the verdict and the new state."""
    common = {
        "rule": rule["name"], "threshold": float(rule["threshold"]),
        "comparator": rule["comparator"], "metric": rule["metric"],
        "gate_class": rule["gate_class"], "window_seconds": float(rule["window_seconds"]),
    }
    try:
        value, samples = metric_value(rule["metric"], candidate, baseline,
                                      float(rule["window_seconds"]))
    except Exception as exc:  # a broken metric must be visible, and must not act
        verdict = Verdict(outcome="Error", value=None, samples=0, breach_since=None,
                          message=f"metric failed: {exc}", **common)
        return verdict, replace(state, breach_since=None, outcome="Error")
    if value is None or samples < int(rule["min_samples"]):
        verdict = Verdict(outcome="Inconclusive", value=value, samples=samples, breach_since=None,
                          message=f"{samples} samples, {rule['min_samples']} needed", **common)
        return verdict, replace(state, breach_since=None, outcome="Inconclusive")
    if not COMPARE[rule["comparator"]](value, float(rule["threshold"])):
        verdict = Verdict(outcome="Passed", value=value, samples=samples, breach_since=None,
                          **common)
        return verdict, replace(state, breach_since=None, outcome="Passed")
    since = state.breach_since if state.breach_since is not None else now
    if now - since < float(rule["for_seconds"]):
        verdict = Verdict(outcome="Pending", value=value, samples=samples, breach_since=since,
                          message=f"breached for {now - since:.1f}s of {rule['for_seconds']}s",
                          **common)
        return verdict, replace(state, breach_since=since, outcome="Pending")
    action = None if state.decided else GATE_ACTIONS[rule["gate_class"]]
    verdict = Verdict(outcome="Failed", value=value, samples=samples, breach_since=since,
                      action=action, message=f"{rule['metric']} {value:.4g} "
                      f"{rule['comparator']} {rule['threshold']:g} for {now - since:.1f}s",
                      **common)
    return verdict, replace(state, breach_since=since, decided=True, outcome="Failed")


def strongest_action(verdicts: list[Verdict]) -> Verdict | None:
    """The newly failed verdict whose action is strongest, or None."""
    acting = [v for v in verdicts if v.action is not None]
    return max(acting, key=lambda v: ACTION_STRENGTH[v.action or "alert"]) if acting else None
