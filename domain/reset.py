"""Reset to defaults, planned before it is done: what a reset of a tenant would clear, and
what the tenant resolves to before and after it.

The plan runs the tenant's real decision (``Tenant.reset_to_defaults``) on a copy and resolves
both states with the same pure ``resolve``, so a dry run shows exactly what the command records:
nothing here writes.
"""

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relctl.domain.errors import ConflictError, NotFoundError
from relctl.domain.resolution import ControlView, resolve
from relctl.domain.tenant import Tenant

PLAN_ACTOR = "dry-run"
PLAN_REASON = "what a reset to defaults would change"


@dataclass(frozen=True)
class ClearedOverride:
    kind: str
    base_release: int | None
    by: str
    reason: str


@dataclass(frozen=True)
class ClearedPin:
    release: int
    expires_at: str
    active: bool
    by: str
    reason: str


@dataclass(frozen=True)
class Answer:
    """What (tenant, task) resolves to: the release and where it comes from."""

    release: int
    source: str
    pipeline: str
    explanation: list[str]


@dataclass(frozen=True)
class TaskReset:
    task: str
    overrides: list[ClearedOverride]
    pin: ClearedPin | None
    before: Answer | None  # None: the task has no release in force
    after: Answer | None
    release_changes: bool  # does the tenant run another release of the task after the reset?


@dataclass(frozen=True)
class ResetPlan:
    """A reset of ``tenant`` (one task, or every task when ``task`` is None) at ``at``."""

    tenant: str
    task: str | None
    at: datetime
    tasks: list[TaskReset] = field(default_factory=list)
    note: str | None = None  # why nothing would change


def _answer(view: ControlView, tenant: str, task: str, at: datetime) -> Answer | None:
    try:
        found = resolve(view, tenant, task, at)
    except NotFoundError:
        return None
    return Answer(found.release, found.source, found.pipeline, found.explanation)


def plan_reset(view: ControlView, tenant_key: str, task: str | None, at: datetime) -> ResetPlan:
    """What ``reset_to_defaults(task)`` would clear for ``tenant_key`` in ``view`` at ``at``."""
    tenant = view.tenant(tenant_key)
    if tenant is None:
        raise NotFoundError(f"tenant {tenant_key!r} does not exist")
    after_tenant: Tenant = copy.deepcopy(tenant)
    try:
        after_tenant.reset_to_defaults(task, actor=PLAN_ACTOR, reason=PLAN_REASON)
    except ConflictError as exc:
        return ResetPlan(tenant_key, task, at, note=str(exc))
    after_view = ControlView()
    after_view.aggregates = {**view.aggregates, tenant.id: after_tenant}
    tasks = sorted(set(tenant.overrides) | set(tenant.pins)) if task is None else [task]
    planned = []
    for key in tasks:
        override: dict[str, Any] = tenant.overrides.get(key, {})
        pin = tenant.pins.get(key)
        if not override and pin is None:
            continue
        before, after = _answer(view, tenant_key, key, at), _answer(after_view, tenant_key, key, at)
        planned.append(TaskReset(
            task=key,
            overrides=[ClearedOverride(kind, override.get("base_release"), entry["by"],
                                       entry["reason"])
                       for kind, entry in sorted(override.get("values", {}).items())],
            pin=None if pin is None else ClearedPin(
                pin["release"], pin["expires_at"], tenant.active_pin(key, at) is not None,
                pin["by"], pin["reason"]),
            before=before, after=after,
            release_changes=(before and before.release) != (after and after.release)))
    return ResetPlan(tenant_key, task, at, planned)
