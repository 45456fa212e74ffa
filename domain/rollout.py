"""Rollout: moving one task from a baseline release to a candidate, step by step.

Steps are percentages of tenants (typically 10 -> 25 -> 50 -> 100) or named cohorts (internal,
closed beta, open beta, general). The state machine only allows transitions that make sense, and the
commands an automatic guard issues (pause, freeze, roll back) are idempotent: repeating one is a
no-op that says so, so redelivered decisions never produce a second event.
"""

import hashlib
from enum import StrEnum
from itertools import pairwise
from typing import Any

import orjson
from eventsourcing.domain import event
from relctl.domain.base import ControlAggregate, check_attribution, check_json
from relctl.domain.errors import ConflictError, ForbiddenError, ValidationError
from relctl.domain.guards import normalize_rules
from relctl.domain.ids import check_key
from relctl.domain.tenant import COHORTS


class RolloutState(StrEnum):
    PLANNED = "Planned"
    RUNNING = "Running"
    PAUSED = "Paused"
    FROZEN = "Frozen"
    ROLLED_BACK = "RolledBack"
    COMPLETED = "Completed"


DEFAULT_STEPS = (10, 25, 50, 100)
MAX_STEPS = 20
ACTIVE_STATES = tuple(s.value for s in RolloutState)[:4]
TERMINAL_STATES = (RolloutState.ROLLED_BACK.value, RolloutState.COMPLETED.value)
# States in which a rollout's guard rules are live (it can be rolled back, frozen or paused).
GUARDED_STATES = (RolloutState.RUNNING.value, RolloutState.PAUSED.value,
                  RolloutState.FROZEN.value)


def normalize_steps(steps: Any) -> tuple[str, list[Any]]:
    """Return (mode, steps): strictly increasing percentages ending at 100, or cohorts A-D."""
    if steps is None:
        return "percent", list(DEFAULT_STEPS)
    if not isinstance(steps, list) or not steps:
        raise ValidationError("steps must be a non-empty list")
    if len(steps) > MAX_STEPS:
        raise ValidationError(f"a rollout has at most {MAX_STEPS} steps")
    if all(isinstance(s, str) for s in steps):
        unknown = [s for s in steps if s not in COHORTS]
        if unknown:
            raise ValidationError(f"unknown cohorts {unknown}; cohorts are {', '.join(COHORTS)}")
        order = [COHORTS.index(s) for s in steps]
        if order != sorted(set(order)):
            raise ValidationError(f"cohort steps must follow the order {' -> '.join(COHORTS)}")
        if steps[-1] != COHORTS[-1]:
            raise ValidationError("the last cohort step must be 'general' (everyone)")
        return "cohort", list(steps)
    if all(isinstance(s, int | float) and not isinstance(s, bool) for s in steps):
        if any(not 0 < s <= 100 for s in steps):
            raise ValidationError("percentage steps must be in (0, 100]")
        if any(b <= a for a, b in pairwise(steps)):
            raise ValidationError("percentage steps must strictly increase, e.g. 10, 25, 50, 100")
        if steps[-1] != 100:
            raise ValidationError("the last percentage step must be 100")
        return "percent", [float(s) if isinstance(s, float) and not s.is_integer() else int(s)
                           for s in steps]
    raise ValidationError("steps are all percentages or all cohort names, not a mix")


MAX_EVIDENCE_BYTES = 16 * 1024


def check_evidence(evidence: Any) -> None:
    """Evidence is a JSON object of at most MAX_EVIDENCE_BYTES, nested at most MAX_JSON_DEPTH."""
    if evidence is None:
        return
    if not isinstance(evidence, dict):
        raise ValidationError("evidence must be a JSON object")
    check_json(evidence, "evidence")
    size = len(orjson.dumps(evidence))
    if size > MAX_EVIDENCE_BYTES:
        raise ValidationError(
            f"evidence is {size} bytes as JSON; the limit is {MAX_EVIDENCE_BYTES}")


def tenant_bucket(task: str, tenant: str) -> float:
    """A stable position of a tenant in [0, 100): the same tenant always lands in the same spot,
    so a tenant admitted at 10% is still admitted at 25%."""
    digest = hashlib.sha256(f"{task}:{tenant}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


def step_includes(mode: str, step: Any, task: str, tenant: str, cohort: str | None) -> bool:
    if mode == "percent":
        return tenant_bucket(task, tenant) < float(step)
    tenant_cohort = cohort or COHORTS[-1]
    return COHORTS.index(tenant_cohort) <= COHORTS.index(step)


class Rollout(ControlAggregate):
    kind = "rollout"

    @classmethod
    def plan(
        cls, task: str, baseline: int, candidate: int, steps: Any, guard_rules: Any,
        shadow: bool, actor: str, reason: str,
    ) -> "Rollout":
        check_key("task", task)
        check_attribution(actor, reason)
        if baseline == candidate:
            raise ValidationError("baseline and candidate must be different releases")
        mode, normalized = normalize_steps(steps)
        return cls(
            task=task, baseline=baseline, candidate=candidate, step_mode=mode, steps=normalized,
            guard_rules=normalize_rules(guard_rules), shadow=bool(shadow), actor=actor,
            reason=reason,
        )

    @event("Planned")
    def __init__(
        self, task: str, baseline: int, candidate: int, step_mode: str, steps: list[Any],
        guard_rules: list[dict[str, Any]], shadow: bool, actor: str, reason: str,
    ) -> None:
        self.task = task
        self.baseline = baseline
        self.candidate = candidate
        self.step_mode = step_mode
        self.steps = steps
        self.guard_rules = guard_rules
        self.shadow = shadow
        self.state = "Planned"
        self.step_index = -1
        self.decisions: list[dict[str, Any]] = []

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def current_step(self) -> Any:
        return self.steps[self.step_index] if self.step_index >= 0 else None

    def includes(self, tenant: str, cohort: str | None) -> bool:
        """Is this tenant on the candidate at the current step?"""
        if self.step_index < 0 or self.state in TERMINAL_STATES:
            return False
        return step_includes(self.step_mode, self.current_step, self.task, tenant, cohort)

    def _require(self, command: str, *states: str) -> None:
        if self.state not in states:
            raise ConflictError(
                f"cannot {command} rollout {self.id} of {self.task}: it is {self.state}, and "
                f"{command} needs it to be {' or '.join(states)}"
            )

    def start(self, actor: str, reason: str) -> None:
        check_attribution(actor, reason)
        self._require("start", "Planned")
        self._started(actor=actor, reason=reason)

    @event("Started")
    def _started(self, actor: str, reason: str) -> None:
        self.state = "Running"
        self.step_index = 0

    def advance(self, actor: str, reason: str) -> None:
        check_attribution(actor, reason)
        self._require("advance", "Running")
        if self.step_index + 1 >= len(self.steps):
            raise ConflictError(
                f"rollout {self.id} is at its final step ({self.current_step}); complete it instead"
            )
        self._step_advanced(step_index=self.step_index + 1, step=self.steps[self.step_index + 1],
                            actor=actor, reason=reason)

    @event("StepAdvanced")
    def _step_advanced(self, step_index: int, step: Any, actor: str, reason: str) -> None:
        self.step_index = step_index

    def already_applied(self, evidence: dict[str, Any] | None) -> bool:
        """Has an automatic decision with this evidence's decision id been recorded already?
        (A re-sent pause arriving after an operator resumed must not pause again.)"""
        decision = (evidence or {}).get("decision_id")
        return bool(decision) and any(
            (d.get("evidence") or {}).get("decision_id") == decision for d in self.decisions)

    def pause(self, actor: str, reason: str, evidence: dict[str, Any] | None = None) -> bool:
        check_attribution(actor, reason)
        check_evidence(evidence)
        if self.already_applied(evidence):
            return False
        if self.state == "Paused":
            return False
        self._require("pause", "Running")
        self._paused(evidence=evidence, actor=actor, reason=reason)
        return True

    @event("Paused")
    def _paused(self, evidence: dict[str, Any] | None, actor: str, reason: str) -> None:
        self.state = "Paused"
        self._note("pause", actor, reason, evidence)

    def resume(self, actor: str, reason: str, may_unfreeze: bool = True) -> None:
        """Resume a paused or frozen rollout. Unfreezing is break-glass: the caller says whether
        this actor may do it, and the check runs against the state being changed."""
        check_attribution(actor, reason)
        self._require("resume", "Paused", "Frozen")
        if self.state == "Frozen" and not may_unfreeze:
            raise ForbiddenError("a frozen rollout is resumed only by an admin (break-glass); "
                                 "ask an admin or roll back")
        self._resumed(from_state=self.state, actor=actor, reason=reason)

    @event("Resumed")
    def _resumed(self, from_state: str, actor: str, reason: str) -> None:
        self.state = "Running"

    def freeze(self, actor: str, reason: str, evidence: dict[str, Any] | None = None) -> bool:
        check_attribution(actor, reason)
        check_evidence(evidence)
        if self.already_applied(evidence):
            return False
        if self.state == "Frozen":
            return False
        self._require("freeze", "Running", "Paused")
        self._frozen(evidence=evidence, actor=actor, reason=reason)
        return True

    @event("Frozen")
    def _frozen(self, evidence: dict[str, Any] | None, actor: str, reason: str) -> None:
        self.state = "Frozen"
        self._note("freeze", actor, reason, evidence)

    def roll_back(self, actor: str, reason: str, evidence: dict[str, Any] | None = None) -> bool:
        """Send every tenant back to the baseline. A second rollback is a no-op (returns False)."""
        check_attribution(actor, reason)
        check_evidence(evidence)
        if self.state == "RolledBack":
            return False
        self._require("roll back", *ACTIVE_STATES)
        self._rolled_back(from_state=self.state, evidence=evidence, actor=actor, reason=reason)
        return True

    @event("RolledBack")
    def _rolled_back(
        self, from_state: str, evidence: dict[str, Any] | None, actor: str, reason: str,
    ) -> None:
        self.state = "RolledBack"
        self._note("rollback", actor, reason, evidence)

    def complete(self, actor: str, reason: str) -> None:
        check_attribution(actor, reason)
        self._require("complete", "Running")
        if self.step_index != len(self.steps) - 1:
            raise ConflictError(
                f"rollout {self.id} is at step {self.step_index + 1} of {len(self.steps)}; "
                "advance to the final step before completing"
            )
        self._completed(actor=actor, reason=reason)

    @event("Completed")
    def _completed(self, actor: str, reason: str) -> None:
        self.state = "Completed"

    def _note(self, action: str, actor: str, reason: str, evidence: dict[str, Any] | None) -> None:
        self.decisions.append({"action": action, "actor": actor, "reason": reason,
                               "evidence": evidence})

    def summary(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "kind": self.kind, "task": self.task, "baseline": self.baseline,
            "candidate": self.candidate, "state": self.state, "step_mode": self.step_mode,
            "steps": self.steps, "step_index": self.step_index, "current_step": self.current_step,
            "shadow": self.shadow, "guard_rules": self.guard_rules, "decisions": self.decisions,
            "aggregate_version": self.version,
        }
