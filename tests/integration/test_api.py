"""The HTTP API end to end over real uvicorn, PostgreSQL and (for readiness) the broker."""

import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from relctl.infra.bootstrap import Runtime

from tests.conftest import wait_until
from tests.integration.conftest import SPEC, Server

pytestmark = pytest.mark.integration


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def release(api: httpx.Client, task: str, stage: str = "Stable", **changes: Any) -> int:
    created = ok(api.post("/v1/releases", json={"task": task, "spec": {**SPEC, **changes},
                                                "reason": "new prompt"}), 201)
    number = created["aggregate"]["number"]
    # the API, not the gates, is what these exercise: an admin declares the task ungated
    if ok(api.get(f"/v1/tasks/{task}"))["gate_policy"] != "waived":
        ok(api.post(f"/v1/tasks/{task}/gate-waiver", json={"reason": "not about gates"}))
    ok(api.post(f"/v1/releases/{task}/{number}/promote", json={"stage": stage, "reason": "ok go"}))
    return int(number)


def task_with_rollout(api: httpx.Client, task: str, steps: list[Any] | None = None) -> str:
    release(api, task)
    ok(api.post(f"/v1/tasks/{task}/default", json={"release": 1, "reason": "launch"}))
    release(api, task, "Beta", prompt_template="Score the call, strictly.")
    body = {"task": task, "candidate": 2, "reason": "try v2", "steps": steps or [50, 100]}
    return str(ok(api.post("/v1/rollouts", json=body), 201)["aggregate"]["id"])


def notification_count(runtime: Runtime) -> int:
    return runtime.app.recorder.max_notification_id() or 0


def test_rollout_rollback_and_resolve_through_the_api(api: httpx.Client) -> None:
    rollout = task_with_rollout(api, "csat")
    ok(api.post(f"/v1/rollouts/{rollout}/start", json={"reason": "canary"}))
    tenants = [f"tenant-{i}" for i in range(60)]
    during = {t: ok(api.get("/v1/resolve", params={"tenant": t, "task": "csat"}))
              for t in tenants}
    on_candidate = [t for t, r in during.items() if r["release"] == 2]
    assert 10 < len(on_candidate) < 50, "about half the tenants are in the 50% step"
    assert {r["source"] for r in during.values()} == {"rollout-candidate", "rollout-baseline"}
    assert during[on_candidate[0]]["explanation"]

    evidence = {"llm_error_rate": 0.2, "samples": 500}
    first = ok(api.post(f"/v1/rollouts/{rollout}/rollback",
                        json={"reason": "errors spiking", "evidence": evidence}))
    again = ok(api.post(f"/v1/rollouts/{rollout}/rollback", json={"reason": "again please"}))
    assert first["changed"] is True and again["changed"] is False
    assert "nothing recorded" in again["note"]
    after = {t: ok(api.get("/v1/resolve", params={"tenant": t, "task": "csat"}))["release"]
             for t in tenants}
    assert set(after.values()) == {1}

    history = ok(api.get(f"/v1/rollouts/{rollout}/history"))["events"]
    assert [e["type"] for e in history] == [
        "io.relctl.rollout.planned.v1", "io.relctl.rollout.started.v1",
        "io.relctl.rollout.rolled_back.v1"]
    assert history[-1]["data"]["evidence"] == evidence
    assert history[-1]["data"]["actor"] == "root"


def test_complete_makes_the_candidate_the_default(api: httpx.Client) -> None:
    rollout = task_with_rollout(api, "qa", steps=["internal", "general"])
    ok(api.post("/v1/tenants", json={"key": "us", "cohort": "internal", "reason": "our team"}),
       201)
    ok(api.post(f"/v1/rollouts/{rollout}/start", json={"reason": "stage A"}))
    assert ok(api.get("/v1/resolve", params={"tenant": "us", "task": "qa"}))["release"] == 2
    assert ok(api.get("/v1/resolve", params={"tenant": "them", "task": "qa"}))["release"] == 1
    refused = api.post(f"/v1/rollouts/{rollout}/complete", json={"reason": "too early"})
    assert refused.status_code == 409 and "final step" in refused.json()["error"]["message"]
    ok(api.post(f"/v1/rollouts/{rollout}/advance", json={"reason": "stage D"}))
    ok(api.post(f"/v1/rollouts/{rollout}/complete", json={"reason": "all good"}))
    assert ok(api.get("/v1/tasks/qa"))["default_release"] == 2
    after = ok(api.get("/v1/resolve", params={"tenant": "them", "task": "qa"}))
    assert after["source"] == "default"


def test_resolve_as_of_an_earlier_instant(api: httpx.Client) -> None:
    release(api, "ts")
    ok(api.post("/v1/tasks/ts/default", json={"release": 1, "reason": "launch"}))
    ok(api.post("/v1/tenants", json={"key": "acme", "reason": "onboard"}), 201)
    time.sleep(0.05)
    before_pin = datetime.now(UTC)
    time.sleep(0.05)
    release(api, "ts", "Beta", prompt_template="other")
    ok(api.post("/v1/tenants/acme/pins", json={"task": "ts", "release": 2, "reason": "trial"}))
    now = ok(api.get("/v1/resolve", params={"tenant": "acme", "task": "ts"}))
    then = ok(api.get("/v1/resolve", params={"tenant": "acme", "task": "ts",
                                             "at": before_pin.isoformat()}))
    assert (now["release"], now["source"]) == (2, "pin")
    assert (then["release"], then["source"]) == (1, "default")
    naive = api.get("/v1/resolve", params={"tenant": "acme", "task": "ts",
                                           "at": "2026-01-01T00:00:00"})
    assert naive.status_code == 422


def test_errors_are_json_with_meaningful_statuses(server: Server, api: httpx.Client) -> None:
    bad_alias = api.post("/v1/releases", json={"task": "x", "reason": "try alias",
                                               "spec": {**SPEC, "model_version": "latest"}})
    assert bad_alias.status_code == 422
    assert "alias" in bad_alias.json()["error"]["message"]
    no_reason = api.post("/v1/releases", json={"task": "x", "spec": SPEC})
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["error"]["message"]
    bad_json = api.post("/v1/releases", content=b"{not json",
                        headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    missing = api.get("/v1/releases/nope/1")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    rollout = task_with_rollout(api, "errs")
    conflict = api.post(f"/v1/rollouts/{rollout}/advance", json={"reason": "skip start"})
    assert conflict.status_code == 409 and "Planned" in conflict.json()["error"]["message"]
    unknown = api.post(f"/v1/rollouts/{rollout}/explode", json={"reason": "boom"})
    assert unknown.status_code == 404
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/v1/tasks/errs").status_code == 401
    with server.client("rk_not-a-token") as forged:
        assert forged.get("/v1/tasks/errs").status_code == 401


def test_invalid_commands_append_nothing(runtime: Runtime, api: httpx.Client) -> None:
    rollout = task_with_rollout(api, "inv")
    before = notification_count(runtime)
    bad = [
        api.post("/v1/releases", json={"task": "inv", "reason": "x", "spec": SPEC}),
        api.post("/v1/releases", json={"task": "inv", "reason": "break the schema", "spec": {
            **SPEC, "output_schema": {"type": "object",
                                      "properties": {"score": {"type": "string"}}}}}),
        api.post("/v1/rollouts", json={"task": "inv", "candidate": 2, "reason": "second one"}),
        api.post(f"/v1/rollouts/{rollout}/complete", json={"reason": "not running"}),
        api.post("/v1/tenants", json={"key": "Bad Key!", "reason": "onboard"}),
        api.post("/v1/blueprints", json={"name": "bp", "reason": "weights off", "stages": [
            {"name": "s", "weight": 90, "behaviours": [{"name": "b", "weight": 100}]}]}),
    ]
    assert [r.status_code for r in bad] == [422, 422, 409, 409, 422, 201]
    assert notification_count(runtime) == before + 1, "only the valid blueprint draft was stored"
    publish = api.post("/v1/blueprints/bp/publish", json={"reason": "ship it"})
    assert publish.status_code == 422 and "sum to 90" in publish.json()["error"]["message"]
    assert notification_count(runtime) == before + 1
    breaking = bad[1].json()["error"]["message"]
    assert "inv-v2" in breaking


def test_roles_limit_what_each_actor_may_do(server: Server) -> None:
    with server.client() as admin:
        task_with_rollout(admin, "roles")
        ok(admin.post("/v1/tenants", json={"key": "acme", "reason": "onboard"}), 201)
    producer = server.token("scorer", "producer", ("acme",))
    auditor = server.token("audit", "auditor")
    operator = server.token("ops", "operator")
    with server.client(producer) as p:
        assert p.get("/v1/resolve", params={"tenant": "acme", "task": "roles"}).status_code == 200
        assert p.get("/v1/resolve", params={"tenant": "other", "task": "roles"}).status_code == 403
        assert p.get("/v1/tasks/roles").status_code == 403
        assert p.post("/v1/tenants", json={"key": "x", "reason": "sneaky"}).status_code == 403
    with server.client(auditor) as a:
        assert a.get("/v1/tasks/roles").status_code == 200
        assert a.get("/v1/tasks/roles/history").status_code == 200
        denied = a.post("/v1/tasks/roles/default", json={"release": 1, "reason": "sneaky"})
        assert denied.status_code == 403 and "auditor" in denied.json()["error"]["message"]
    with server.client(operator) as o:
        assert o.post("/v1/tokens", json={"actor": "x", "role": "admin"}).status_code == 403
        rollout = ok(o.get("/v1/tasks/roles"))["active_rollout"]
        ok(o.post(f"/v1/rollouts/{rollout}/start", json={"reason": "go now"}))
        ok(o.post(f"/v1/rollouts/{rollout}/freeze", json={"reason": "looks odd"}))
        resume = o.post(f"/v1/rollouts/{rollout}/resume", json={"reason": "fine now"})
        assert resume.status_code == 403 and "admin" in resume.json()["error"]["message"]
    with server.client() as admin:
        ok(admin.post(f"/v1/rollouts/{rollout}/resume", json={"reason": "break-glass"}))


def test_stale_expected_version_gets_409(api: httpx.Client) -> None:
    rollout = task_with_rollout(api, "stale")
    version = ok(api.get(f"/v1/rollouts/{rollout}"))["aggregate_version"]
    ok(api.post(f"/v1/rollouts/{rollout}/start",
                json={"reason": "first", "expected_version": version}))
    late = api.post(f"/v1/rollouts/{rollout}/pause",
                    json={"reason": "second", "expected_version": version})
    assert late.status_code == 409 and "version" in late.json()["error"]["message"]


def test_concurrent_conflicting_commands_one_wins_one_409(server: Server) -> None:
    with server.client() as api:
        for i in range(5):
            task = f"race{i}"
            release(api, task)
            ok(api.post(f"/v1/tasks/{task}/default", json={"release": 1, "reason": "launch"}))
            release(api, task, "Beta", prompt_template="candidate")
    for i in range(5):
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def plan(task: str = f"race{i}", barrier: threading.Barrier = barrier,
                 statuses: list[int] = statuses) -> None:
            with server.client() as client:
                barrier.wait()
                response = client.post("/v1/rollouts", json={
                    "task": task, "candidate": 2, "reason": "racing"})
                statuses.append(response.status_code)

        threads = [threading.Thread(target=plan) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(statuses) == [201, 409]


def test_tenant_flags_overrides_pins_and_reset(api: httpx.Client) -> None:
    release(api, "ov")
    ok(api.post("/v1/tasks/ov/default", json={"release": 1, "reason": "launch"}))
    ok(api.post("/v1/tenants", json={"key": "acme", "cohort": "closed_beta", "reason": "beta"}),
       201)
    flip = ok(api.post("/v1/tenants/acme/flags/enable_blueprint_production_eval",
                       json={"enabled": True, "reason": "confirmed import"}))
    assert flip["aggregate"]["flags"]["enable_blueprint_production_eval"] is True
    same = ok(api.post("/v1/tenants/acme/flags/enable_blueprint_production_eval",
                       json={"enabled": True, "reason": "again"}))
    assert same["changed"] is False
    unknown = api.post("/v1/tenants/acme/flags/enable_magic", json={"enabled": True,
                                                                   "reason": "why not"})
    assert unknown.status_code == 422
    resolved = ok(api.get("/v1/resolve", params={"tenant": "acme", "task": "ov"}))
    assert resolved["pipeline"] == "blueprint"
    ok(api.post("/v1/tenants/acme/overrides", json={
        "task": "ov", "kind": "prompt", "value": "our own prompt", "reason": "legal wording"}))
    release(api, "ov", prompt_template="global v2")
    resolved = ok(api.get("/v1/resolve", params={"tenant": "acme", "task": "ov"}))
    assert (resolved["release"], resolved["source"]) == (1, "override")
    assert resolved["overrides"]["values"]["prompt"]["by"] == "root"
    too_long = api.post("/v1/tenants/acme/pins", json={"task": "ov", "release": 1, "days": 61,
                                                       "reason": "long pin"})
    assert too_long.status_code == 422
    ok(api.post("/v1/tenants/acme/pins", json={"task": "ov", "release": 1, "reason": "hold"}))
    ok(api.post("/v1/tenants/acme/reset", json={"reason": "follow the defaults"}))
    tenant = ok(api.get("/v1/tenants/acme"))
    assert tenant["overrides"] == {} and tenant["pins"] == {}


def test_health_readiness_metrics_and_openapi(api: httpx.Client) -> None:
    assert ok(api.get("/healthz")) == {"status": "ok"}
    ready = ok(api.get("/readyz"))
    assert ready["ready"] is True and ready["database"] is True and ready["broker"] is True
    release(api, "met")
    metrics = api.get("/metrics").text
    assert 'relctl_commands_total{command="create_release",outcome="ok"}' in metrics
    assert "relctl_command_duration_seconds_bucket" in metrics
    spec = ok(api.get("/openapi.json"))
    assert "/v1/resolve" in spec["paths"]
    # one operation per rollout command (the paths the CLI has always posted to)
    for action in ("start", "advance", "pause", "resume", "freeze", "rollback", "complete"):
        assert "post" in spec["paths"][f"/v1/rollouts/{{rollout_id}}/{action}"], action


def test_tokens_never_land_in_events(server: Server, runtime: Runtime, pg_url: str) -> None:
    with server.client() as admin:
        created = ok(admin.post("/v1/tokens", json={"actor": "svc", "role": "operator"}), 201)
        ok(admin.post("/v1/tasks/sec/gate-waiver", json={"reason": "tokens, not gates"}))
    token = created["token"]
    with server.client(token) as operator:
        release(operator, "sec")
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            f'SELECT convert_from(state, \'UTF8\') FROM "{runtime.settings.database_schema}".'
            "relctl_events").fetchall()
        stored = conn.execute(
            f'SELECT digest FROM "{runtime.settings.database_schema}".relctl_tokens').fetchall()
    assert rows, "events were stored"
    assert all(token not in row[0] for row in rows)
    assert all(token not in row[0] for row in stored), "only digests are stored"
    assert any('"actor":"svc"' in row[0] for row in rows)


def test_a_revoked_token_stops_working(server: Server) -> None:
    token = server.token("temp", "operator")
    with server.client(token) as temp:
        assert temp.get("/v1/whoami").status_code == 200
        with server.client() as admin:
            revoked = ok(admin.post("/v1/tokens/temp/revoke"))
            assert revoked["revoked"] == 1
            assert admin.post("/v1/tokens/nobody/revoke").status_code == 404
        wait_until(lambda: temp.get("/v1/whoami").status_code == 401, timeout=10,
                   what="the revoked token to be refused (cache expiry)")


def test_an_oversized_ingest_body_is_refused_before_it_is_read(server: Server) -> None:
    with server.client() as admin:
        response = admin.post("/v1/evaluations", content=b"[" + b" " * (5 * 1024 * 1024) + b"]",
                              headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_a_producer_resolves_both_arms_of_a_shadow_rollout(server: Server) -> None:
    """A producer may not read releases, so resolve tells it what each arm must run."""
    with server.client() as admin:
        release(admin, "shadowed")
        ok(admin.post("/v1/tasks/shadowed/default", json={"release": 1, "reason": "launch"}))
        release(admin, "shadowed", "Beta", prompt_template="Score the call, strictly.",
                seed=99)
        body = {"task": "shadowed", "candidate": 2, "reason": "compare in shadow",
                "steps": [100], "shadow": True}
        rollout = str(ok(admin.post("/v1/rollouts", json=body), 201)["aggregate"]["id"])
        ok(admin.post(f"/v1/rollouts/{rollout}/start", json={"reason": "shadow now"}))
        ok(admin.post("/v1/tenants", json={"key": "acme", "reason": "onboard"}), 201)
    producer = server.token("scorer", "producer", ("acme",))
    with server.client(producer) as p:
        assert p.get("/v1/releases/shadowed/2").status_code == 403
        answer = ok(p.get("/v1/resolve", params={"tenant": "acme", "task": "shadowed"}))
    assert (answer["release"], answer["shadow_release"]) == (1, 2)
    production, shadow = answer["release_detail"], answer["shadow_release_detail"]
    assert (production["seed"], shadow["seed"]) == (SPEC["seed"], 99)
    assert production["prompt_hash"] != shadow["prompt_hash"]
    assert shadow["model_version"] == SPEC["model_version"]
