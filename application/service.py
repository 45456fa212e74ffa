"""The application layer: load the aggregates a command touches, decide, save them atomically.

Thin on purpose: rules live in ``relctl.domain``; this module only finds the aggregates,
calls them, and saves every aggregate a decision touched in one transaction, so the event store
either records the whole decision or none of it. Optimistic concurrency (the store's unique
(aggregate, version) key) turns a lost race into a ConflictError, never a silent overwrite.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, OperationalError
from relctl.domain.base import ControlAggregate, check_attribution
from relctl.domain.blueprint import Blueprint
from relctl.domain.changes import breaking_changes, next_task_key
from relctl.domain.errors import ConflictError, NotFoundError, UnavailableError, ValidationError
from relctl.domain.gate_policy import GatePolicy, check_waiver_role
from relctl.domain.gates import (
    GateEvaluated,
    GateThreshold,
    PromotionStep,
    StepAcknowledgement,
    check_thresholds,
    default_thresholds,
    gate_passage,
    passes_internal_test,
    policy_gates,
    uses_policy,
)
from relctl.domain.ids import blueprint_id, release_id, task_id, tenant_id
from relctl.domain.release import STAGES, Release, ReleaseSpec
from relctl.domain.reset import ResetPlan, plan_reset
from relctl.domain.resolution import ControlView
from relctl.domain.rollout import Rollout
from relctl.domain.task import Task
from relctl.domain.tenant import DEFAULT_PIN_DAYS, Tenant

A = TypeVar("A", bound=ControlAggregate)

# The role the authenticated caller acts in (admin, operator, ... or the guard's service role).
# Set at the edge that authenticated the caller (the API's role check, the command consumer);
# ``ControlPlane._save`` stamps it on every event of the decision, beside the actor.
ACTING_ROLE: ContextVar[str | None] = ContextVar("relctl_acting_role", default=None)


@contextmanager
def acting_as(role: str | None) -> Iterator[None]:
    """Record ``role`` in the events of every command issued inside this block."""
    token = ACTING_ROLE.set(role)
    try:
        yield
    finally:
        ACTING_ROLE.reset(token)


def _caller_role(role: str | None) -> str:
    """The role a gated step is decided in: the caller's explicit one, else the one the edge
    authenticated (:func:`acting_as`), else the least privileged that may take the step."""
    return role or ACTING_ROLE.get() or "operator"


def stamp_role(aggregates: Sequence[ControlAggregate], role: str | None) -> None:
    """Write ``role`` into the aggregates' pending events (stored with them, like the actor).

    An extra attribute of an eventsourcing event is stored with its state and ignored when the
    event is applied (the library passes a method only the parameters it declares), so events
    recorded before roles existed and events with a role read back alike."""
    if role is None:
        return
    for aggregate in aggregates:
        for pending in aggregate.pending_events:
            if getattr(pending, "role", None) is None:
                object.__setattr__(pending, "role", role)


class Outcome(dict[str, Any]):
    """What a command returns: the aggregate after it, and whether anything was recorded."""


def _outcome(aggregate: ControlAggregate, changed: bool = True, note: str | None = None) -> Outcome:
    result = Outcome(aggregate=aggregate.summary(), changed=changed)
    if note:
        result["note"] = note
    return result


class ControlPlane(Application[UUID]):
    """Commands and reads over the control aggregates."""

    name = "relctl"
    is_snapshotting_enabled = False

    # ---- persistence helpers -------------------------------------------------------------

    def _load(self, aggregate_id: UUID, kind: type[A], what: str) -> A:
        try:
            aggregate: Any = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFoundError(f"{what} does not exist") from None
        except OperationalError as exc:
            raise UnavailableError(f"event store unavailable: {exc}") from exc
        if not isinstance(aggregate, kind):
            raise NotFoundError(f"{what} does not exist")
        return aggregate

    def _save(self, *aggregates: ControlAggregate) -> None:
        """Save atomically. Pass aggregates in the order their events were triggered, so the
        notification log's order agrees with the events' timestamps (time-travel relies on it)."""
        stamp_role(aggregates, ACTING_ROLE.get())
        try:
            self.save(*aggregates)
        except IntegrityError:
            names = ", ".join(f"{a.kind} {a.id}" for a in aggregates)
            raise ConflictError(
                f"{names} changed concurrently; another command won the race. Reload and retry."
            ) from None
        except OperationalError as exc:
            raise UnavailableError(f"event store unavailable: {exc}") from exc

    def _exists(self, aggregate_id: UUID) -> bool:
        try:
            events = self.repository.event_store.get(aggregate_id, limit=1)
            return next(iter(events), None) is not None
        except OperationalError as exc:
            raise UnavailableError(f"event store unavailable: {exc}") from exc

    @staticmethod
    def _expect(aggregate: ControlAggregate, expected_version: int | None) -> None:
        if expected_version is not None and aggregate.version != expected_version:
            raise ConflictError(
                f"{aggregate.kind} {aggregate.id} is at version {aggregate.version}, not "
                f"{expected_version}; someone changed it since you read it"
            )

    def task(self, key: str) -> Task:
        return self._load(task_id(key), Task, f"task {key!r}")

    def release(self, task: str, number: int) -> Release:
        return self._load(release_id(task, number), Release, f"release {task} v{number}")

    def tenant(self, key: str) -> Tenant:
        return self._load(tenant_id(key), Tenant, f"tenant {key!r}")

    def blueprint(self, name: str) -> Blueprint:
        return self._load(blueprint_id(name), Blueprint, f"blueprint {name!r}")

    def rollout(self, rollout_id: UUID) -> Rollout:
        return self._load(rollout_id, Rollout, f"rollout {rollout_id}")

    def history(self, aggregate_id: UUID) -> Sequence[Any]:
        try:
            return list(self.repository.event_store.get(aggregate_id))
        except OperationalError as exc:
            raise UnavailableError(f"event store unavailable: {exc}") from exc

    # ---- releases ------------------------------------------------------------------------

    def _compiled(self, version_id: str | None) -> dict[str, Any] | None:
        if version_id is None:
            return None
        name = version_id.split("@v", 1)[0]
        return self.blueprint(name).compiled(version_id)

    def create_release(self, task: str, spec: dict[str, Any] | ReleaseSpec, actor: str,
                       reason: str) -> Outcome:
        check_attribution(actor, reason)
        candidate = ReleaseSpec.from_dict(spec)
        blueprint = self._compiled(candidate.blueprint_version_id)
        try:
            index = self.task(task)
        except NotFoundError:
            index = Task.open(task, actor=actor, reason=reason)
        if index.latest_release is not None:
            previous = self.release(task, index.latest_release).spec
            reasons = breaking_changes(previous, candidate,
                                       self._compiled(previous.blueprint_version_id), blueprint)
            if reasons:
                raise ValidationError(
                    f"breaking change to {task} ({'; '.join(reasons)}): create it as a new task "
                    f"version, e.g. {next_task_key(task)}, so tenants migrate when ready"
                )
        number = index.next_release_number()
        index.admit_release(number, actor=actor, reason=reason)
        release = Release.draft(task, number, candidate, actor=actor, reason=reason)
        self._save(index, release)
        return _outcome(release)

    def revise_release(
        self, task: str, number: int, spec: dict[str, Any] | ReleaseSpec, actor: str,
        reason: str, expected_version: int | None = None,
    ) -> Outcome:
        release = self.release(task, number)
        self._expect(release, expected_version)
        candidate = ReleaseSpec.from_dict(spec)
        blueprint = self._compiled(candidate.blueprint_version_id)
        if number > 1:
            previous = self.release(task, number - 1).spec
            reasons = breaking_changes(previous, candidate,
                                       self._compiled(previous.blueprint_version_id), blueprint)
            if reasons:
                raise ValidationError(
                    f"breaking change to {task} ({'; '.join(reasons)}): create it as a new task "
                    f"version, e.g. {next_task_key(task)}, so tenants migrate when ready")
        release.revise(candidate, actor=actor, reason=reason)
        self._save(release)
        return _outcome(release)

    def promote_release(
        self, task: str, number: int, stage: str, actor: str, reason: str,
        expected_version: int | None = None, *, role: str | None = None,
        acknowledgements: Sequence[StepAcknowledgement] = (), break_glass: str | None = None,
    ) -> Outcome:
        """Move a release forward; passing InternalTest (to Beta or Stable) is a gated step:
        see :meth:`_pass_gates`. ``role`` is the caller's (break-glass needs admin)."""
        role = _caller_role(role)
        release = self.release(task, number)
        self._expect(release, expected_version)
        if passes_internal_test(release.stage, stage, STAGES):
            passage = self._pass_gates(self.task(task), release,
                                       PromotionStep.PASS_INTERNAL_TEST, actor, role,
                                       acknowledgements, break_glass)
            release.promote(stage, actor=actor, reason=reason)
            release.record_gate_passage(passage, actor=actor, reason=reason, role=role)
        else:
            if acknowledgements or break_glass is not None:
                raise ValidationError(
                    f"{release.stage} -> {stage} is not a gated step: acknowledgements and "
                    "break-glass apply to passing InternalTest (to Beta or Stable) only")
            release.promote(stage, actor=actor, reason=reason)
        self._save(release)
        return _outcome(release)

    def _require_servable(self, task: str, number: int, what: str) -> None:
        """Only a frozen (non-Draft) release may serve a customer: what ran must be reproducible."""
        stage = self.release(task, number).stage
        if stage == "Draft":
            raise ConflictError(f"{task} v{number} is a Draft (its content can still change); "
                                f"promote it before {what} can use it")
        if stage == "InternalTest" and self.task(task).gate_policy is not GatePolicy.WAIVED:
            # Otherwise a pin or an override would put a customer on a release that never
            # passed the gates its task requires.
            raise ConflictError(
                f"{task} is gated and v{number} is in InternalTest; it must pass its gates "
                f"(promote it to Beta or Stable) before {what} can use it")

    def set_default_release(self, task: str, number: int, actor: str, reason: str) -> Outcome:
        index = self.task(task)
        release = self.release(task, number)
        if release.stage in ("Draft", "Deprecated"):
            raise ConflictError(
                f"{task} v{number} is {release.stage}; promote it before it serves production"
            )
        if release.stage == "InternalTest" and index.gate_policy is not GatePolicy.WAIVED:
            raise ConflictError(
                f"{task} is gated and v{number} has not passed InternalTest: promote it "
                "through its gates (or roll it out) first")
        index.set_default(number, actor=actor, reason=reason)
        self._save(index)
        return _outcome(index)

    # ---- blueprints ----------------------------------------------------------------------

    def create_blueprint(self, name: str, stages: Any, actor: str, reason: str) -> Outcome:
        blueprint = Blueprint.create(name, stages, actor=actor, reason=reason)
        self._save(blueprint)
        return _outcome(blueprint)

    def update_blueprint(self, name: str, stages: Any, actor: str, reason: str,
                         expected_version: int | None = None) -> Outcome:
        blueprint = self.blueprint(name)
        self._expect(blueprint, expected_version)
        blueprint.update_draft(stages, actor=actor, reason=reason)
        self._save(blueprint)
        return _outcome(blueprint)

    def confirm_critical(self, name: str, stage: str, behaviour: str, actor: str,
                         reason: str) -> Outcome:
        blueprint = self.blueprint(name)
        blueprint.confirm_critical(stage, behaviour, actor=actor, reason=reason)
        self._save(blueprint)
        return _outcome(blueprint)

    def publish_blueprint(self, name: str, actor: str, reason: str,
                          expected_version: int | None = None) -> Outcome:
        blueprint = self.blueprint(name)
        self._expect(blueprint, expected_version)
        version = blueprint.publish(actor=actor, reason=reason)
        self._save(blueprint)
        result = _outcome(blueprint)
        result["published"] = version["id"]
        return result

    # ---- tenants -------------------------------------------------------------------------

    def register_tenant(self, key: str, name: str, cohort: str, actor: str,
                        reason: str) -> Outcome:
        tenant = Tenant.register(key, name, cohort, actor=actor, reason=reason)
        if self._exists(tenant.id):
            raise ConflictError(f"tenant {key!r} already exists; change it with its own "
                                "commands (cohort, flags, ...)")
        self._save(tenant)
        return _outcome(tenant)

    def move_tenant(self, key: str, cohort: str, actor: str, reason: str) -> Outcome:
        tenant = self.tenant(key)
        tenant.move_to_cohort(cohort, actor=actor, reason=reason)
        self._save(tenant)
        return _outcome(tenant)

    def flip_flag(self, key: str, flag: str, enabled: bool, actor: str, reason: str) -> Outcome:
        tenant = self.tenant(key)
        changed = tenant.flip_flag(flag, enabled, actor=actor, reason=reason)
        if changed:
            self._save(tenant)
        return _outcome(tenant, changed, None if changed else f"{flag} is already {enabled}")

    def set_override(self, key: str, task: str, kind: str, value: str, actor: str, reason: str,
                     base_release: int | None = None) -> Outcome:
        tenant = self.tenant(key)
        index = self.task(task)
        if base_release is None:
            existing = tenant.overrides.get(task, {}).get("base_release")
            base_release = existing if existing is not None else index.default_release
        if base_release is None:
            raise ConflictError(f"task {task} has no default release for the override to build "
                                "on; give base_release explicitly")
        index.require_release(base_release)
        self._require_servable(task, base_release, "an override")
        tenant.set_override(task, kind, value, base_release, actor=actor, reason=reason)
        self._save(tenant)
        return _outcome(tenant)

    def clear_override(self, key: str, task: str, kind: str, actor: str, reason: str) -> Outcome:
        tenant = self.tenant(key)
        tenant.clear_override(task, kind, actor=actor, reason=reason)
        self._save(tenant)
        return _outcome(tenant)

    def pin(self, key: str, task: str, release: int, actor: str, reason: str,
            days: int = DEFAULT_PIN_DAYS) -> Outcome:
        tenant = self.tenant(key)
        self.task(task).require_release(release)
        self._require_servable(task, release, "a pin")
        tenant.pin(task, release, days, datetime.now(UTC), actor=actor, reason=reason)
        self._save(tenant)
        return _outcome(tenant)

    def unpin(self, key: str, task: str, actor: str, reason: str) -> Outcome:
        tenant = self.tenant(key)
        tenant.unpin(task, actor=actor, reason=reason)
        self._save(tenant)
        return _outcome(tenant)

    def reset_tenant(self, key: str, task: str | None, actor: str, reason: str) -> Outcome:
        tenant = self.tenant(key)
        tenant.reset_to_defaults(task, actor=actor, reason=reason)
        self._save(tenant)
        return _outcome(tenant)

    def reset_plan(self, key: str, task: str | None, at: datetime | None = None) -> ResetPlan:
        """What ``reset_tenant(key, task)`` would clear, and the tenant's answers before and
        after it (a dry run: nothing is recorded)."""
        tenant = self.tenant(key)
        view = ControlView()
        view.aggregates[tenant.id] = tenant
        for name in [task] if task else sorted(set(tenant.overrides) | set(tenant.pins)):
            try:
                index = self.task(name)
            except NotFoundError:
                continue
            view.aggregates[index.id] = index
            for number in index.releases:
                release = self.release(name, number)
                view.aggregates[release.id] = release
            if index.active_rollout is not None:
                view.aggregates[index.active_rollout] = self.rollout(index.active_rollout)
        return plan_reset(view, key, task, at or datetime.now(UTC))

    # ---- rollouts ------------------------------------------------------------------------

    def plan_rollout(
        self, task: str, candidate: int, actor: str, reason: str, baseline: int | None = None,
        steps: Any = None, guard_rules: Any = None, shadow: bool = False,
    ) -> Outcome:
        index = self.task(task)
        baseline = index.default_release if baseline is None else baseline
        if baseline is None:
            raise ConflictError(f"task {task} has no default release to roll out from; set one "
                                "or pass baseline explicitly")
        for number, role in ((baseline, "baseline"), (candidate, "candidate")):
            release = self.release(task, number)
            if release.stage in ("Draft", "Deprecated"):
                raise ConflictError(f"{role} {task} v{number} is {release.stage}; promote it to "
                                    "InternalTest or later first")
        rollout = Rollout.plan(task, baseline, candidate, steps, guard_rules, shadow,
                               actor=actor, reason=reason)
        index.open_rollout(rollout.id, actor=actor, reason=reason)
        self._save(rollout, index)
        return _outcome(rollout)

    def _rollout_command(
        self, rollout_id: UUID, command: str, actor: str, reason: str,
        expected_version: int | None, **kwargs: Any,
    ) -> Outcome:
        rollout = self.rollout(rollout_id)
        self._expect(rollout, expected_version)
        changed = getattr(rollout, command)(actor=actor, reason=reason, **kwargs)
        changed = True if changed is None else changed
        if not changed:
            return _outcome(rollout, False, f"rollout is already {rollout.state}; nothing recorded")
        if rollout.state in ("RolledBack", "Completed"):
            index = self.task(rollout.task)
            # Completing makes the candidate the default; rolling back makes the baseline the
            # default (it usually already is), so every tenant of the rollout resolves to it.
            target = rollout.candidate if rollout.state == "Completed" else rollout.baseline
            new_default = None if target == index.default_release else target
            index.close_rollout(rollout.id, rollout.state, new_default, actor=actor, reason=reason)
            self._save(rollout, index)
        else:
            self._save(rollout)
        return _outcome(rollout)

    def start_rollout(self, rollout_id: UUID, actor: str, reason: str,
                      expected_version: int | None = None, *, role: str | None = None,
                      acknowledgements: Sequence[StepAcknowledgement] = (),
                      break_glass: str | None = None) -> Outcome:
        """Start a planned rollout: a gated step for its candidate (see :meth:`_pass_gates`);
        the passage is saved on the candidate release with the rollout's ``Started``."""
        role = _caller_role(role)
        rollout = self.rollout(rollout_id)
        self._expect(rollout, expected_version)
        release = self.release(rollout.task, rollout.candidate)
        rollout.start(actor=actor, reason=reason)  # refuses first unless the rollout is Planned
        passage = self._pass_gates(self.task(rollout.task), release, PromotionStep.START_ROLLOUT,
                                   actor, role, acknowledgements, break_glass)
        release.record_gate_passage(passage, actor=actor, reason=reason, role=role)
        self._save(rollout, release)
        return _outcome(rollout)

    def advance_rollout(self, rollout_id: UUID, actor: str, reason: str,
                        expected_version: int | None = None) -> Outcome:
        return self._rollout_command(rollout_id, "advance", actor, reason, expected_version)

    def pause_rollout(self, rollout_id: UUID, actor: str, reason: str,
                      evidence: dict[str, Any] | None = None,
                      expected_version: int | None = None) -> Outcome:
        return self._rollout_command(rollout_id, "pause", actor, reason, expected_version,
                                     evidence=evidence)

    def resume_rollout(self, rollout_id: UUID, actor: str, reason: str,
                       expected_version: int | None = None, may_unfreeze: bool = True) -> Outcome:
        return self._rollout_command(rollout_id, "resume", actor, reason, expected_version,
                                     may_unfreeze=may_unfreeze)

    def freeze_rollout(self, rollout_id: UUID, actor: str, reason: str,
                       evidence: dict[str, Any] | None = None,
                       expected_version: int | None = None) -> Outcome:
        return self._rollout_command(rollout_id, "freeze", actor, reason, expected_version,
                                     evidence=evidence)

    def roll_back(self, rollout_id: UUID, actor: str, reason: str,
                  evidence: dict[str, Any] | None = None,
                  expected_version: int | None = None) -> Outcome:
        return self._rollout_command(rollout_id, "roll_back", actor, reason, expected_version,
                                     evidence=evidence)

    def complete_rollout(self, rollout_id: UUID, actor: str, reason: str,
                         expected_version: int | None = None) -> Outcome:
        return self._rollout_command(rollout_id, "complete", actor, reason, expected_version)

    # ---- release gates -------------------------------------------------------------------

    def _pass_gates(
        self, index: Task, release: Release, step: PromotionStep, actor: str, role: str,
        acknowledgements: Sequence[StepAcknowledgement], break_glass: str | None,
    ) -> dict[str, Any]:
        """Decide a gated step for ``release`` against its task's current golden set: refused
        (ConflictError, nothing recorded) while a Block gate fails or is Inconclusive, or there
        is no bundle on the current version; Conditional failures need acknowledgements; an
        admin's break-glass passes anyway. A task without a golden set is refused too, unless
        an admin waived its gates (:meth:`waive_gates`)."""
        return gate_passage(
            release_id=release.display_id, step=step, golden=index.current_golden,
            bundles=release.gate_bundles, actor=actor, role=role,
            acknowledgements=acknowledgements, break_glass=break_glass,
            policy=index.gate_thresholds or None, waiver=index.gate_waiver)

    def waive_gates(self, task: str, actor: str, reason: str,
                    role: str | None = None) -> Outcome:
        """Declare ``task`` ungated (admins only; ``Task.GatesWaived``, with the reason): its
        releases then pass gated steps without evidence, each passage naming the waiver. Opens
        the task if it has no release yet, so a waiver can precede the first release."""
        role = _caller_role(role)
        try:
            index = self.task(task)
        except NotFoundError:
            check_waiver_role(role)
            index = Task.open(task, actor=actor, reason=reason)
        if not index.waive_gates(actor=actor, reason=reason, role=role):
            return _outcome(index, False, f"task {task}'s gates are already waived; "
                                          "nothing recorded")
        self._save(index)
        return _outcome(index)

    def withdraw_gate_waiver(self, task: str, actor: str, reason: str,
                             role: str | None = None) -> Outcome:
        """Withdraw ``task``'s gate waiver (admins only; ``Task.GateWaiverWithdrawn``, with the
        reason): its gated steps are refused again until a golden set is registered, and it may
        be waived again. Passages the waiver allowed stay recorded; with no waiver in force
        nothing is recorded."""
        role = _caller_role(role)
        check_waiver_role(role, "withdrawing a task's gate waiver")
        index = self.task(task)
        if not index.withdraw_gate_waiver(actor=actor, reason=reason, role=role):
            return _outcome(index, False, f"task {task}'s gates are not waived; "
                                          "nothing recorded")
        self._save(index)
        return _outcome(index)

    def register_golden_set(self, task: str, name: str, content_hash: str, rows: int,
                            actor: str, reason: str, role: str,
                            thresholds: Sequence[GateThreshold] | None = None) -> Outcome:
        """Make a stored golden-set content the task's current version, with the gates its
        bundles must use (default: the issue's gates): the task's gate policy. The content
        itself is stored by the caller (content-addressed, never mutated)."""
        gates = list(thresholds) if thresholds is not None else default_thresholds()
        check_thresholds(gates)
        index = self.task(task)
        ref = index.register_golden_set(name, content_hash, rows, actor=actor, reason=reason,
                                        role=role, thresholds=policy_gates(gates))
        if ref is None:
            return _outcome(index, False, f"{name} {content_hash[:19]} with these gates is "
                                          "already the current policy; nothing recorded")
        self._save(index)
        return _outcome(index)

    def record_gate_evaluation(self, task: str, number: int, evaluation: GateEvaluated,
                               actor: str, reason: str, role: str) -> Outcome:
        """Record a gate bundle on the release it evaluated. The bundle must be on a golden-set
        version registered for the task, and its candidate arm must be the release as stored
        (same prompt hash and model), so evidence cannot be filed against another artifact."""
        index = self.task(task)
        release = self.release(task, number)
        if evaluation.task_id != task:
            raise ValidationError(f"the bundle is for task {evaluation.task_id}, not {task}")
        known = getattr(index, "golden_versions", {}).get(evaluation.golden_set.name, [])
        ref = evaluation.golden_set
        if ref.content_hash not in known or known.index(ref.content_hash) + 1 != ref.version:
            raise ValidationError(
                f"golden set {ref.name} v{ref.version} ({ref.content_hash[:19]}) is not "
                f"registered for task {task}; register it first")
        if not uses_policy(evaluation, index.gate_thresholds):
            raise ValidationError(
                f"the bundle was decided with other gates than task {task}'s gate policy "
                "(registered with its golden set); run the gates with the policy "
                "(relctl gate run --release reads it from the API)")
        arm = evaluation.runner.get("candidate", {}) if evaluation.runner else {}
        if arm.get("prompt_hash") != release.prompt_hash or \
                arm.get("model") != release.content.get("model_version"):
            raise ValidationError(
                f"the bundle's candidate (prompt {str(arm.get('prompt_hash'))[:19]}, model "
                f"{arm.get('model')}) is not {release.display_id} as stored (prompt "
                f"{release.prompt_hash[:19]}, model {release.content.get('model_version')})")
        payload = evaluation.model_copy(update={"evaluated_by": actor}).model_dump(mode="json")
        release.record_gate_evaluation(payload, actor=actor, reason=reason, role=role)
        self._save(release)
        result = _outcome(release)
        result["note"] = f"bundle {evaluation.bundle_id} recorded"
        return result
