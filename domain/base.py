"""What every control-plane aggregate shares: who did it and why.

Every command records the authenticated actor and a human reason in its event, so the audit
trail can answer "who changed this, and why" without joining anything else.
"""

from typing import Any

from eventsourcing.domain import Aggregate
from relctl.domain.errors import ValidationError

MIN_REASON_LENGTH = 3
INT64 = (-(2**63), 2**63 - 1)


def check_json(value: Any, what: str) -> None:
    """Refuse a value every consumer of the event stream could not read back: integers beyond
    64 bits, NaN or infinities, keys that are not strings, non-JSON types."""
    import math

    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise ValidationError(f"{what}: integer {value} does not fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{what}: numbers must be finite")
    elif isinstance(value, list):
        for item in value:
            check_json(item, what)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(f"{what}: object keys must be strings")
            check_json(item, f"{what}.{key}")
    else:
        raise ValidationError(f"{what}: {type(value).__name__} is not JSON")


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
