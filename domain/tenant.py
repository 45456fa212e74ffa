"""Tenant: per-company feature flags, overrides, pins and cohort.

Five flags turn features on or off per company without redeploying; overrides record who and
why, for an overrides inventory and a reset to defaults; a customer may pin an older version
for 1-60 days (30 by default).
"""

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from eventsourcing.domain import event
from relctl.domain.base import MAX_NAME_LENGTH, ControlAggregate, check_attribution, check_text
from relctl.domain.errors import ConflictError, NotFoundError, ValidationError
from relctl.domain.ids import check_key, tenant_id


class Flag(StrEnum):
    """A per-tenant feature flag."""

    ENABLE_BLUEPRINTS = "enable_blueprints"
    ENABLE_BLUEPRINT_PUBLISH = "enable_blueprint_publish"
    ENABLE_BLUEPRINT_SANDBOX = "enable_blueprint_sandbox"
    ENABLE_BLUEPRINT_PRODUCTION_EVAL = "enable_blueprint_production_eval"
    ENABLE_LEGACY_PIPELINE_FALLBACK = "enable_legacy_pipeline_fallback"


class Cohort(StrEnum):
    """Rollout stages in order (internal alpha, closed beta, open beta, general): a tenant in
    an earlier cohort is included in every later step."""

    INTERNAL = "internal"
    CLOSED_BETA = "closed_beta"
    OPEN_BETA = "open_beta"
    GENERAL = "general"


class OverrideKind(StrEnum):
    PROMPT = "prompt"
    FILTER = "filter"


# The stored strings, in order (events and views hold these, not the enum members).
FLAGS = tuple(f.value for f in Flag)
COHORTS = tuple(c.value for c in Cohort)
OVERRIDE_KINDS = tuple(k.value for k in OverrideKind)
DEFAULT_PIN_DAYS = 30
MAX_PIN_DAYS = 60


MAX_OVERRIDE_LENGTH = 200_000


def check_cohort(cohort: str) -> str:
    if cohort not in COHORTS:
        raise ValidationError(f"unknown cohort {cohort!r}; cohorts are {', '.join(COHORTS)}")
    return str(cohort)


class Tenant(ControlAggregate):
    kind = "tenant"

    @staticmethod
    def create_id(key: str, **_: Any) -> Any:
        return tenant_id(key)

    @classmethod
    def register(cls, key: str, name: str, cohort: str, actor: str, reason: str) -> "Tenant":
        check_key("tenant", key)
        check_attribution(actor, reason)
        cohort = check_cohort(cohort)
        if name:
            check_text(name, "tenant name", MAX_NAME_LENGTH)
        return cls(key=key, name=name or key, cohort=cohort, actor=actor, reason=reason)

    @event("Registered")
    def __init__(self, key: str, name: str, cohort: str, actor: str, reason: str) -> None:
        self.key = key
        self.name = name
        self.cohort = cohort
        self.flags: dict[str, bool] = dict.fromkeys(FLAGS, False)
        self.overrides: dict[str, dict[str, Any]] = {}
        self.pins: dict[str, dict[str, Any]] = {}

    def move_to_cohort(self, cohort: str, actor: str, reason: str) -> None:
        check_attribution(actor, reason)
        cohort = check_cohort(cohort)
        if cohort == self.cohort:
            raise ConflictError(f"tenant {self.key} is already in cohort {cohort}")
        self._cohort_changed(from_cohort=self.cohort, to_cohort=cohort, actor=actor, reason=reason)

    @event("CohortChanged")
    def _cohort_changed(self, from_cohort: str, to_cohort: str, actor: str, reason: str) -> None:
        self.cohort = to_cohort

    def flip_flag(self, flag: str, enabled: bool, actor: str, reason: str) -> bool:
        """Set a flag; returns False (and records nothing) when it already has that value."""
        check_attribution(actor, reason)
        if flag not in FLAGS:
            raise ValidationError(f"unknown flag {flag!r}; flags are {', '.join(FLAGS)}")
        if not isinstance(enabled, bool):
            raise ValidationError("a flag is switched to true or false")
        flag = str(flag)
        if self.flags[flag] == enabled:
            return False
        self._flag_flipped(flag=flag, enabled=enabled, actor=actor, reason=reason)
        return True

    @event("FlagFlipped")
    def _flag_flipped(self, flag: str, enabled: bool, actor: str, reason: str) -> None:
        self.flags[flag] = enabled

    def set_override(
        self, task: str, kind: str, value: str, base_release: int | None, actor: str, reason: str,
    ) -> None:
        """Diverge from the global task: the tenant keeps ``base_release`` with its own text."""
        check_key("task", task)
        check_attribution(actor, reason)
        if kind not in OVERRIDE_KINDS:
            raise ValidationError(f"override kind must be one of {', '.join(OVERRIDE_KINDS)}")
        if not isinstance(value, str) or not value.strip():
            raise ValidationError("an override needs a non-empty value")
        check_text(value, "override value", MAX_OVERRIDE_LENGTH, multiline=True)
        self._override_set(task=task, override_kind=str(kind), value=value,
                           base_release=base_release,
                           actor=actor, reason=reason)

    @event("OverrideSet")
    def _override_set(
        self, task: str, override_kind: str, value: str, base_release: int | None,
        actor: str, reason: str,
    ) -> None:
        entry = self.overrides.setdefault(task, {"base_release": base_release, "values": {}})
        entry["values"][override_kind] = {"value": value, "by": actor, "reason": reason}
        if base_release is not None:
            entry["base_release"] = base_release

    def clear_override(self, task: str, kind: str, actor: str, reason: str) -> None:
        check_attribution(actor, reason)
        if kind not in self.overrides.get(task, {}).get("values", {}):
            raise NotFoundError(f"tenant {self.key} has no {kind} override for {task}")
        self._override_cleared(task=task, override_kind=kind, actor=actor, reason=reason)

    @event("OverrideCleared")
    def _override_cleared(self, task: str, override_kind: str, actor: str, reason: str) -> None:
        del self.overrides[task]["values"][override_kind]
        if not self.overrides[task]["values"]:
            del self.overrides[task]

    def pin(
        self, task: str, release: int, days: int, now: datetime, actor: str, reason: str,
    ) -> None:
        check_key("task", task)
        check_attribution(actor, reason)
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_PIN_DAYS:
            raise ValidationError(
                f"a pin lasts 1 to {MAX_PIN_DAYS} days (default {DEFAULT_PIN_DAYS}), got {days!r}"
            )
        expires = now + timedelta(days=days)
        self._pinned(task=task, release=release, expires_at=expires.isoformat(),
                     actor=actor, reason=reason)

    @event("Pinned")
    def _pinned(self, task: str, release: int, expires_at: str, actor: str, reason: str) -> None:
        self.pins[task] = {"release": release, "expires_at": expires_at, "by": actor,
                           "reason": reason}

    def unpin(self, task: str, actor: str, reason: str) -> None:
        check_attribution(actor, reason)
        if task not in self.pins:
            raise NotFoundError(f"tenant {self.key} has no pin for {task}")
        self._unpinned(task=task, actor=actor, reason=reason)

    @event("Unpinned")
    def _unpinned(self, task: str, actor: str, reason: str) -> None:
        del self.pins[task]

    def reset_to_defaults(self, task: str | None, actor: str, reason: str) -> None:
        """Drop overrides and pins (for one task, or all): the tenant follows global releases."""
        check_attribution(actor, reason)
        tasks = [task] if task else sorted(set(self.overrides) | set(self.pins))
        if not any(t in self.overrides or t in self.pins for t in tasks):
            raise ConflictError(f"tenant {self.key} already follows the defaults"
                                + (f" for {task}" if task else ""))
        self._reset(tasks=tasks, actor=actor, reason=reason)

    @event("ResetToDefaults")
    def _reset(self, tasks: list[str], actor: str, reason: str) -> None:
        for task in tasks:
            self.overrides.pop(task, None)
            self.pins.pop(task, None)

    def active_pin(self, task: str, at: datetime) -> dict[str, Any] | None:
        pin = self.pins.get(task)
        if pin and datetime.fromisoformat(pin["expires_at"]) > at:
            return pin
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "kind": self.kind, "key": self.key, "name": self.name,
            "cohort": self.cohort, "flags": self.flags, "overrides": self.overrides,
            "pins": self.pins, "aggregate_version": self.version,
        }
