"""What every control-plane aggregate shares: who did it and why.

Every command records the authenticated actor and a human reason in its event, so the audit
trail can answer "who changed this, and why" without joining anything else.
"""

from typing import Any

from eventsourcing.domain import Aggregate

from relctl.domain.errors import ValidationError

MIN_REASON_LENGTH = 3


def check_attribution(actor: str, reason: str) -> None:
    """Refuse a command that does not say who issues it and why."""
    if not isinstance(actor, str) or not actor.strip():
        raise ValidationError("every command needs an authenticated actor")
    if not isinstance(reason, str) or len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValidationError(
            f"every command needs a reason of at least {MIN_REASON_LENGTH} characters "
            "(why is this change being made?)"
        )


class ControlAggregate(Aggregate):
    """Base for relctl aggregates; ``kind`` names it in envelopes and APIs."""

    kind = "aggregate"

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view of the aggregate's current state for reads."""
        raise NotImplementedError
