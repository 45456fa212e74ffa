"""The guard's decision lifecycle, pure: decide once per breach, settle, reconcile, hysteresis.

The stream worker folds evaluations into time buckets and asks :func:`judge` what one rollout's
rules say now; everything here is a function of the rule states it is given, the rollout as the
control topic shows it, the windows' stats and the time. Nothing here reads or writes Kafka.

A decision is made once per breach: the rule's state records the decision (id, action, time) and
the command carries that id. Until the control topic shows the rollout in the decided state, the
guard re-sends the same command every RESEND_AFTER_SECONDS, so a decision cannot be lost between
the state write and the send; the control plane's rollback, freeze and pause are idempotent, so
however often a command arrives the store records one event. Once the decision has taken effect
and the breach is over (an operator resumed, the metric recovered), the rule starts afresh.
"""

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from relctl.domain.alerts import Alert, AlertKind, iso
from relctl.domain.decisions import Decision
from relctl.domain.guard_eval import (
    CLEAR_OUTCOMES,
    GuardOutcome,
    RuleState,
    Verdict,
    evaluate_rule,
    strongest_action,
)
from relctl.domain.guards import Comparator, DecisionAction, GateClass
from relctl.domain.metrics import metric_value
from relctl.domain.verdicts import ArmFigure, RuleVerdict

RESEND_AFTER_SECONDS = 2.0
# Rollout states in which a decision has not taken effect yet (the values of RolloutState).
NOT_APPLIED: dict[DecisionAction, tuple[str, ...]] = {
    DecisionAction.ROLLBACK: ("Running", "Paused", "Frozen"),
    DecisionAction.FREEZE: ("Running", "Paused"), DecisionAction.PAUSE: ("Running",),
}
MAX_REMEMBERED_DECISIONS = 10_000
# A Signal alert resolves only after its rule has stayed clear this long (hysteresis).
SIGNAL_RESOLVE_SECONDS = 60.0

# (start, end) -> (candidate stats, baseline stats) over that window.
Windows = Callable[[float, float], tuple[Any, Any]]


class GuardedRollout(Protocol):
    """What the guard needs to know about a rollout (the worker's control index has it)."""

    @property
    def id(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def baseline(self) -> int: ...
    @property
    def candidate(self) -> int: ...
    @property
    def guard_rules(self) -> list[dict[str, Any]]: ...
    @property
    def steps(self) -> list[Any]: ...
    @property
    def state(self) -> str: ...
    @property
    def step_index(self) -> int: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def applied_decisions(self) -> set[str]: ...


class SentDecisions(OrderedDict[str, Decision]):
    """The decisions this worker sent, newest last, so a re-send repeats the full command."""

    def remember(self, decision: Decision) -> None:
        self[decision.decision_id] = decision
        while len(self) > MAX_REMEMBERED_DECISIONS:
            self.popitem(last=False)


@dataclass
class Judgement:
    """What one evaluation of a rollout's rules produced."""

    verdicts: list[Verdict] = field(default_factory=list)
    rule_verdicts: list[RuleVerdict] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


def settle(rules: dict[str, RuleState], rollout: GuardedRollout) -> None:
    """Keep only this rollout's rule states, and mark decisions the control topic shows as
    applied (by their id in an event's evidence, or by the rollout's state)."""
    for name, stored in list(rules.items()):
        rule_state = stored
        if stored.rollout_id is None and (stored.decision_id or "").startswith(f"{rollout.id}:"):
            rule_state = rules[name] = replace(stored, rollout_id=rollout.id)
        if rule_state.rollout_id != rollout.id:
            del rules[name]  # an earlier rollout of the task: nothing carries over
            continue
        if rule_state.decision_id and not rule_state.applied and (
                rule_state.decision_id in rollout.applied_decisions
                or rule_state.action not in NOT_APPLIED
                or rollout.state not in NOT_APPLIED[rule_state.action]):
            rules[name] = replace(rule_state, applied=True)


def judge(rules: dict[str, RuleState], rollout: GuardedRollout, scope: str, windows: Windows,
          now: float, sent: SentDecisions, min_window: float) -> Judgement:
    """Evaluate every guard rule of ``rollout`` at ``now``, updating ``rules`` in place.

    Each rule is judged over its window, clipped to the rollout's start (never shorter than
    ``min_window``, the worker's bucket). Newly failed rules decide (the strongest action wins
    and the rules failing with it share its decision); with nothing new, decisions the control
    topic does not show as applied are re-sent."""
    result = Judgement()
    settle(rules, rollout)
    for rule in rollout.guard_rules:
        window = float(rule["window_seconds"])
        start = max(now - window, rollout.started_at or now - window)
        effective = {**rule, "window_seconds": max(now - start, min_window)}
        candidate, baseline = windows(start, now)
        previous = rules.get(rule["name"])
        if previous is None or previous.rollout_id != rollout.id:
            previous = RuleState(rollout_id=rollout.id)
        verdict, new_state = evaluate_rule(effective, candidate, baseline, now, previous)
        verdict = replace(verdict, window_seconds=window)
        clear = verdict.outcome in CLEAR_OUTCOMES
        if rule["gate_class"] == GateClass.SIGNAL and previous.decided:
            new_state = signal_hysteresis(rollout, verdict, previous, new_state, now, result)
        elif clear and previous.decided and previous.applied:
            new_state = RuleState(outcome=verdict.outcome, rollout_id=rollout.id)
        rules[rule["name"]] = new_state
        result.verdicts.append(verdict)
        result.rule_verdicts.append(
            rule_verdict(rollout.id, rule, verdict, (candidate, baseline), now))
        if verdict.action == DecisionAction.ALERT:
            rules[rule["name"]] = replace(new_state, decided_at=now)
            result.alerts.append(guard_alert(AlertKind.FIRED, rollout, verdict, now, now))
    decision = strongest_action([v for v in result.verdicts
                                 if v.action != DecisionAction.ALERT])
    if decision is None:
        reconcile(rules, rollout, now, sent, result)
    else:
        decide(rules, rollout, scope, decision, now, sent, result)
    return result


def decide(rules: dict[str, RuleState], rollout: GuardedRollout, scope: str,
           decision: Verdict, now: float, sent: SentDecisions, result: Judgement) -> None:
    """Record the decision in every newly failed rule's state, and emit its command."""
    assert decision.action is not None
    since_ms = int((decision.breach_since or now) * 1000)
    decision_id = f"{rollout.id}:{decision.rule}:{since_ms}"
    for verdict in result.verdicts:
        if verdict.action is not None and verdict.action != DecisionAction.ALERT:
            # Rules failing together share the strongest decision, and its fate.
            rules[verdict.rule] = RuleState(
                breach_since=verdict.breach_since, decided=True, outcome=GuardOutcome.FAILED,
                decision_id=decision_id, action=decision.action, decided_at=now,
                rollout_id=rollout.id)
    evidence = {
        **evidence_of(decision),
        "rollout": rollout.id, "task": rollout.task, "baseline": rollout.baseline,
        "candidate": rollout.candidate, "step": _step(rollout),
        "decided_at": iso(now), "decision_id": decision_id,
        "all_rules": [evidence_of(v) for v in result.verdicts],
    }
    command = Decision(
        rollout_id=rollout.id, action=decision.action, decision_id=decision_id,
        evidence=evidence, reason=decision_reason(decision, now))
    result.decisions.append(command)
    result.alerts.append(Alert.of_decision(scope, command))
    sent.remember(command)


def signal_hysteresis(rollout: GuardedRollout, verdict: Verdict, previous: RuleState,
                      new_state: RuleState, now: float, result: Judgement) -> RuleState:
    """A fired Signal alert resolves only after SIGNAL_RESOLVE_SECONDS of clear verdicts,
    so a metric flapping around its threshold yields one fired/resolved pair."""
    if verdict.outcome not in CLEAR_OUTCOMES:
        return replace(new_state, clear_since=None)
    clear_since = previous.clear_since if previous.clear_since is not None else now
    if now - clear_since < SIGNAL_RESOLVE_SECONDS:
        return replace(previous, clear_since=clear_since, outcome=verdict.outcome)
    result.alerts.append(guard_alert(AlertKind.RESOLVED, rollout, verdict, now,
                                     previous.decided_at))
    return RuleState(outcome=verdict.outcome, rollout_id=rollout.id)


def reconcile(rules: dict[str, RuleState], rollout: GuardedRollout, now: float,
              sent: Mapping[str, Decision], result: Judgement) -> None:
    """Re-send a decision the control topic does not show as applied yet."""
    resent: set[str] = set()
    for name, rule_state in rules.items():
        action, decision_id = rule_state.action, rule_state.decision_id
        if action not in NOT_APPLIED or decision_id is None or rule_state.applied \
                or rule_state.rollout_id != rollout.id or decision_id in resent:
            continue
        resent.add(decision_id)
        if rollout.state not in NOT_APPLIED[action]:
            continue
        if now - (rule_state.decided_at or 0.0) < RESEND_AFTER_SECONDS:
            continue
        command = sent.get(decision_id) or Decision(
            rollout_id=rollout.id, action=action, decision_id=decision_id,
            reason=f"{_ACTION_WORDS[action]} because guard rule {name} failed "
                   "(re-sent after restart)",
            evidence={"rule": name, "decision_id": decision_id,
                      "breach_since": iso(rule_state.breach_since)})
        result.decisions.append(command)
        rules[name] = replace(rule_state, decided_at=now)


def guard_alert(kind: AlertKind, rollout: GuardedRollout, verdict: Verdict, now: float,
                fired_at: float | None) -> Alert:
    """A Signal rule of the rollout fired or resolved."""
    step = _step(rollout)
    return Alert(kind=kind, scope=f"rollout|{rollout.id}", rule=f"guard:{verdict.rule}",
                 severity="warning", at=iso(now), fired_at=iso(fired_at), task=rollout.task,
                 release=rollout.candidate, baseline=rollout.baseline,
                 cohort=step if isinstance(step, str) else "all",
                 step=step if isinstance(step, int | float) else None,
                 evidence=evidence_of(verdict))


def _step(rollout: GuardedRollout) -> Any:
    return rollout.steps[rollout.step_index] if rollout.step_index >= 0 else None


def evidence_of(verdict: Verdict) -> dict[str, Any]:
    """A verdict's evidence as published: its breach start in ISO 8601, like every instant."""
    return {**verdict.evidence(), "breach_since": iso(verdict.breach_since)}


_ACTION_WORDS = {DecisionAction.ROLLBACK: "Rolled back", DecisionAction.FREEZE: "Frozen",
                 DecisionAction.PAUSE: "Paused", DecisionAction.ALERT: "Alerted"}
_COMPARATOR_WORDS = {Comparator.GT: "above", Comparator.GE: "at or above",
                     Comparator.LT: "below", Comparator.LE: "at or below"}


def _duration(seconds: float) -> str:
    if seconds < 120:  # up to two minutes read best in seconds
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def decision_reason(verdict: Verdict, now: float) -> str:
    """Why the guard decided, as a person would write it, e.g. ``Rolled back because guard
    rule errors failed: llm_error_rate was 0.1, above the threshold 0.05, over 60 samples in
    the last 120 s``, plus how long the breach had held when that mattered."""
    assert verdict.action is not None
    value = f"{verdict.value:.4g}" if verdict.value is not None else "unknown"
    reason = (f"{_ACTION_WORDS[verdict.action]} because guard rule {verdict.rule} failed: "
              f"{verdict.metric} was {value}, {_COMPARATOR_WORDS[verdict.comparator]} the "
              f"threshold {verdict.threshold:g}, over {verdict.samples} samples in the last "
              f"{_duration(verdict.window_seconds)}")
    held = now - verdict.breach_since if verdict.breach_since is not None else 0.0
    return reason + (f", breached for {_duration(held)}" if held >= 1 else "")


def _arm(metric: str, stats: Any, window: float) -> ArmFigure:
    """The rule's metric over one arm alone (a broken or inapplicable metric gives None)."""
    try:
        value, samples = metric_value(metric, stats, None, window)
    except Exception:  # the rule's own verdict reports a broken metric
        value, samples = None, 0
    return ArmFigure(value=value, samples=samples)


def rule_verdict(rollout_id: str, rule: Mapping[str, Any], verdict: Verdict,
                 arms: tuple[Any, Any], now: float) -> RuleVerdict:
    """What operators see of one rule's verdict (published on change, see domain.verdicts)."""
    for_seconds = float(rule.get("for_seconds", 0))
    decides_at = left = None
    if verdict.outcome == GuardOutcome.PENDING and verdict.breach_since is not None:
        decides_at = iso(verdict.breach_since + for_seconds)
        left = max(0.0, round(verdict.breach_since + for_seconds - now, 3))
    candidate, baseline = arms
    return RuleVerdict(
        rollout_id=rollout_id, rule=verdict.rule, metric=verdict.metric,
        comparator=verdict.comparator, threshold=verdict.threshold,
        gate_class=verdict.gate_class, outcome=verdict.outcome, value=verdict.value,
        samples=verdict.samples, min_samples=int(rule.get("min_samples", 1)),
        window_seconds=verdict.window_seconds, for_seconds=for_seconds,
        candidate=_arm(verdict.metric, candidate, verdict.window_seconds),
        baseline=_arm(verdict.metric, baseline, verdict.window_seconds),
        breach_since=iso(verdict.breach_since), decides_at=decides_at,
        time_left_seconds=left, message=verdict.message, at=iso(now) or "")


