"""The read side's vocabulary: what the projections answer, defined once.

Plain dataclasses and enums, so the projections, the HTTP routers and the CLI share one
meaning for "who overrides what", "a change between two instants" or "the first broken link
of the audit chain".
"""

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class ProjectionName(StrEnum):
    """Each read model keeps its own tracking position, so each can be rebuilt on its own."""

    RESOLUTION = "resolution"
    ROLLOUTS = "rollouts"
    INVENTORY = "inventory"
    AUDIT = "audit"


class ChangeKind(StrEnum):
    """Why a tenant x task answer changed: an event, or a pin reaching its expiry instant."""

    EVENT = "event"
    PIN_EXPIRED = "pin-expired"


class Reach(StrEnum):
    """How a proposed global change would reach a tenant."""

    DIRECT = "direct"
    SHIELDED_BY_PIN = "shielded-by-pin"
    SHIELDED_BY_OVERRIDE = "shielded-by-override"


class AuditFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


class AuditFault(StrEnum):
    """What the verifier found at the first broken link."""

    CONTENT_CHANGED = "content-changed"
    LINK_BROKEN = "link-broken"
    SEQUENCE_GAP = "sequence-gap"
    COLUMNS_DIFFER = "columns-differ"
    TAIL_MISSING = "tail-missing"


@dataclass(frozen=True)
class Cause:
    """The event (or expiry) that opened a validity interval."""

    kind: ChangeKind
    position: int
    event: str
    actor: str | None
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "position": self.position, "event": self.event,
                "actor": self.actor, "reason": self.reason}


@dataclass(frozen=True)
class ResolutionAnswer:
    """A resolution served from the history table, with its version stamp (the ETag)."""

    tenant: str
    task: str
    resolution: dict[str, Any]
    etag: str
    valid_from: datetime
    valid_to: datetime | None
    cause: dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One change of a tenant x task answer between two instants."""

    tenant: str
    task: str
    at: datetime
    release: int | None
    source: str | None
    previous_release: int | None
    cause: dict[str, Any]


@dataclass(frozen=True)
class OverrideEntry:
    tenant: str
    task: str
    kind: str
    value: str
    base_release: int | None
    by: str
    reason: str
    since: datetime


@dataclass(frozen=True)
class PinEntry:
    tenant: str
    task: str
    release: int
    expires_at: datetime
    by: str
    reason: str
    since: datetime
    active: bool


@dataclass(frozen=True)
class TenantReach:
    tenant: str
    reach: Reach
    detail: str


@dataclass(frozen=True)
class DriftReport:
    """For a proposed global change of ``task``: who it reaches and who is shielded."""

    task: str
    at: datetime
    reached: list[TenantReach] = field(default_factory=list)
    shielded: list[TenantReach] = field(default_factory=list)


@dataclass(frozen=True)
class Transition:
    rollout_id: str
    position: int
    at: datetime
    event: str
    from_state: str | None
    to_state: str
    step: Any
    actor: str | None
    reason: str | None
    evidence: dict[str, Any] | None


@dataclass(frozen=True)
class RolloutStatus:
    rollout_id: str
    task: str
    state: str
    current_step: Any
    step_index: int
    baseline: int
    candidate: int
    shadow: bool
    guard_rules: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    arms: dict[str, list[str]]
    transitions: list[Transition]


@dataclass(frozen=True)
class AuditBreak:
    """The first row of the audit chain that does not verify."""

    seq: int
    position: int | None
    fault: AuditFault
    detail: str


@dataclass(frozen=True)
class AuditVerdict:
    rows: int
    ok: bool
    first_break: AuditBreak | None = None


@dataclass(frozen=True)
class ReplayReport:
    """A replay of read models from the store into a scratch schema, compared with the live
    ones at the same position (a content hash of every row of each view)."""

    views: list[ProjectionName]
    position: int
    events: int
    seconds: float
    live: dict[str, str]
    rebuilt: dict[str, str]

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def identical(self) -> bool:
        return self.live == self.rebuilt
