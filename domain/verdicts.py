"""A guard rule's verdict as operators see it, and when a new one is worth publishing.

Stage 2 evaluates every rule of a running rollout on each partial and on a short timer; most
evaluations say what the previous one said. A :class:`RuleVerdict` is published on
``relctl.verdicts`` only when it differs from the last one published for that (rollout, rule)
in a way a person would notice (:func:`significant_change`): another outcome, another breach,
another window, or a value or sample count that moved by more than a small step. The control
plane keeps the latest per rule, so "Inconclusive, 20 of 50 samples" and "Pending, 12 s left"
can be told apart from "Passed" without the worker's Prometheus port.
"""

from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field
from relctl.domain.decisions import IsoTime
from relctl.domain.guard_eval import GuardOutcome
from relctl.domain.guards import Comparator, GateClass

VERDICT_TYPE = "io.relctl.guard.verdict_changed.v1"
# A value moved by more than this fraction of the rule's threshold (of 1 when the threshold is
# 0), or a sample count by more than this fraction of max(previous samples, min_samples).
VALUE_STEP = 0.01
SAMPLES_STEP = 0.10
MAX_TRACKED_RULES = 10_000


class ArmFigure(BaseModel):
    """The rule's metric over one arm of the rollout alone, in the rule's window."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float | None = Field(description="None when the arm's evidence cannot give it")
    samples: int = Field(ge=0)


class RuleVerdict(BaseModel):
    """The latest verdict of one guard rule of one rollout (``relctl.verdicts``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rollout_id: str
    rule: str
    metric: str
    comparator: Comparator
    threshold: float
    gate_class: GateClass
    outcome: GuardOutcome
    value: float | None = Field(description="what is compared with the threshold")
    samples: int = Field(ge=0, description="evidence behind the value")
    min_samples: int = Field(ge=1, description="evidence needed for a verdict other than "
                                               "Inconclusive")
    window_seconds: float = Field(gt=0)
    for_seconds: float = Field(ge=0, description="how long a breach must hold to fail")
    candidate: ArmFigure
    baseline: ArmFigure
    breach_since: IsoTime | None = Field(description="start of the ongoing breach")
    decides_at: IsoTime | None = Field(
        default=None, description="Pending: when the breach will have held for for_seconds")
    time_left_seconds: float | None = Field(
        default=None, ge=0, description="Pending: seconds until decides_at, as of ``at`` (or "
                                        "as of the read, from the control plane)")
    message: str = ""
    at: IsoTime = Field(description="when the guard reached this verdict")

    def as_of(self, now: datetime) -> Self:
        """The verdict with ``time_left_seconds`` counted from ``now`` (a read, later)."""
        if self.decides_at is None:
            return self
        left = (datetime.fromisoformat(self.decides_at) - now).total_seconds()
        return self.model_copy(update={"time_left_seconds": max(0.0, round(left, 3))})


def _moved(before: float | None, after: float | None, step: float) -> bool:
    if before is None or after is None:
        return before is not after
    return abs(after - before) > step


def _figure_moved(before: ArmFigure, after: ArmFigure, value_step: float,
                  min_samples: int) -> bool:
    samples_step = SAMPLES_STEP * max(before.samples, min_samples)
    return (_moved(before.value, after.value, value_step)
            or abs(after.samples - before.samples) > samples_step)


def significant_change(previous: RuleVerdict | None, current: RuleVerdict) -> bool:
    """Whether ``current`` says something ``previous`` (the last published) did not."""
    if previous is None:
        return True
    if (previous.outcome, previous.breach_since, previous.window_seconds,
            previous.min_samples, previous.for_seconds, previous.threshold) != (
            current.outcome, current.breach_since, current.window_seconds,
            current.min_samples, current.for_seconds, current.threshold):
        return True
    value_step = VALUE_STEP * (abs(current.threshold) or 1.0)
    rule_figure = ArmFigure(value=current.value, samples=current.samples)
    before = ArmFigure(value=previous.value, samples=previous.samples)
    return any(_figure_moved(old, new, value_step, current.min_samples) for old, new in (
        (before, rule_figure), (previous.candidate, current.candidate),
        (previous.baseline, current.baseline)))


class VerdictChanges:
    """The last verdict published per (rollout, rule); :meth:`changed` keeps only the news.

    Held in memory by the worker: after a restart the first verdict of each rule is published
    again (the same content; the control plane's table keeps the latest either way)."""

    def __init__(self, limit: int = MAX_TRACKED_RULES) -> None:
        self.limit = limit
        self.published: OrderedDict[tuple[str, str], RuleVerdict] = OrderedDict()

    def changed(self, verdicts: Iterable[RuleVerdict]) -> list[RuleVerdict]:
        news = []
        for verdict in verdicts:
            key = (verdict.rollout_id, verdict.rule)
            if significant_change(self.published.get(key), verdict):
                news.append(verdict)
                self.published[key] = verdict
                self.published.move_to_end(key)
        while len(self.published) > self.limit:
            self.published.popitem(last=False)
        return news

    def forget(self) -> None:
        self.published.clear()
