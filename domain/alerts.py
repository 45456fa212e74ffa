"""Platform alert rules (what every pipeline must alert on), with hysteresis, as a pure state
machine.

An alert fires when its condition has held for ``for_seconds`` with enough samples, and
resolves only when the value has been back on the safe side of the threshold by a margin
(``hysteresis``, a fraction of the threshold) for ``resolve_seconds``, or when the release
has had no traffic at all for that long (nobody runs it any more, e.g. after a rollback). A
flapping metric therefore produces one fired/resolved pair, not a storm. ``relative`` rules
compare the current window with the one before it (a drop or a spike).
"""

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field
from relctl.domain.decisions import EVIDENCE_SCHEMA, Decision, IsoTime
from relctl.domain.guard_eval import COMPARE
from relctl.domain.guards import Comparator, DecisionAction
from relctl.domain.metrics import WindowStats, metric_value


class AlertKind(StrEnum):
    """What an alert on ``relctl.alerts`` says: a rule fired, resolved, or the guard decided."""

    FIRED = "fired"
    RESOLVED = "resolved"
    DECISION = "decision"


@dataclass(frozen=True)
class AlertRule:
    name: str
    metric: str
    comparator: str
    threshold: float
    window_seconds: float = 600.0
    for_seconds: float = 0.0
    min_samples: int = 50
    relative: bool = False
    hysteresis: float = 0.1
    resolve_seconds: float = 60.0
    severity: str = "warning"
    summary: str = ""


# The alerts every pipeline must have (LLM errors > 1 % for 10 min, transcription errors > 2 %,
# confidence drop > 10 %, human review > 20 %, sandbox failures > 5 %, token spike > 40 %, queue
# backlog > 200). Durations the requirement leaves open are chosen here and can be overridden
# with RELCTL_ALERT_RULES (a JSON list of rules).
DEFAULT_RULES = (
    AlertRule("llm-error-rate", "llm_error_rate", ">", 0.01, 600, 600, 100,
              severity="critical", summary="LLM error rate > 1% for 10 min"),
    AlertRule("transcription-errors", "transcription_error_rate", ">", 0.02, 600, 60, 100,
              summary="Transcription vendor error > 2%"),
    AlertRule("confidence-drop", "confidence_mean", "<", -0.10, 600, 60, 100, relative=True,
              summary="Confidence score anomaly (drop > 10%)"),
    AlertRule("human-review-rate", "human_review_rate", ">", 0.20, 600, 60, 100,
              summary="Human review rate > 20% unexpectedly"),
    AlertRule("sandbox-failures", "sandbox_failure_rate", ">", 0.05, 600, 60, 20,
              summary="Sandbox run failures > 5%"),
    AlertRule("token-spike", "tokens_per_eval", ">", 0.40, 600, 60, 100, relative=True,
              summary="Cost anomaly: tokens spike > 40%"),
    AlertRule("queue-backlog", "queue_depth_max", ">", 200, 300, 0, 1,
              summary="Queue backlog > 200 jobs"),
)


def load_rules(path: str | None) -> tuple[AlertRule, ...]:
    if not path:
        return DEFAULT_RULES
    return tuple(AlertRule(**item) for item in json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class AlertState:
    status: str = "inactive"  # inactive | pending | firing
    since: float | None = None
    fired_at: float | None = None
    clear_since: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "AlertState":
        return cls(**data) if data else cls()


@dataclass(frozen=True)
class AlertTransition:
    """``fired`` or ``resolved``, with the evidence that caused it."""

    kind: AlertKind
    rule: AlertRule
    value: float | None
    samples: int
    at: float
    fired_at: float


def measure(rule: AlertRule, current: WindowStats,
            previous: WindowStats | None) -> tuple[float | None, int]:
    value, samples = metric_value(rule.metric, current, None, rule.window_seconds)
    if not rule.relative or value is None:
        return value, samples
    before, before_samples = (metric_value(rule.metric, previous, None, rule.window_seconds)
                              if previous is not None else (None, 0))
    if not before or before_samples < rule.min_samples:
        return None, samples  # traffic, but nothing to compare it with yet
    return (value - before) / abs(before), min(samples, before_samples)


def _clear(rule: AlertRule, value: float) -> bool:
    """On the safe side of the threshold by the hysteresis margin."""
    margin = abs(rule.threshold) * rule.hysteresis
    if rule.comparator in (Comparator.GT, Comparator.GE):
        return value < rule.threshold - margin
    return value > rule.threshold + margin


def step(
    rule: AlertRule, value: float | None, samples: int, now: float, state: AlertState,
) -> tuple[AlertState, AlertTransition | None]:
    """Advance one alert's state machine by one observation."""
    enough = value is not None and samples >= rule.min_samples
    breached = enough and COMPARE[rule.comparator](value, rule.threshold)  # type: ignore[arg-type]
    if state.status == "firing":
        # Clear by a margin, or no traffic at all (a release nobody runs any more).
        quiet = samples == 0
        if quiet or (enough and not breached and _clear(rule, value)):  # type: ignore[arg-type]
            clear_since = state.clear_since if state.clear_since is not None else now
            if now - clear_since >= rule.resolve_seconds:
                resolved = AlertTransition(AlertKind.RESOLVED, rule, value, samples, now,
                                           state.fired_at or now)
                return AlertState(), resolved
            return replace(state, clear_since=clear_since), None
        return replace(state, clear_since=None), None
    if not breached:
        return AlertState(), None
    since = state.since if state.since is not None else now
    if now - since >= rule.for_seconds:
        fired = AlertTransition(AlertKind.FIRED, rule, value, samples, now, now)
        return AlertState(status="firing", since=since, fired_at=now), fired
    return AlertState(status="pending", since=since), None


def iso(epoch: float | None) -> str | None:
    """An epoch as the ISO-8601 UTC string alerts and evidence carry (None stays None)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch is not None else None


class Alert(BaseModel):
    """One record on ``relctl.alerts``.

    Three shapes share the model, told apart by ``kind`` and ``scope``: a platform alert
    (``release|<task>|<release>``, fired or resolved), a Signal guard alert
    (``rollout|<id>``, fired or resolved), and a decision (the guard's command, with the
    task scope). Only the fields a shape sets are published (``wire()``). ``cohort`` is always
    a cohort name or ``all``; a guard alert's percentage step has its own field, ``step``.
    Every instant (``at``, ``fired_at``, the evidence's ``breach_since``) is ISO 8601 with an
    offset.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AlertKind
    scope: str
    rule: str | None = None
    severity: str | None = None
    summary: str | None = None
    task: str | None = None
    release: int | None = None
    baseline: int | None = None
    cohort: str | None = Field(default=None, description='a cohort name, or "all"')
    step: int | float | None = Field(
        default=None, description="guard alerts: the rollout's current percentage step")
    at: IsoTime | None = None
    fired_at: IsoTime | None = None
    # A decision alert carries the decision's own fields.
    rollout_id: str | None = None
    action: DecisionAction | None = None
    decision_id: str | None = None
    actor: str | None = None
    reason: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict, json_schema_extra=EVIDENCE_SCHEMA)

    def wire(self) -> dict[str, Any]:
        """The JSON object published on ``relctl.alerts`` (and sent to Alertmanager)."""
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def platform(cls, transition: AlertTransition, task: str, release: int) -> Self:
        """A platform alert rule of one release fired or resolved."""
        rule = transition.rule
        return cls(
            kind=transition.kind, scope=f"release|{task}|{release}", rule=rule.name,
            severity=rule.severity, summary=rule.summary, task=task, release=release,
            cohort="all", at=iso(transition.at), fired_at=iso(transition.fired_at),
            evidence={"metric": rule.metric, "value": transition.value,
                      "samples": transition.samples, "comparator": rule.comparator,
                      "threshold": rule.threshold, "window_seconds": rule.window_seconds,
                      "relative": rule.relative},
        )

    @classmethod
    def of_decision(cls, scope: str, decision: Decision) -> Self:
        """The alert that announces an automatic decision."""
        return cls(kind=AlertKind.DECISION, scope=scope, **decision.wire())
