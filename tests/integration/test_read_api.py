"""The read routers over HTTP, with the projector running beside them as ``relctl up`` would."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import typer
from relctl.entrypoints.cli_read import read_app
from relctl.infra.bootstrap import Runtime
from typer.testing import CliRunner

from tests.integration.read_more_support import read_stack
from tests.integration.read_support import WHO, seed_tasks, stored_events

pytestmark = pytest.mark.integration


@pytest.fixture
def client(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    with read_stack(runtime) as server:
        monkeypatch.setenv("RELCTL_API_URL", server.url)
        monkeypatch.setenv("RELCTL_TOKEN", server.admin_token)
        with server.client() as http:
            yield http


def test_resolve_reads_its_own_writes_with_an_etag(runtime: Runtime, client: httpx.Client) -> None:
    seed_tasks(runtime.app, ("csat",))
    runtime.app.register_tenant("acme", "Acme", "general", **WHO)
    first = client.get("/v1/read/resolve", params={"tenant": "acme", "task": "csat"})
    assert first.status_code == 200
    assert first.json()["release"] == 1
    etag = first.headers["etag"]
    unchanged = client.get("/v1/read/resolve", params={"tenant": "acme", "task": "csat"},
                           headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    runtime.app.pin("acme", "csat", 2, **WHO, days=3)
    changed = client.get("/v1/read/resolve", params={"tenant": "acme", "task": "csat"},
                         headers={"If-None-Match": etag})
    assert changed.status_code == 200  # the command just issued is visible at once
    assert (changed.json()["release"], changed.json()["source"]) == (2, "pin")
    assert changed.headers["etag"] != etag


def test_bad_input_is_a_clear_4xx(runtime: Runtime, client: httpx.Client) -> None:
    seed_tasks(runtime.app, ("csat",))
    naive = client.get("/v1/read/resolve", params={"tenant": "acme", "task": "csat",
                                                    "at": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    assert "timezone" in naive.json()["error"]["message"]
    missing = client.get("/v1/read/resolve", params={"tenant": "acme", "task": "nope"})
    assert missing.status_code == 404
    fmt = client.get("/v1/audit/export", params={"format": "xml"})
    assert fmt.status_code == 422
    backwards = client.get("/v1/read/changes", params={
        "since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"})
    assert backwards.status_code == 422


def test_inventory_drift_and_audit_over_http(runtime: Runtime, client: httpx.Client) -> None:
    seed_tasks(runtime.app, ("csat",))
    runtime.app.register_tenant("acme", "Acme", "general", **WHO)
    runtime.app.register_tenant("globex", "Globex", "general", **WHO)
    runtime.app.set_override("globex", "csat", "prompt", "ours", actor="bob", reason="contract")
    overrides = client.get("/v1/read/overrides").json()
    assert [(o["tenant"], o["by"]) for o in overrides] == [("globex", "bob")]
    drift = client.get("/v1/read/drift", params={"task": "csat"}).json()
    assert [r["tenant"] for r in drift["reached"]] == ["acme"]
    assert [(r["tenant"], r["reach"]) for r in drift["shielded"]] == [
        ("globex", "shielded-by-override")]
    verdict = client.get("/v1/audit/verify").json()
    assert verdict["ok"] is True
    lines = client.get("/v1/audit/export", params={"actor": "bob"}).text.splitlines()
    assert len(lines) == 1
    csv_text = client.get("/v1/audit/export", params={"format": "csv"}).text
    assert csv_text.startswith("seq,position,at,event")
    now = datetime.now(UTC).isoformat()
    changes = client.get("/v1/read/changes", params={
        "since": "2020-01-01T00:00:00Z", "until": now, "tenant": "globex"}).json()
    assert changes[-1]["cause"]["actor"] == "bob"


def test_cli_project_once_and_audit_verify_and_export(
        runtime: Runtime, client: httpx.Client, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    settings = runtime.settings
    assert settings.database_url
    monkeypatch.setenv("RELCTL_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELCTL_DATABASE_SCHEMA", settings.database_schema)
    seed_tasks(runtime.app, ("csat",))
    cli = typer.Typer()
    cli.add_typer(read_app)
    runner = CliRunner()
    rebuilt = runner.invoke(cli, ["project", "--once", "--rebuild-all"])
    assert rebuilt.exit_code == 0, rebuilt.output
    intact = runner.invoke(cli, ["audit", "verify"])
    assert intact.exit_code == 0, intact.output
    assert "intact" in intact.output
    target = tmp_path / "audit.csv"
    exported = runner.invoke(cli, ["audit", "export", "--format", "csv", "--out", str(target)])
    assert exported.exit_code == 0, exported.output
    assert len(target.read_text().splitlines()) == 1 + len(stored_events(runtime.app))
    runtime.db.execute("UPDATE relctl_rm_audit SET content = content || ' ' WHERE seq = 3")
    broken = runner.invoke(cli, ["audit", "verify"])
    assert broken.exit_code == 1
    assert "broken at row 3" in broken.output
