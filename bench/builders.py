"""Builders shared by benchmarks and unit tests (which re-export them): a valid evaluation
record, a valid release spec, an in-memory app and a task with released versions.

The app is the library's in-memory (POPO) persistence, not a mock: commands really go through
the aggregates, the mapper and the recorder.
"""

from typing import Any

from relctl.application.service import ControlPlane

ACTOR = "alice"
REASON = "because we need it"
TASK = "csat-scoring"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"score": {"type": "number"}, "summary": {"type": "string"}},
    "required": ["score"],
}


def evaluation(**changes: Any) -> dict[str, Any]:
    """A valid evaluation record as producers send it (JSON types); ``...`` drops a field."""
    data: dict[str, Any] = {
        "tenant": "acme", "task": "csat", "call_id": "call-1", "release": 1,
        "prompt_version": "p1", "prompt_hash": "sha256:" + "ab" * 32,
        "model_provider": "openai", "model_version": "gpt-4o-2024-08-06", "temperature": 0.0,
        "seed": 7, "outcome": "ok", "confidence": 0.82, "score": 87.5,
        "category_scores": {"greeting": 90.0, "resolution": 75.0},
        "categories": {"greeting": "pass", "resolution": "partial"},
        "latency_ms": 1234.5, "tokens": 1800, "cost_usd": 0.0123,
        "validator_outcomes": {"output_schema": "pass"},
        "occurred_at": "2026-11-21T10:00:00Z",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def spec(**overrides: Any) -> dict[str, Any]:
    """A valid release spec as a plain dict (what the API receives)."""
    data: dict[str, Any] = {
        "prompt_template": "Score the call {transcript}",
        "model_provider": "openai",
        "model_name": "gpt-4o",
        "model_version": "gpt-4o-2024-08-06",
        "temperature": 0.2,
        "seed": 7,
        "output_schema": SCHEMA,
        "output_schema_version": "1.0",
    }
    data.update(overrides)
    return data


def new_app() -> ControlPlane:
    return ControlPlane(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


ADMIN = "root-admin"
WAIVER_REASON = "gates are not what this exercises"


def waive_gates(app: ControlPlane, task: str = TASK) -> None:
    """Declare ``task`` ungated, as an admin would (``Task.GatesWaived``): for builders whose
    subject is not the release gates, so promotions and rollout starts need no bundle."""
    app.waive_gates(task, ADMIN, WAIVER_REASON, role="admin")


def released_task(
    app: ControlPlane, task: str = TASK, count: int = 3, default: int | None = 1,
    stage: str = "Beta", gates_waived: bool = True,
) -> None:
    """A task with ``count`` non-breaking releases, all promoted to ``stage``; its gates are
    waived (``gates_waived``) after the first release, since evidence is required otherwise."""
    for number in range(1, count + 1):
        app.create_release(task, spec(prompt_template=f"prompt v{number}"), ACTOR, REASON)
        if number == 1 and gates_waived:
            waive_gates(app, task)
        if stage != "Draft":
            app.promote_release(task, number, stage, ACTOR, REASON)
    if default is not None:
        app.set_default_release(task, default, ACTOR, REASON)
