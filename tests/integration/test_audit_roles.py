"""Audit rows name the role each command was issued in (issue 7: "time, actor, role ...")."""

import json
from collections.abc import Iterator

import pytest
from relctl.adapters.commands import execute
from relctl.domain.guards import GUARD_ACTOR, GUARD_ROLE
from relctl.infra.bootstrap import Runtime

from tests.integration.read_more_support import ReadStack, read_stack
from tests.integration.read_support import SPEC, WHO

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(runtime: Runtime) -> Iterator[ReadStack]:
    with read_stack(runtime) as instance:
        yield instance


def _rows(stack: ReadStack) -> list[dict[str, object]]:
    with stack.client() as http:
        answer = http.get("/v1/audit/export", params={"format": "jsonl"})
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.text.splitlines()]


def test_audit_rows_show_the_role_of_operator_admin_and_guard(stack: ReadStack) -> None:
    app = stack.runtime.app
    app.register_tenant("legacy", "Legacy", "general", **WHO)  # a direct call: no role
    operator = stack.token("olga@example.com", "operator")
    reason = {"reason": "role in audit rows"}
    with stack.client() as admin, stack.client(operator) as ops:
        created = admin.post("/v1/releases", json={"task": "csat", "spec": SPEC, **reason})
        assert created.status_code == 201, created.text
        assert admin.post("/v1/tasks/csat/gate-waiver", json=reason).status_code == 200
        assert admin.post("/v1/releases/csat/1/promote",
                          json={"stage": "Stable", **reason}).status_code == 200
        assert ops.post("/v1/tenants", json={"key": "acme", **reason}).status_code == 201
        assert ops.post("/v1/tenants/acme/flags/enable_blueprints",
                        json={"enabled": True, **reason}).status_code == 200
        assert admin.post("/v1/releases", json={
            "task": "csat", "spec": {**SPEC, "seed": 8}, **reason}).status_code == 201
        assert admin.post("/v1/releases/csat/2/promote",
                          json={"stage": "Beta", **reason}).status_code == 200
        assert admin.post("/v1/tasks/csat/default",
                          json={"release": 1, **reason}).status_code == 200
        planned = ops.post("/v1/rollouts", json={"task": "csat", "candidate": 2, **reason})
        assert planned.status_code == 201, planned.text
        rollout = planned.json()["aggregate"]["id"]
        assert ops.post(f"/v1/rollouts/{rollout}/start", json=reason).status_code == 200
    execute(app, {"action": "pause", "rollout_id": rollout, "reason": "errors up",
                  "decision_id": "d-1", "evidence": {"outcome": "Failed"}})
    rows = _rows(stack)
    by_event = {(row["event"], row["actor"]): row["role"] for row in rows}
    assert by_event[("Tenant.Registered", "ops@example.com")] is None
    assert by_event[("Tenant.Registered", "olga@example.com")] == "operator"
    assert by_event[("Tenant.FlagFlipped", "olga@example.com")] == "operator"
    assert by_event[("Release.Drafted", "root")] == "admin"
    assert by_event[("Task.DefaultReleaseSet", "root")] == "admin"
    assert by_event[("Rollout.Started", "olga@example.com")] == "operator"
    assert by_event[("Rollout.Paused", GUARD_ACTOR)] == GUARD_ROLE
    # The role is part of the hashed content: the chain still verifies.
    with stack.client() as http:
        assert http.get("/v1/audit/verify").json()["ok"] is True
