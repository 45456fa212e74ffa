"""Task: the index that keeps one task's releases numbered and its rollouts single.

Saving a Task together with the Release or Rollout it admits (one atomic write) is what makes
"versions are numbered without gaps or twins" and "one active rollout per task" hold under
concurrent commands: the loser of a race conflicts on the Task's version.
"""

from typing import Any
from uuid import UUID

from eventsourcing.domain import event
from relctl.domain.base import ControlAggregate, check_attribution
from relctl.domain.errors import ConflictError, NotFoundError
from relctl.domain.gate_policy import GatePolicy, GateWaiver, check_waiver_role
from relctl.domain.golden import GoldenSetRef
from relctl.domain.ids import check_key, task_id


class Task(ControlAggregate):
    kind = "task"

    @staticmethod
    def create_id(key: str, **_: Any) -> Any:
        return task_id(key)

    @classmethod
    def open(cls, key: str, actor: str, reason: str) -> "Task":
        check_key("task", key)
        check_attribution(actor, reason)
        return cls(key=key, actor=actor, reason=reason)

    @event("Opened")
    def __init__(self, key: str, actor: str, reason: str) -> None:
        self.key = key
        self.releases: list[int] = []
        self.default_release: int | None = None
        self.active_rollout: UUID | None = None
        self.rollouts: list[UUID] = []
        # Gate policy: once a golden set is registered the task is gated; the newest
        # registration is the current version. ``golden_versions``: name -> content hashes.
        self.golden_set: dict[str, Any] | None = None
        self.golden_versions: dict[str, list[str]] = {}

    @property
    def latest_release(self) -> int | None:
        return self.releases[-1] if self.releases else None

    def next_release_number(self) -> int:
        return len(self.releases) + 1

    def admit_release(self, number: int, actor: str, reason: str) -> None:
        check_attribution(actor, reason)
        if number != self.next_release_number():
            raise ConflictError(f"{self.key} v{number} is not the next version")
        self._release_admitted(number=number, actor=actor, reason=reason)

    @event("ReleaseAdmitted")
    def _release_admitted(self, number: int, actor: str, reason: str) -> None:
        self.releases.append(number)

    def require_release(self, number: int) -> None:
        if number not in self.releases:
            raise NotFoundError(f"task {self.key} has no release v{number}")

    def set_default(self, number: int, actor: str, reason: str) -> None:
        """Make ``number`` what every tenant without a pin, override or rollout gets."""
        check_attribution(actor, reason)
        self.require_release(number)
        if self.active_rollout is not None:
            raise ConflictError(
                f"task {self.key} has an active rollout {self.active_rollout}; complete or roll "
                "it back before setting the default directly"
            )
        if self.default_release == number:
            raise ConflictError(f"{self.key} v{number} is already the default")
        self._default_set(number=number, previous=self.default_release, actor=actor, reason=reason)

    @event("DefaultReleaseSet")
    def _default_set(self, number: int, previous: int | None, actor: str, reason: str) -> None:
        self.default_release = number

    def open_rollout(self, rollout_id: UUID, actor: str, reason: str) -> None:
        check_attribution(actor, reason)
        if self.active_rollout is not None:
            raise ConflictError(
                f"task {self.key} already has an active rollout {self.active_rollout}; only one "
                "rollout per task may be active"
            )
        self._rollout_opened(rollout_id=rollout_id, actor=actor, reason=reason)

    @event("RolloutOpened")
    def _rollout_opened(self, rollout_id: UUID, actor: str, reason: str) -> None:
        self.active_rollout = rollout_id
        self.rollouts.append(rollout_id)

    def close_rollout(
        self, rollout_id: UUID, outcome: str, new_default: int | None, actor: str, reason: str,
    ) -> None:
        check_attribution(actor, reason)
        if self.active_rollout != rollout_id:
            raise ConflictError(f"rollout {rollout_id} is not the active rollout of {self.key}")
        self._rollout_closed(rollout_id=rollout_id, outcome=outcome, new_default=new_default,
                             actor=actor, reason=reason)

    @event("RolloutClosed")
    def _rollout_closed(
        self, rollout_id: UUID, outcome: str, new_default: int | None, actor: str, reason: str,
    ) -> None:
        self.active_rollout = None
        if new_default is not None:
            self.default_release = new_default

    # ---- golden sets (the gate policy) ----------------------------------------------------

    @property
    def current_golden(self) -> GoldenSetRef | None:
        """The golden set version gate bundles must be computed on; None: there is none (the
        task's gated steps are refused unless an admin waived its gates: ``gate_policy``)."""
        golden = getattr(self, "golden_set", None)
        return GoldenSetRef.model_validate(golden) if golden else None

    @property
    def gate_thresholds(self) -> list[dict[str, Any]]:
        """The gates every bundle on the current golden set must have been decided with."""
        return list(getattr(self, "_gate_thresholds", []))

    def register_golden_set(self, name: str, content_hash: str, rows: int, actor: str,
                            reason: str, role: str,
                            thresholds: list[dict[str, Any]]) -> GoldenSetRef | None:
        """Make ``content_hash`` the current version of golden set ``name`` for this task, with
        the gates (``thresholds``, GateThreshold as JSON) its bundles must use: the task's gate
        policy.

        The same content is the same version (registering the current one again with the same
        gates records nothing and returns None); new content is the next version; an earlier
        content again is that earlier version, made current once more. Registering binds the
        task's releases to the gates from then on.
        """
        check_attribution(actor, reason)
        versions = getattr(self, "golden_versions", {}).get(name, [])
        version = versions.index(content_hash) + 1 if content_hash in versions \
            else len(versions) + 1
        ref = GoldenSetRef(name=name, version=version, content_hash=content_hash)
        if self.current_golden == ref and self.gate_thresholds == thresholds:
            return None
        if rows < 1:
            raise ConflictError("a golden set needs at least one row")
        if not thresholds:
            raise ConflictError("a gate policy needs at least one gate")
        self._golden_set_registered(name=ref.name, version=ref.version,
                                    content_hash=ref.content_hash, rows=rows,
                                    thresholds=thresholds, actor=actor, reason=reason, role=role)
        return ref

    @event("GoldenSetRegistered")
    def _golden_set_registered(self, name: str, version: int, content_hash: str, rows: int,
                               thresholds: list[dict[str, Any]], actor: str, reason: str,
                               role: str) -> None:
        if not hasattr(self, "golden_versions"):
            self.golden_versions = {}
        versions = self.golden_versions.setdefault(name, [])
        if content_hash not in versions:
            versions.append(content_hash)
        self.golden_set = {"name": name, "version": version, "content_hash": content_hash}
        self._gate_thresholds = list(thresholds)
        # evidence binds again: a registered golden set ends a waiver
        self._gate_waiver: dict[str, str] | None = None

    # ---- waiver (an admin declares the task ungated) ----------------------------------------

    @property
    def gate_waiver(self) -> GateWaiver | None:
        """The admin's recorded choice that this task needs no evidence; None when gates bind
        (a golden set registered after a waiver ends it)."""
        waiver = getattr(self, "_gate_waiver", None)
        return GateWaiver.model_validate(waiver) if waiver else None

    @property
    def gate_policy(self) -> GatePolicy:
        if self.current_golden is not None:
            return GatePolicy.GOLDEN_SET
        return GatePolicy.WAIVED if self.gate_waiver is not None else GatePolicy.REQUIRED

    def waive_gates(self, actor: str, reason: str, role: str) -> bool:
        """Declare this task ungated: its releases pass InternalTest and start rollouts
        without evidence, each passage naming this waiver. Admins only; refused once the task
        has a golden set (its gates bind); waiving again records nothing (returns False)."""
        check_attribution(actor, reason)
        check_waiver_role(role)
        golden = self.current_golden
        if golden is not None:
            raise ConflictError(
                f"task {self.key} has golden set {golden.name} v{golden.version} registered: "
                "its gates bind and cannot be waived")
        if self.gate_waiver is not None:
            return False
        self._gates_waived(actor=actor, reason=reason, role=role)
        return True

    @event("GatesWaived")
    def _gates_waived(self, actor: str, reason: str, role: str) -> None:
        self._gate_waiver = {"actor": actor, "role": role, "reason": reason}

    def withdraw_gate_waiver(self, actor: str, reason: str, role: str) -> bool:
        """Withdraw the waiver: the task is gated again (policy ``required``: its gated steps
        are refused until a golden set is registered) and may be waived again later. Admins
        only; with no waiver in force (none, or a golden set ended it) nothing is recorded
        (returns False). Passages the waiver already allowed are not undone."""
        check_attribution(actor, reason)
        check_waiver_role(role, "withdrawing a task's gate waiver")
        if self.gate_waiver is None:
            return False
        self._gate_waiver_withdrawn(actor=actor, reason=reason, role=role)
        return True

    @event("GateWaiverWithdrawn")
    def _gate_waiver_withdrawn(self, actor: str, reason: str, role: str) -> None:
        self._gate_waiver = None

    def summary(self) -> dict[str, Any]:
        waiver = self.gate_waiver
        return {
            "id": str(self.id), "kind": self.kind, "key": self.key, "releases": self.releases,
            "golden_set": getattr(self, "golden_set", None),
            "gate_policy": self.gate_policy.value,
            "gate_waiver": waiver.model_dump(mode="json") if waiver else None,
            "default_release": self.default_release,
            "active_rollout": str(self.active_rollout) if self.active_rollout else None,
            "rollouts": [str(r) for r in self.rollouts], "aggregate_version": self.version,
        }
