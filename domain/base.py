"""What every control-plane aggregate shares: who did it and why.

Every command records the authenticated actor and a human reason in its event, so the audit
trail can answer "who changed this, and why" without joining anything else.
"""

import math
import re
from typing import Annotated, Any

from eventsourcing.domain import Aggregate
from pydantic import AfterValidator, Field, JsonValue
from relctl.domain.errors import ValidationError
from relctl.domain.ids import KEY_PATTERN

MIN_REASON_LENGTH = 3
MAX_REASON_LENGTH = 2_000
MAX_NAME_LENGTH = 200
# Free-form JSON a command carries (evidence, a release's output_schema, retrieval, notes):
# nested at most this deep (a scalar at the top is depth 0, ``{"a": 1}`` depth 1).
MAX_JSON_DEPTH = 32
INT64 = (-(2**63), 2**63 - 1)

# C0 and C1 control characters (NUL included; PostgreSQL refuses NUL in text), except in
# free text the tab, line feed and carriage return.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why ``value`` cannot be stored as a name (or, ``multiline``, as free text), or None."""
    if _SURROGATE.search(value):
        return "is not valid Unicode (it contains a lone surrogate escape such as \\ud800)"
    if (_CONTROL_IN_TEXT if multiline else _CONTROL).search(value):
        return ("contains a control character (such as NUL)" if not multiline else
                "contains a control character other than tab or line break (such as NUL)")
    return None


def check_text(value: Any, what: str, max_length: int = MAX_NAME_LENGTH,
               multiline: bool = False) -> str:
    """Refuse a name or free text that is not a string, too long, or not storable text."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be text")
    if len(value) > max_length:
        raise ValidationError(f"{what} is {len(value)} characters; the limit is {max_length}")
    problem = text_problem(value, multiline=multiline)
    if problem:
        raise ValidationError(f"{what} {problem}")
    return value


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Is ``value`` nested deeper than ``limit``? Iterative, so any depth is safe to ask about."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit and item:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def check_json(value: Any, what: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse a value every consumer of the event stream could not read back: nesting deeper
    than ``max_depth``, integers beyond 64 bits, NaN or infinities, keys that are not strings,
    text that is not valid Unicode or holds NUL, non-JSON types."""
    if json_depth_exceeds(value, max_depth):
        raise ValidationError(f"{what} is nested more than {max_depth} levels deep")
    _check_json(value, what)


def _check_json(value: Any, what: str) -> None:  # noqa: PLR0912 - one branch per JSON type
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str):
        if _SURROGATE.search(value) or "\x00" in value:
            raise ValidationError(f"{what}: text must be valid Unicode without NUL characters")
        return
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise ValidationError(f"{what}: integer {value} does not fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{what}: numbers must be finite")
    elif isinstance(value, list):
        for item in value:
            _check_json(item, what)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(f"{what}: object keys must be strings")
            _check_json(key, what)
            _check_json(item, f"{what}.{key}")
    else:
        raise ValidationError(f"{what}: {type(value).__name__} is not JSON")


def check_attribution(actor: str, reason: str) -> None:
    """Refuse a command that does not say who issues it and why."""
    if not isinstance(actor, str) or not actor.strip():
        raise ValidationError("every command needs an authenticated actor")
    check_text(actor, "actor")
    if not isinstance(reason, str) or len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValidationError(
            f"every command needs a reason of at least {MIN_REASON_LENGTH} characters "
            "(why is this change being made?)"
        )
    check_text(reason, "reason", MAX_REASON_LENGTH, multiline=True)


class ControlAggregate(Aggregate):
    """Base for relctl aggregates; ``kind`` names it in envelopes and APIs."""

    kind = "aggregate"

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view of the aggregate's current state for reads."""
        raise NotImplementedError


# ---- typed fields the commands' contracts share (pydantic, for the API's schema) -----------

def _name_ok(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(f"text {problem}")
    return value


def _text_ok(value: str) -> str:
    problem = text_problem(value, multiline=True)
    if problem:
        raise ValueError(f"text {problem}")
    return value


def _json_ok(value: Any) -> Any:
    try:
        check_json(value, "value")
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
    return value


Key = Annotated[str, Field(pattern=KEY_PATTERN.pattern, min_length=1, max_length=63,
                           description="lowercase letters, digits, '.', '_' or '-'")]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH,
                            pattern=r"^[^\x00-\x1f\x7f-\x9f]*$"), AfterValidator(_name_ok)]
Reason = Annotated[str, Field(
    min_length=MIN_REASON_LENGTH, max_length=MAX_REASON_LENGTH,
    pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$",
    description=f"why this change is made ({MIN_REASON_LENGTH}-{MAX_REASON_LENGTH} "
                "characters); recorded in the event"), AfterValidator(_text_ok)]
JsonObject = Annotated[dict[str, JsonValue], AfterValidator(_json_ok), Field(
    description=f"a JSON object nested at most {MAX_JSON_DEPTH} levels deep")]
