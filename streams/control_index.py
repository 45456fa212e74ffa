"""The control state a stream worker needs, built from ``relctl.control`` CloudEvents.

Workers do not read PostgreSQL: they follow the control topic from its beginning (everything on
it can be re-derived from the event store) and keep just enough to attribute an evaluation to a
rollout arm and to know each running rollout's guard rules. Redelivered events carry the same
id (``<aggregate>:<version>``) and are skipped.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relctl.domain.rollout import GUARDED_STATES
from relctl.domain.trace_contract import ReleaseTrace


def _epoch(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


@dataclass
class RolloutInfo:
    id: str
    task: str
    baseline: int
    candidate: int
    shadow: bool
    guard_rules: list[dict[str, Any]]
    steps: list[Any]
    state: str = "Planned"
    step_index: int = -1
    started_at: float | None = None
    applied_decisions: set[str] = field(default_factory=set)


@dataclass
class ControlIndex:
    versions: dict[str, int] = field(default_factory=dict)
    task_keys: dict[str, str] = field(default_factory=dict)
    tenant_keys: dict[str, str] = field(default_factory=dict)
    releases: dict[str, set[int]] = field(default_factory=dict)
    defaults: dict[str, int] = field(default_factory=dict)
    rollouts: dict[str, RolloutInfo] = field(default_factory=dict)
    active: dict[str, str] = field(default_factory=dict)
    cohorts: dict[str, str] = field(default_factory=dict)
    # What each numbered release runs (its trace contract), from Release.Drafted / Revised.
    traces: dict[tuple[str, int], ReleaseTrace] = field(default_factory=dict)
    release_keys: dict[str, tuple[str, int]] = field(default_factory=dict)
    applied: int = 0
    # Tasks whose guarded rollout was just learned (started, advanced, resumed): the follower
    # drains it to have them judged at once, not on the next tick.
    learned: set[str] = field(default_factory=set)
    _time: float | None = None

    def apply(self, envelope: dict[str, Any]) -> bool:
        """Apply one control CloudEvent; False when it was a duplicate or out of date."""
        aggregate, _, raw_version = str(envelope.get("id", "")).rpartition(":")
        try:
            version = int(raw_version)
        except ValueError:
            return False
        if version <= self.versions.get(aggregate, 0):
            return False
        self.versions[aggregate] = version
        kind, _, name = str(envelope.get("type", "")).removeprefix("io.relctl.").partition(".")
        self._time = _epoch(envelope.get("time"))
        handler = getattr(self, f"_{kind}_{name.rsplit('.', 1)[0]}", None)
        if handler is not None:
            handler(aggregate, envelope.get("data") or {})
        self.applied += 1
        return True

    # ---- tasks --------------------------------------------------------------------------

    def _task_opened(self, aggregate: str, data: dict[str, Any]) -> None:
        self.task_keys[aggregate] = data["key"]
        self.releases.setdefault(data["key"], set())

    def _task_release_admitted(self, aggregate: str, data: dict[str, Any]) -> None:
        self.releases.setdefault(self.task_keys.get(aggregate, ""), set()).add(int(data["number"]))

    def _task_default_release_set(self, aggregate: str, data: dict[str, Any]) -> None:
        self.defaults[self.task_keys.get(aggregate, "")] = int(data["number"])

    def _task_rollout_opened(self, aggregate: str, data: dict[str, Any]) -> None:
        self.active[self.task_keys.get(aggregate, "")] = str(data["rollout_id"])

    def _task_rollout_closed(self, aggregate: str, data: dict[str, Any]) -> None:
        task = self.task_keys.get(aggregate, "")
        if self.active.get(task) == str(data["rollout_id"]):
            del self.active[task]
        if data.get("new_default") is not None:
            self.defaults[task] = int(data["new_default"])

    # ---- releases -----------------------------------------------------------------------

    def _release_drafted(self, aggregate: str, data: dict[str, Any]) -> None:
        key = (str(data["task"]), int(data["number"]))
        self.release_keys[aggregate] = key
        self.traces[key] = ReleaseTrace.from_event(data)

    def _release_revised(self, aggregate: str, data: dict[str, Any]) -> None:
        if aggregate in self.release_keys:
            self.traces[self.release_keys[aggregate]] = ReleaseTrace.from_event(data)

    # ---- tenants ------------------------------------------------------------------------

    def _tenant_registered(self, aggregate: str, data: dict[str, Any]) -> None:
        self.tenant_keys[aggregate] = data["key"]
        self.cohorts[data["key"]] = data["cohort"]

    def _tenant_cohort_changed(self, aggregate: str, data: dict[str, Any]) -> None:
        if aggregate in self.tenant_keys:
            self.cohorts[self.tenant_keys[aggregate]] = data["to_cohort"]

    # ---- rollouts -----------------------------------------------------------------------

    def _rollout_planned(self, aggregate: str, data: dict[str, Any]) -> None:
        self.rollouts[aggregate] = RolloutInfo(
            id=aggregate, task=data["task"], baseline=int(data["baseline"]),
            candidate=int(data["candidate"]), shadow=bool(data["shadow"]),
            guard_rules=list(data["guard_rules"]), steps=list(data["steps"]))

    def _set_state(self, aggregate: str, state: str) -> None:
        if aggregate in self.rollouts:
            self.rollouts[aggregate].state = state

    def _learn(self, aggregate: str) -> None:
        if aggregate in self.rollouts:
            self.learned.add(self.rollouts[aggregate].task)

    def _rollout_started(self, aggregate: str, data: dict[str, Any]) -> None:
        self._set_state(aggregate, "Running")
        if aggregate in self.rollouts:
            self.rollouts[aggregate].step_index = 0
            self.rollouts[aggregate].started_at = self._time
        self._learn(aggregate)

    def _rollout_step_advanced(self, aggregate: str, data: dict[str, Any]) -> None:
        if aggregate in self.rollouts:
            self.rollouts[aggregate].step_index = int(data["step_index"])
        self._learn(aggregate)

    def _note_decision(self, aggregate: str, data: dict[str, Any]) -> None:
        """An automatic decision carries its id in the evidence: remember it was applied."""
        decision = (data.get("evidence") or {}).get("decision_id")
        if decision and aggregate in self.rollouts:
            self.rollouts[aggregate].applied_decisions.add(str(decision))

    def _rollout_paused(self, aggregate: str, data: dict[str, Any]) -> None:
        self._set_state(aggregate, "Paused")
        self._note_decision(aggregate, data)

    def _rollout_resumed(self, aggregate: str, data: dict[str, Any]) -> None:
        self._set_state(aggregate, "Running")
        self._learn(aggregate)

    def _rollout_frozen(self, aggregate: str, data: dict[str, Any]) -> None:
        self._set_state(aggregate, "Frozen")
        self._note_decision(aggregate, data)

    def _rollout_rolled_back(self, aggregate: str, data: dict[str, Any]) -> None:
        self._set_state(aggregate, "RolledBack")
        self._note_decision(aggregate, data)

    def _rollout_completed(self, aggregate: str, data: dict[str, Any]) -> None:
        self._set_state(aggregate, "Completed")

    # ---- queries ------------------------------------------------------------------------

    def known_release(self, task: str, number: int) -> bool:
        return number in self.releases.get(task, ())

    def trace(self, task: str, number: int) -> ReleaseTrace | None:
        """What release ``number`` of ``task`` runs, if the index has seen it drafted."""
        return self.traces.get((task, number))

    def take_learned(self) -> list[str]:
        """Tasks whose rollout was started, advanced or resumed since the last call, and
        still is guarded."""
        learned, self.learned = self.learned, set()
        return sorted(task for task in learned if self.guarded_rollout(task) is not None)

    def any_guarded(self) -> bool:
        """Whether some task's rollout is guarded (a decision could come)."""
        return any(self.guarded_rollout(task) is not None for task in self.active)

    def guarded_rollout(self, task: str) -> RolloutInfo | None:
        """The task's rollout whose guards are live (running, paused or frozen)."""
        rollout_id = self.active.get(task)
        rollout = self.rollouts.get(rollout_id) if rollout_id else None
        return rollout if rollout is not None and rollout.state in GUARDED_STATES else None

