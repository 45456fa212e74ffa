"""Shared builders for the unit tests: valid inputs, an in-memory app, and event folding.

The app is the library's in-memory (POPO) persistence, not a mock: commands really go through
the aggregates, the mapper and the recorder, so event counts and replays are real.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from relctl.application.service import ControlPlane
from relctl.domain.resolution import ControlView

from bench.builders import (
    ACTOR,
    REASON,
    SCHEMA,
    TASK,
    new_app,
    released_task,
    spec,
    waive_gates,
)

# Re-exported: the unit tests import these from here (they live in bench.builders).
__all__ = ["ACTOR", "BAD_ATTRIBUTIONS", "OTHER", "REASON", "SCHEMA", "TASK", "fold", "new_app",
           "notification_count", "released_task", "rollout_id", "spec", "stages", "stored_events",
           "waive_gates"]

OTHER = "bob"

# Commands without an actor, or without a reason of at least three characters.
BAD_ATTRIBUTIONS = [
    ("", REASON),
    ("   ", REASON),
    (None, REASON),
    (ACTOR, ""),
    (ACTOR, "ab"),
    (ACTOR, "  a  "),
    (ACTOR, None),
]


def stages(
    weights: tuple[Any, ...] = (50, 50),
    behaviour_weights: tuple[Any, ...] = (100,),
    critical: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """A blueprint stage list: one stage per weight, behaviours b0..bn per stage.

    ``critical`` maps "stage/behaviour" to the rule text of a critical behaviour.
    """
    critical = critical or {}
    result = []
    for i, weight in enumerate(weights):
        behaviours = []
        for j, bweight in enumerate(behaviour_weights):
            key = f"s{i}/b{j}"
            behaviour: dict[str, Any] = {"name": f"b{j}", "weight": bweight}
            if key in critical:
                behaviour.update(critical=True, rule=critical[key])
            behaviours.append(behaviour)
        result.append({"name": f"s{i}", "weight": weight, "behaviours": behaviours})
    return result


def notification_count(app: ControlPlane) -> int:
    return len(app.recorder.select_notifications(start=1, limit=10_000))


def stored_events(app: ControlPlane) -> list[Any]:
    """Every stored domain event, in store order."""
    return [
        app.mapper.to_domain_event(n)
        for n in app.recorder.select_notifications(start=1, limit=10_000)
    ]


def fold(events: Iterable[Any], until: datetime | None = None) -> ControlView:
    """A fresh ControlView of the events recorded at or before ``until`` (all if None)."""
    view = ControlView()
    for domain_event in events:
        if until is None or domain_event.timestamp <= until:
            view.apply(domain_event)
    return view


def rollout_id(outcome: dict[str, Any]) -> UUID:
    return UUID(outcome["aggregate"]["id"])
