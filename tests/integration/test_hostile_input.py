"""Hostile input: no request makes the API answer 500 or drop the connection.

Each case gets a 4xx JSON error in relctl's shape, stores nothing (checked against the event
store and the token table, not assumed), and the server goes on serving.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from relctl.domain.blueprint import Blueprint
from relctl.infra.bootstrap import Runtime

from tests.integration.conftest import SPEC, Server
from tests.integration.test_api import ok, task_with_rollout

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/json"}


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_raw(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def property_chain(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"p": schema}}
    return schema


def release_body(**spec: Any) -> dict[str, Any]:
    return {"task": "hostile", "reason": "new release", "spec": {**SPEC, **spec}}


def stages(weight: Any) -> list[dict[str, Any]]:
    return [{"name": "s", "weight": weight, "behaviours": [{"name": "b", "weight": 100}]}]


@dataclass
class World:
    server: Server
    api: httpx.Client
    rollout: str


Send = Callable[[World], httpx.Response]


def post(path: str, body: Any) -> Send:
    return lambda w: w.api.post(path.format(rollout=w.rollout), json=body)


def raw(path: str, content: bytes) -> Send:
    return lambda w: w.api.post(path.format(rollout=w.rollout), content=content, headers=JSON)


CASES: dict[str, tuple[Send, int, str]] = {
    # deep nesting in free-form JSON
    "output_schema 300 deep": (post("/v1/releases", release_body(output_schema=nested(300))),
                               422, "nested"),
    "output_schema 990 deep": (raw("/v1/releases", json.dumps(release_body()).replace(
        '"output_schema": {', '"output_schema": {"x": ' + nested_raw(990) + ",", 1).encode()),
        422, "nested"),
    "body 5000 deep": (raw("/v1/releases", nested_raw(5000).encode()), 422, "nested"),
    "evidence 300 deep": (post("/v1/rollouts/{rollout}/pause",
                               {"reason": "deep", "evidence": nested(300)}), 422, "nested"),
    "evidence 40 deep": (post("/v1/rollouts/{rollout}/freeze",
                              {"reason": "deep", "evidence": nested(40)}), 422, "32 levels"),
    "properties chain 200": (post("/v1/releases", release_body(
        output_schema=property_chain(200))), 422, "nested"),
    "properties chain 470": (post("/v1/releases", release_body(
        output_schema=property_chain(470))), 422, "nested"),
    "properties chain 20": (post("/v1/releases", release_body(
        output_schema=property_chain(20))), 422, "32 levels"),
    "output_schema not a JSON Schema": (post("/v1/releases", release_body(
        output_schema={"type": "objekt"})), 422, "not a valid JSON Schema"),
    "output_schema too big": (post("/v1/releases", release_body(output_schema={
        "type": "object", "description": "x" * 70_000})), 422, "limit is 65536"),
    # NUL and control characters, invalid Unicode
    "NUL in token actor": (post("/v1/tokens", {"actor": "a\u0000b", "role": "operator"}),
                           422, "actor"),
    "NUL in revoke path": (lambda w: w.api.post("/v1/tokens/a%00b/revoke"), 422, "control"),
    "NUL in producer tenants": (post("/v1/tokens", {"actor": "p", "role": "producer",
                                                    "tenants": ["acme\u0000"]}), 422, "tenants"),
    "NUL in reason": (post("/v1/tenants/acme/flags/enable_blueprints",
                           {"enabled": True, "reason": "why\u0000not"}), 422, "NUL"),
    "bell in tenant name": (post("/v1/tenants", {"key": "bell", "name": "a\u0007",
                                                 "reason": "onboard"}), 422, "name"),
    "lone surrogate in tenant name": (raw("/v1/tenants", b'{"key": "sur", "name": "\\ud800", '
                                                         b'"reason": "onboard"}'),
                                      422, "name: text must be valid Unicode"),
    "control character in query": (lambda w: w.api.get("/v1/resolve", params={
        "tenant": "acme\u0001", "task": "hostile"}), 422, "tenant"),
    # numbers
    "weight 1e1000000": (raw("/v1/blueprints", b'{"name": "huge", "reason": "weights", '
                                               b'"stages": [{"name": "s", "weight": 1e1000000, '
                                               b'"behaviours": [{"name": "b", "weight": 100}]}]}'),
                         422, "finite"),
    "weight '1e1000000'": (post("/v1/blueprints", {"name": "huge", "reason": "weights",
                                                   "stages": stages("1e1000000")}),
                           422, "weight"),
    "weight 101": (post("/v1/blueprints", {"name": "huge", "reason": "weights",
                                           "stages": stages(101)}), 422, "100"),
    "5000-digit integer": (raw("/v1/tasks/hostile/default",
                               b'{"release": ' + b"9" * 5000 + b', "reason": "launch"}'),
                           422, "64 bits"),
    "seed beyond 64 bits": (post("/v1/releases", release_body(seed=2**64)), 422, "64 bits"),
    "NaN": (raw("/v1/releases", json.dumps(release_body()).replace(
        '"temperature": 0.0', '"temperature": NaN').encode()), 422, "finite"),
    "percentage step 1e309": (raw("/v1/rollouts", b'{"task": "hostile", "candidate": 2, '
                                                  b'"reason": "huge", "steps": [1e309]}'),
                              422, "finite"),
    # types
    "blueprint_version_id object": (post("/v1/releases", release_body(
        blueprint_version_id={"a": 1})), 422, "blueprint_version_id"),
    "blueprint_version_id list": (post("/v1/releases", release_body(
        blueprint_version_id=["qa@v1"])), 422, "blueprint_version_id"),
    "blueprint_version_id unknown": (post("/v1/releases", release_body(
        blueprint_version_id="nope@v1")), 404, "nope"),
    "enabled 'yes'": (post("/v1/tenants/acme/flags/enable_blueprints",
                           {"enabled": "yes", "reason": "strict booleans"}), 422, "enabled"),
    "expected_version as text": (post("/v1/rollouts/{rollout}/start",
                                      {"reason": "go", "expected_version": "1"}),
                                 422, "expected_version"),
    "role unknown": (post("/v1/tokens", {"actor": "x", "role": "root"}), 422, "role"),
    # sizes
    "reason of 1,000,000 characters": (post("/v1/tenants/acme/flags/enable_blueprints",
                                            {"enabled": True, "reason": "x" * 1_000_000}),
                                       413, "limit"),
    "reason of 3,000 characters": (post("/v1/tenants/acme/flags/enable_blueprints",
                                        {"enabled": True, "reason": "x" * 3_000}),
                                   422, "2000"),
    "evidence of 20 KB": (post("/v1/rollouts/{rollout}/pause",
                               {"reason": "big", "evidence": {"x": "y" * 20_000}}),
                          422, "16384"),
    "tenant name of 300 characters": (post("/v1/tenants", {"key": "long", "name": "n" * 300,
                                                           "reason": "onboard"}),
                                      422, "200"),
    # not JSON, unknown paths and methods
    "invalid UTF-8": (raw("/v1/tenants", b'{"key": "\xff\xfe", "reason": "onboard"}'),
                      400, "UTF-8"),
    "truncated JSON": (raw("/v1/tenants", b'{"key": "x", "reason": '), 400, "not valid JSON"),
    "unknown path": (lambda w: w.api.get("/v1/nothing-here"), 404, "no endpoint"),
    "wrong method": (lambda w: w.api.delete("/v1/tenants/acme"), 405, "DELETE"),
    "unknown rollout action": (post("/v1/rollouts/{rollout}/explode", {"reason": "boom"}),
                               404, "unknown rollout action"),
}


def stored(runtime: Runtime) -> tuple[int, int]:
    events = runtime.app.recorder.max_notification_id() or 0
    return events, runtime.tokens.count()


@pytest.fixture
def world(server: Server, api: httpx.Client) -> World:
    rollout = task_with_rollout(api, "hostile")
    ok(api.post("/v1/tenants", json={"key": "acme", "reason": "onboard"}), 201)
    return World(server, api, rollout)


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_refused_cleanly(world: World, runtime: Runtime, case: str) -> None:
    send, status, phrase = CASES[case]
    before = stored(runtime)
    tenant_before = ok(world.api.get("/v1/tenants/acme/history"))["events"]
    rollout_before = ok(world.api.get(f"/v1/rollouts/{world.rollout}/history"))["events"]

    response = send(world)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and error["code"] and error["message"]
    assert phrase.lower() in error["message"].lower(), error["message"]
    assert stored(runtime) == before, "a refused request stored nothing"
    assert ok(world.api.get("/v1/tenants/acme/history"))["events"] == tenant_before
    assert ok(world.api.get(f"/v1/rollouts/{world.rollout}/history"))["events"] == rollout_before
    # the server goes on serving, on a fresh connection and for a command
    with world.server.client() as fresh:
        flip = ok(fresh.post("/v1/tenants/acme/flags/enable_blueprints",
                             json={"enabled": True, "reason": "still serving"}))
    assert flip["aggregate"]["flags"]["enable_blueprints"] is True


def test_a_blueprint_stored_with_an_overflowing_weight_still_reads(
        runtime: Runtime, api: httpx.Client) -> None:
    # Stored before weights were bounded: written through the aggregate's event directly.
    legacy = Blueprint(name="legacy", stages=[{"name": "s", "weight": "1E+1000000",
                                               "behaviours": [{"name": "b", "weight": "100",
                                                               "critical": False,
                                                               "required": False,
                                                               "rule": ""}]}],
                       actor="root", reason="stored long ago")
    runtime.app.save(legacy)
    read = ok(api.get("/v1/blueprints/legacy"))
    assert read["publishable"] is False
    assert any("stage weights sum to" in p for p in read["problems"])
    refused = api.post("/v1/blueprints/legacy/publish", json={"reason": "try it"})
    assert refused.status_code == 422
    assert "sum to" in refused.json()["error"]["message"]
