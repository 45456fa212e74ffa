"""What the guard sends on ``relctl.commands``: one automatic decision, typed.

The wire form (``Decision.wire()``) is the JSON object the control plane's command consumer
reads: ``rollout_id``, ``action``, ``decision_id``, ``actor``, ``evidence`` and ``reason``, with
the action as its plain string (``rollback``, ``freeze``, ``pause``).
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from relctl.domain.guards import GUARD_ACTOR, DecisionAction


class Decision(BaseModel):
    """One automatic decision about a rollout; ``decision_id`` is stable across re-sends."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rollout_id: str
    action: DecisionAction
    decision_id: str = Field(description="<rollout id>:<rule>:<breach start in ms>")
    actor: str = GUARD_ACTOR
    evidence: dict[str, Any] = Field(default_factory=dict)
    reason: str

    def wire(self) -> dict[str, Any]:
        """The JSON object published on ``relctl.commands``."""
        return self.model_dump(mode="json")
