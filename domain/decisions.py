"""What the guard sends on ``relctl.commands``: one automatic decision, typed.

The wire form (``Decision.wire()``) is the JSON object the control plane's command consumer
reads: ``rollout_id``, ``action``, ``decision_id``, ``actor``, ``evidence`` and ``reason``, with
the action as its plain string (``rollback``, ``freeze``, ``pause``).
"""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from relctl.domain.guards import GUARD_ACTOR, DecisionAction

# Every instant the guard publishes: ISO 8601 with an explicit offset, like every other
# timestamp relctl writes (``2026-12-02T16:30:00.123456+00:00``).
ISO_8601 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
IsoTime = Annotated[str, Field(pattern=ISO_8601, json_schema_extra={"format": "date-time"})]
_INSTANT = {"anyOf": [{"type": "string", "pattern": ISO_8601}, {"type": "null"}]}
# The instants a guard evidence object may carry, for the published schemas (the evidence
# itself stays an open object: each rule and alert kind adds its own figures).
EVIDENCE_SCHEMA: dict[str, Any] = {"properties": {
    "breach_since": _INSTANT, "decided_at": _INSTANT,
    "all_rules": {"type": "array", "items": {"type": "object",
                                             "properties": {"breach_since": _INSTANT}}},
}}


class Decision(BaseModel):
    """One automatic decision about a rollout; ``decision_id`` is stable across re-sends."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rollout_id: str
    action: DecisionAction
    decision_id: str = Field(description="<rollout id>:<rule>:<breach start in ms>")
    actor: str = GUARD_ACTOR
    evidence: dict[str, Any] = Field(default_factory=dict, json_schema_extra=EVIDENCE_SCHEMA)
    reason: str = Field(min_length=1, description="why, as a person would write it")

    def wire(self) -> dict[str, Any]:
        """The JSON object published on ``relctl.commands``."""
        return self.model_dump(mode="json")
