"""Reset to defaults over HTTP and the CLI: the dry run changes nothing and shows the plan;
operators and admins may run both, auditors and producers neither."""

import json

import pytest
from relctl.entrypoints.cli import app as cli
from relctl.infra.bootstrap import Runtime
from typer.testing import CliRunner

from bench.builders import waive_gates
from tests.integration.conftest import Server
from tests.integration.read_support import SPEC, WHO

pytestmark = pytest.mark.integration


def _seed(runtime: Runtime) -> None:
    app = runtime.app
    for n in (1, 2):
        app.create_release("csat", {**SPEC, "seed": n}, **WHO)
        if n == 1:
            waive_gates(app, "csat")
        app.promote_release("csat", n, "Stable", **WHO)
    app.set_default_release("csat", 2, **WHO)
    app.register_tenant("acme", "Acme", "general", **WHO)
    app.set_override("acme", "csat", "prompt", "our text", **WHO, base_release=1)


def _count(runtime: Runtime) -> int:
    return int(runtime.app.recorder.max_notification_id() or 0)


def test_dry_run_then_reset_over_http(runtime: Runtime, server: Server) -> None:
    _seed(runtime)
    operator = server.token("olga@example.com", "operator")
    before = _count(runtime)
    with server.client(operator) as ops:
        plan = ops.get("/v1/tenants/acme/reset-plan", params={"task": "csat"})
        assert plan.status_code == 200, plan.text
        body = plan.json()
        assert _count(runtime) == before  # a dry run records nothing
        [entry] = body["tasks"]
        assert [o["kind"] for o in entry["overrides"]] == ["prompt"]
        assert (entry["before"]["release"], entry["before"]["source"]) == (1, "override")
        assert (entry["after"]["release"], entry["after"]["source"]) == (2, "default")
        done = ops.post("/v1/tenants/acme/reset", json={"task": "csat", "reason": "follow v2"})
        assert done.status_code == 200, done.text
        again = ops.get("/v1/tenants/acme/reset-plan").json()
        assert again["tasks"] == [] and "already follows the defaults" in again["note"]
    last = runtime.app.history(runtime.app.tenant("acme").id)[-1]
    assert type(last).__qualname__ == "Tenant.ResetToDefaults"
    assert (last.actor, last.reason, last.role) == ("olga@example.com", "follow v2", "operator")


@pytest.mark.parametrize("role", ["auditor", "producer"])
def test_only_operators_and_admins_plan_or_reset(runtime: Runtime, server: Server,
                                                 role: str) -> None:
    _seed(runtime)
    token = server.token(f"{role}@example.com", role, tenants=("acme",))
    with server.client(token) as http:
        assert http.get("/v1/tenants/acme/reset-plan").status_code == 403
        assert http.post("/v1/tenants/acme/reset",
                         json={"reason": "try it"}).status_code == 403
    with server.client() as admin:
        assert admin.get("/v1/tenants/acme/reset-plan").status_code == 200
        assert admin.get("/v1/tenants/nobody/reset-plan").status_code == 404
        assert admin.get("/v1/tenants/acme/reset-plan",
                         params={"task": "Not A Key"}).status_code == 422


def test_cli_dry_run_shows_the_plan_and_changes_nothing(
        runtime: Runtime, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(runtime)
    monkeypatch.setenv("RELCTL_API_URL", server.url)
    monkeypatch.setenv("RELCTL_TOKEN", server.token("olga@example.com", "operator"))
    before = _count(runtime)
    text = CliRunner().invoke(cli, ["tenant", "reset", "acme", "--dry-run"])
    assert text.exit_code == 0, text.output
    assert "dry run" in text.output and "prompt override" in text.output
    assert "v1 (override) -> v2 (default)" in text.output
    as_json = CliRunner().invoke(cli, ["tenant", "reset", "acme", "--dry-run", "-o", "json"])
    assert json.loads(as_json.output)["tasks"][0]["task"] == "csat"
    assert _count(runtime) == before
    missing = CliRunner().invoke(cli, ["tenant", "reset", "acme"])
    assert missing.exit_code == 2  # a real reset needs a reason
    real = CliRunner().invoke(cli, ["tenant", "reset", "acme", "-r", "back to defaults"])
    assert real.exit_code == 0, real.output
    assert _count(runtime) == before + 1
