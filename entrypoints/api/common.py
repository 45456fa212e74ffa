"""What every router shares: the error body, the documented error responses, request bodies'
common fields, and running a command (metrics, waking the relay)."""

import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from prometheus_client import Counter, Histogram
from pydantic import BaseModel, BeforeValidator, Field
from relctl.adapters import cloudevents
from relctl.domain import errors
from relctl.infra.bootstrap import Runtime

COMMANDS = Counter("relctl_commands_total", "Commands handled by the API", ["command", "outcome"])
COMMAND_SECONDS = Histogram("relctl_command_duration_seconds", "Command latency", ["command"],
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))

STATUS = {
    errors.ValidationError: 422, errors.ConflictError: 409, errors.NotFoundError: 404,
    errors.UnauthorizedError: 401, errors.ForbiddenError: 403, errors.UnavailableError: 503,
}


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable: validation_error, conflict, not_found ...")
    message: str = Field(description="what was wrong and what to do about it")


class ErrorBody(BaseModel):
    """relctl's error body for every endpoint and every status."""

    error: ErrorDetail


def _iso_instant(value: Any) -> Any:
    """Instants are ISO 8601 text: pydantic would also read a bare number as epoch seconds,
    which the schema (``format: date-time``) does not allow."""
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+(\.\d*)?\s*", value):
        raise ValueError("an instant is ISO 8601 with a time zone, e.g. 2026-11-21T10:00:00Z")
    return value


Instant = Annotated[datetime, BeforeValidator(_iso_instant)]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("no bearer token, or an unknown or revoked one"),
    403: _error("the token's role may not do this"),
    503: _error("the event store or broker is unavailable; retry later"),
}
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    404: _error("no such aggregate"),
    422: _error("a path or query parameter is invalid"),
}
COMMAND_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    400: _error("the body is not valid JSON (or not UTF-8)"),
    409: _error("the command conflicts with the current state or a concurrent command"),
    413: _error("the body is larger than the limit"),
    422: _error("the body breaks a rule (the message names the field and the limit); "
                "nothing was recorded"),
}


class Outcome(BaseModel):
    """What a command returns: the aggregate after it, and whether anything was recorded."""

    aggregate: dict[str, Any]
    changed: bool
    note: str | None = None
    published: str | None = None


class History(BaseModel):
    aggregate_id: str
    events: list[dict[str, Any]] = Field(description="CloudEvents (structured mode), oldest first")


def run(command: str, call: Callable[[], Any], on_change: Callable[[], None]) -> Any:
    """Run one command, counting its outcome and latency; wake the relay when it recorded."""
    started = time.perf_counter()
    try:
        result = call()
    except errors.RelctlError as exc:
        COMMANDS.labels(command, exc.code).inc()
        raise
    COMMANDS.labels(command, "ok").inc()
    COMMAND_SECONDS.labels(command).observe(time.perf_counter() - started)
    on_change()
    return result


def history(runtime: Runtime, aggregate_id: UUID) -> dict[str, Any]:
    events = runtime.app.history(aggregate_id)
    if not events:
        raise errors.NotFoundError(f"no events for aggregate {aggregate_id}")
    return {"aggregate_id": str(aggregate_id),
            "events": [cloudevents.envelope(e) for e in events]}
