"""The alerts read model's vocabulary: one alert from ``relctl.alerts`` as it is stored, and as
it is answered, joined with the automatic decision it announced or caused.

Pure: :func:`alert_row` turns the JSON of one record (:meth:`relctl.domain.alerts.Alert.wire`)
into the row the projection stores; the projection and the HTTP API share these types.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from relctl.domain.alerts import AlertKind
from relctl.domain.errors import ValidationError


@dataclass(frozen=True)
class AlertRow:
    """One alert as stored: its identity (the CloudEvents id, stable across re-sends), what it
    is about (scope, task, release, rollout), and the record itself (``body``)."""

    id: str
    kind: str
    scope: str
    rule: str | None
    severity: str | None
    task: str | None
    release: int | None
    rollout_id: str | None
    decision_id: str | None
    action: str | None
    at: datetime
    body: dict[str, Any]


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def alert_row(alert_id: str, body: Any, published: datetime) -> AlertRow:
    """The stored row of one alert record; ``published`` (the record's timestamp) dates an
    alert that carries no instant of its own. Raises ValidationError for a record that is not
    an alert (not an object, or without a known kind and a scope)."""
    if not isinstance(body, dict):
        raise ValidationError("an alert is a JSON object")
    kind, scope = body.get("kind"), body.get("scope")
    if kind not in tuple(AlertKind) or not isinstance(scope, str):
        raise ValidationError("an alert needs a known kind and a scope")
    parts = scope.split("|")
    task = _text(body.get("task"))
    release = body.get("release") if isinstance(body.get("release"), int) else None
    rollout = _text(body.get("rollout_id"))
    if parts[0] == "release" and len(parts) == 3:
        task = task or parts[1]
        if release is None and parts[2].isdigit():
            release = int(parts[2])
    elif parts[0] == "rollout" and len(parts) == 2:
        rollout = rollout or parts[1]
    found = body.get("evidence")
    evidence: dict[str, Any] = found if isinstance(found, dict) else {}
    at = (_instant(body.get("at")) or _instant(evidence.get("decided_at"))
          or _instant(body.get("fired_at")) or published)
    return AlertRow(
        id=alert_id, kind=str(kind), scope=scope, rule=_text(body.get("rule")),
        severity=_text(body.get("severity")), task=task, release=release, rollout_id=rollout,
        decision_id=_text(body.get("decision_id")), action=_text(body.get("action")), at=at,
        body=body)


@dataclass(frozen=True)
class DecisionLink:
    """The rollout transition recorded in the event store for an alert's decision."""

    rollout_id: str
    position: int
    at: datetime
    event: str
    to_state: str
    actor: str | None
    reason: str | None


@dataclass(frozen=True)
class AlertEntry:
    """One alert in the history, with the decision it announced (a decision alert) or caused
    (a guard rule's fired alert whose rule then decided), when the store has it."""

    id: str
    kind: str
    at: datetime
    scope: str
    rule: str | None
    severity: str | None
    summary: str | None
    task: str | None
    release: int | None
    rollout_id: str | None
    action: str | None
    decision_id: str | None
    evidence: dict[str, Any]
    decision: DecisionLink | None
