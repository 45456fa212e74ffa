"""The OpenAPI document is the contract: each operation documents its errors, and a bounded
schemathesis run with every check (``--checks all``) finds no response that differs from it."""

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from relctl.domain.commands import COMMAND_BODIES
from relctl.infra.projector import start_projectors
from schemathesis.cli import schemathesis as schemathesis_cli

from tests.integration.conftest import Server
from tests.integration.test_api import ok, task_with_rollout

pytestmark = pytest.mark.integration

COMMAND_STATUSES = {"400", "401", "403", "404", "409", "413", "422"}


def test_every_command_documents_its_errors_in_one_shape(api: httpx.Client) -> None:
    spec = ok(api.get("/openapi.json"))
    commands = [(path, op) for path, item in spec["paths"].items()
                for method, op in item.items() if method == "post"
                and path != "/v1/evaluations"]
    assert len(commands) >= 25
    for path, op in commands:
        assert set(op["responses"]) >= COMMAND_STATUSES, path
        for status in COMMAND_STATUSES:
            schema = op["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
    error = spec["components"]["schemas"]["ErrorDetail"]
    assert set(error["properties"]) == {"code", "message"}


def test_every_command_body_is_the_body_of_a_post_operation(api: httpx.Client) -> None:
    spec = ok(api.get("/openapi.json"))
    bodies: dict[str, list[str]] = {}
    for path, item in spec["paths"].items():
        content = item.get("post", {}).get("requestBody", {}).get("content", {})
        ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
        if ref:
            bodies.setdefault(ref.rsplit("/", 1)[-1], []).append(path)
    for name, model in COMMAND_BODIES.items():
        assert model.__name__ in bodies, (name, model.__name__)
    assert bodies["WithdrawGateWaiver"] == ["/v1/tasks/{task}/gate-waiver/withdraw"]
    assert bodies["WaiveGates"] == ["/v1/tasks/{task}/gate-waiver"]


def test_the_schema_carries_the_validation(api: httpx.Client) -> None:
    spec = ok(api.get("/openapi.json"))
    schemas = spec["components"]["schemas"]
    reason = schemas["FlipFlag"]["properties"]["reason"]
    assert (reason["minLength"], reason["maxLength"]) == (3, 2000)
    assert schemas["FlipFlag"]["properties"]["enabled"]["type"] == "boolean"
    assert schemas["RegisterTenant"]["properties"]["key"]["pattern"].startswith("^[a-z0-9]")
    assert set(schemas["Role"]["enum"]) == {"admin", "operator", "producer", "auditor"}
    assert set(schemas["Stage"]["enum"]) >= {"Draft", "Stable", "Deprecated"}
    assert "GuardRule" in schemas and "ReleaseSpec" in schemas and "StageSpec" in schemas
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    rollback = spec["paths"]["/v1/rollouts/{rollout_id}/rollback"]["post"]
    assert rollback["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WithEvidence"}


def test_unknown_paths_and_methods_answer_in_the_error_shape(api: httpx.Client) -> None:
    missing = api.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = api.put("/v1/tenants")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


# Rules across fields that a JSON Schema cannot state (weights summing to 100, unique names,
# strictly increasing steps, no model alias) answer 422 to a schema-valid body, and a body whose
# encoding passes the 512 KiB limit (200,000 characters written as \u escapes) answers 413
# whatever its content: schemathesis's positive_data_acceptance and negative_data_rejection are
# told so. Every other check runs with its defaults.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "413", "422"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                     "428", "429", "5xx"]
"""


def test_schemathesis_finds_no_response_off_the_contract(
        server: Server, api: httpx.Client, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    monkeypatch.chdir(tmp_path)  # schemathesis keeps its cache under the working directory
    projectors = start_projectors(server.runtime.app, server.runtime.settings)  # as relctl up
    request.addfinalizer(projectors.stop)
    task_with_rollout(api, "st")
    ok(api.post("/v1/tenants", json={"key": "acme", "reason": "onboard"}), 201)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    result = CliRunner().invoke(schemathesis_cli, [
        "--config-file", str(config),
        "run", f"{server.url}/openapi.json", "--checks", "all",
        "--max-examples", "8", "--seed", "1", "--workers", "1",
        "--exclude-path", "/v1/evaluations",  # needs a broker producer; covered in test_ingest
        "--phases", "examples,coverage,fuzzing",
        "-H", f"Authorization: Bearer {server.admin_token}",
        "--request-timeout", "20", "--no-color", "--generation-database", "none",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output[-8000:]
