"""The published JSON Schemas are the contract: they must match the event classes."""

import json
from uuid import UUID

import pytest
from relctl.adapters.cloudevents import control_event_classes, data_model, event_data, event_type
from relctl.adapters.schemas import PACKAGE_SCHEMAS, all_schemas

from tests.unit.support import new_app, spec, waive_gates


def test_committed_schemas_are_current() -> None:
    generated = all_schemas()
    committed = {p.stem: json.loads(p.read_text()) for p in PACKAGE_SCHEMAS.glob("*.json")}
    assert set(committed) == set(generated), "run: relctl schemas export adapters/published"
    for name, schema in generated.items():
        assert committed[name] == json.loads(json.dumps(schema)), name


def test_every_event_class_has_a_versioned_type() -> None:
    types = [event_type(cls) for cls in control_event_classes()]
    assert len(types) == len(set(types))
    assert all(t.startswith("io.relctl.") and t.rsplit(".", 1)[1] == "v1" for t in types)
    assert "io.relctl.rollout.rolled_back.v1" in types


@pytest.mark.parametrize("command", ["release", "rollout"])
def test_recorded_events_validate_against_their_schema(command: str) -> None:
    app = new_app()
    app.create_release("csat", spec(), "alice", "first release")
    if command == "rollout":
        waive_gates(app, "csat")
        app.promote_release("csat", 1, "Stable", "alice", "ready now")
        app.set_default_release("csat", 1, "alice", "launch it")
        app.create_release("csat", spec(prompt_template="v2"), "alice", "second one")
        app.promote_release("csat", 2, "Beta", "alice", "ready now")
        rollout = UUID(app.plan_rollout("csat", 2, "alice", "roll it out")["aggregate"]["id"])
        app.start_rollout(rollout, "alice", "go ahead")
    notifications = app.recorder.select_notifications(start=1, limit=1000)
    assert len(notifications) >= 3
    for notification in notifications:
        domain_event = app.mapper.to_domain_event(notification)
        data = json.loads(json.dumps(event_data(domain_event), default=str))
        data_model(type(domain_event)).model_validate(data)


def test_schema_validation_rejects_a_malformed_event() -> None:
    from pydantic import ValidationError as SchemaError
    from relctl.domain.rollout import Rollout

    with pytest.raises(SchemaError):
        data_model(Rollout.RolledBack).model_validate(
            {"from_state": "Running", "evidence": None, "actor": 3, "reason": "x",
             "schema_version": 1})
