"""The role a command was issued in is stored in its events, beside the actor."""

import json

from relctl.adapters.cloudevents import data_model, event_data
from relctl.adapters.commands import execute
from relctl.application.service import ACTING_ROLE, acting_as
from relctl.domain.guards import GUARD_ACTOR, GUARD_ROLE
from relctl.domain.ids import tenant_id

from .support import ACTOR, REASON, TASK, new_app, released_task, rollout_id, stored_events


def test_events_carry_the_role_they_were_issued_in_and_read_back() -> None:
    app = new_app()
    with acting_as("admin"):
        released_task(app)
    with acting_as("operator"):
        app.register_tenant("acme", "Acme", "general", ACTOR, REASON)
        app.set_override("acme", TASK, "prompt", "own text", ACTOR, REASON)
    app.flip_flag("acme", "enable_blueprints", True, ACTOR, REASON)  # no role: a direct call
    assert ACTING_ROLE.get() is None  # the block does not leak
    roles = [(type(e).__qualname__, getattr(e, "role", None)) for e in stored_events(app)]
    assert ("Tenant.Registered", "operator") in roles
    assert ("Tenant.OverrideSet", "operator") in roles
    assert ("Tenant.FlagFlipped", None) in roles
    assert all(role == "admin" for name, role in roles
               if name.startswith(("Release.", "Task.")))
    # The aggregate reloads from the stored events (the extra attribute is not an argument).
    tenant = app.repository.get(tenant_id("acme"))
    assert tenant.overrides[TASK]["values"]["prompt"]["value"] == "own text"
    for domain_event in stored_events(app):
        data = json.loads(json.dumps(event_data(domain_event), default=str))
        data_model(type(domain_event)).model_validate(data)


def test_the_guards_decisions_act_in_the_service_role() -> None:
    app = new_app()
    released_task(app)
    rollout = rollout_id(app.plan_rollout(TASK, 2, ACTOR, REASON, baseline=1))
    with acting_as("operator"):
        app.start_rollout(rollout, ACTOR, REASON)
        execute(app, {"action": "rollback", "rollout_id": str(rollout), "reason": "errors",
                      "decision_id": "d-1", "evidence": {"outcome": "Failed"}})
    last = stored_events(app)[-2:]
    assert [(e.actor, getattr(e, "role", None)) for e in last] == [
        (GUARD_ACTOR, GUARD_ROLE), (GUARD_ACTOR, GUARD_ROLE)]
