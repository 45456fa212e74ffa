"""Resolution: which release a tenant's conversation runs, and why.

A pure function of the control state. The state is a fold of the control events, so resolving
"as of" an instant is folding the events recorded up to that instant: changes apply to
conversations that start after them, and a backfill is a separate, deliberate act.

Precedence, most specific first: an unexpired pin, a tenant override, the task's active
rollout (candidate if the tenant is in the current step, baseline otherwise; in shadow mode
the tenant stays on the baseline and the candidate runs alongside), the task's default release.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from relctl.domain.base import ControlAggregate
from relctl.domain.errors import NotFoundError
from relctl.domain.ids import release_id, task_id, tenant_id
from relctl.domain.release import Release
from relctl.domain.rollout import Rollout, tenant_bucket
from relctl.domain.task import Task
from relctl.domain.tenant import FLAGS, Tenant


class ControlView:
    """Every control aggregate, rebuilt by applying events in store order."""

    def __init__(self) -> None:
        self.aggregates: dict[UUID, ControlAggregate] = {}
        self.last_timestamp: datetime | None = None

    def apply(self, domain_event: Any) -> None:
        current = self.aggregates.get(domain_event.originator_id)
        aggregate = domain_event.mutate(current)  # type: ignore[attr-defined]
        self.aggregates[domain_event.originator_id] = aggregate
        self.last_timestamp = domain_event.timestamp

    def get(self, aggregate_id: UUID, kind: type) -> Any:
        aggregate = self.aggregates.get(aggregate_id)
        return aggregate if isinstance(aggregate, kind) else None

    def task(self, key: str) -> Task | None:
        return self.get(task_id(key), Task)  # type: ignore[no-any-return]

    def tenant(self, key: str) -> Tenant | None:
        return self.get(tenant_id(key), Tenant)  # type: ignore[no-any-return]

    def release(self, task: str, number: int) -> Release | None:
        return self.get(release_id(task, number), Release)  # type: ignore[no-any-return]

    def rollout(self, rollout_id: UUID) -> Rollout | None:
        return self.get(rollout_id, Rollout)  # type: ignore[no-any-return]

    def release_detail(self, task: str, number: int) -> dict[str, Any]:
        """What a producer must run for release ``number`` (a subclass may memoise it)."""
        return _release_detail(self, task, number)


@dataclass
class Resolution:
    tenant: str
    task: str
    release: int
    source: str
    pipeline: str
    flags: dict[str, bool]
    shadow_release: int | None = None
    rollout: dict[str, Any] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    explanation: list[str] = field(default_factory=list)
    release_detail: dict[str, Any] = field(default_factory=dict)
    # In shadow mode, what the shadow arm must run and stamp on its records (prompt hash,
    # concrete model, temperature, seed, schema and blueprint version): a producer may resolve
    # but may not read releases, so resolve gives it both arms.
    shadow_release_detail: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant, "task": self.task, "release": self.release,
            "release_detail": self.release_detail, "source": self.source,
            "shadow_release": self.shadow_release,
            "shadow_release_detail": self.shadow_release_detail, "rollout": self.rollout,
            "pipeline": self.pipeline, "flags": self.flags, "overrides": self.overrides,
            "explanation": self.explanation,
        }


def _release_detail(view: ControlView, task: str, number: int) -> dict[str, Any]:
    release = view.release(task, number)
    if release is None:
        return {"number": number}
    content = release.content
    return {
        "number": number, "id": str(release.id), "stage": release.stage,
        "prompt_hash": release.prompt_hash, "model_provider": content["model_provider"],
        "model_name": content["model_name"], "model_version": content["model_version"],
        "temperature": content["temperature"], "seed": content["seed"],
        "output_schema_version": content["output_schema_version"],
        "blueprint_version_id": content.get("blueprint_version_id"),
    }


def _choose(
    view: ControlView, task: Task, tenant_key: str, tenant: Tenant | None, at: datetime,
) -> tuple[int | None, str, int | None, dict[str, Any] | None, list[str]]:
    why: list[str] = []
    pin = tenant.active_pin(task.key, at) if tenant else None
    if pin is not None:
        why.append(f"pinned to v{pin['release']} by {pin['by']} until {pin['expires_at']}: "
                   f"{pin['reason']}")
        return pin["release"], "pin", None, None, why
    if tenant and tenant.pins.get(task.key):
        why.append(f"pin to v{tenant.pins[task.key]['release']} expired "
                   f"{tenant.pins[task.key]['expires_at']}; ignored")
    override = tenant.overrides.get(task.key) if tenant else None
    if override is not None:
        base = override["base_release"] or task.default_release
        kinds = ", ".join(sorted(override["values"]))
        why.append(f"tenant overrides {kinds} of {task.key}, so it stays on v{base} and does "
                   "not receive global updates (reset to defaults to follow them again)")
        return base, "override", None, None, why
    rollout = view.rollout(task.active_rollout) if task.active_rollout else None
    if rollout is not None and rollout.state != "Planned":
        cohort = tenant.cohort if tenant else None
        # A Completed rollout served its candidate to everyone; its task may still point at it
        # for an instant (the task's RolloutClosed event is stamped after the rollout's).
        inside = rollout.includes(tenant_key, cohort) or rollout.state == "Completed"
        info = {"id": str(rollout.id), "state": rollout.state, "step": rollout.current_step,
                "step_index": rollout.step_index, "in_step": inside, "shadow": rollout.shadow}
        where = (f"bucket {tenant_bucket(task.key, tenant_key):.2f} vs {rollout.current_step}%"
                 if rollout.step_mode == "percent"
                 else f"cohort {cohort or 'general'} vs step {rollout.current_step}")
        if rollout.shadow:
            why.append(f"rollout {rollout.id} ({rollout.state}) runs v{rollout.candidate} in "
                       f"shadow mode; scores come from baseline v{rollout.baseline} ({where})")
            return rollout.baseline, "rollout-baseline", (
                rollout.candidate if inside else None), info, why
        if inside:
            why.append(f"in the current step of rollout {rollout.id} ({rollout.state}, {where}): "
                       f"candidate v{rollout.candidate}")
            return rollout.candidate, "rollout-candidate", None, info, why
        why.append(f"not yet in rollout {rollout.id} ({rollout.state}, {where}): "
                   f"baseline v{rollout.baseline}")
        return rollout.baseline, "rollout-baseline", None, info, why
    if task.default_release is not None:
        why.append(f"default release of {task.key} is v{task.default_release}")
    return task.default_release, "default", None, None, why


def resolve(view: ControlView, tenant_key: str, task_key: str, at: datetime) -> Resolution:
    """The effective release for (tenant, task) in ``view`` at instant ``at``."""
    task = view.task(task_key)
    if task is None:
        raise NotFoundError(f"no task {task_key!r} was known at {at.isoformat()}")
    tenant = view.tenant(tenant_key)
    number, source, shadow, rollout, why = _choose(view, task, tenant_key, tenant, at)
    if number is None:
        raise NotFoundError(
            f"task {task_key} has no release in force at {at.isoformat()}; set a default "
            "(relctl release set-default) or start a rollout"
        )
    flags = dict(tenant.flags) if tenant else dict.fromkeys(FLAGS, False)
    if tenant is None:
        why.append(f"tenant {tenant_key} is not registered: all flags off, cohort general")
    if flags["enable_legacy_pipeline_fallback"]:
        pipeline = "legacy"
        why.append("enable_legacy_pipeline_fallback is on: production uses the legacy pipeline")
    elif not flags["enable_blueprint_production_eval"]:
        pipeline = "legacy"
        why.append("enable_blueprint_production_eval is off: production uses the legacy "
                   "pipeline")
    else:
        pipeline = "blueprint"
    overrides = tenant.overrides.get(task_key, {}) if tenant else {}
    return Resolution(
        tenant=tenant_key, task=task_key, release=number, source=source, pipeline=pipeline,
        flags=flags, shadow_release=shadow, rollout=rollout, overrides=overrides,
        explanation=why, release_detail=view.release_detail(task_key, number),
        shadow_release_detail=(None if shadow is None
                               else view.release_detail(task_key, shadow)),
    )
