"""Release notes over HTTP and the CLI, fed by the read models: per tenant (reached, or
shielded by a pin or an override), Markdown and JSON, with the guard's measured delta."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from relctl.adapters.verdicts import VerdictBoard, VerdictRecord
from relctl.entrypoints.cli import app as cli
from relctl.infra.bootstrap import Runtime
from typer.testing import CliRunner

from bench.builders import waive_gates
from tests.integration.read_more_support import ReadStack, read_stack
from tests.integration.read_support import SPEC, WHO

pytestmark = pytest.mark.integration

EFFECT = {"summary": "Scores may rise slightly on long calls.",
          "deltas": [{"metric": "score_mean", "delta": 2.0, "unit": "points"}]}


@pytest.fixture
def stack(runtime: Runtime) -> Iterator[ReadStack]:
    with read_stack(runtime) as instance:
        yield instance


def _history(runtime: Runtime) -> str:
    app = runtime.app
    app.create_release("csat", SPEC, actor="alice", reason="first scoring prompt")
    waive_gates(app, "csat")
    app.promote_release("csat", 1, "Stable", **WHO)
    app.set_default_release("csat", 1, **WHO)
    app.create_release("csat", {**SPEC, "prompt_template": "Score the call, carefully.",
                                "model_version": "gpt-4o-2024-11-20",
                                "expected_effect": EFFECT},
                       actor="alice", reason="fewer false fails on long calls")
    app.promote_release("csat", 2, "Beta", actor="bob", reason="passed the golden set")
    for key in ("acme", "globex", "initech"):
        app.register_tenant(key, key.title(), "general", **WHO)
    app.pin("globex", "csat", 1, **WHO, days=7)
    app.set_override("initech", "csat", "prompt", "our own wording", **WHO)
    rollout = str(app.plan_rollout("csat", 2, actor="carol", reason="try v2 on 10 %",
                                   baseline=1, steps=[10, 100])["aggregate"]["id"])
    VerdictBoard(runtime.db).apply("verdicts", [VerdictRecord(0, 0, json.dumps({
        "rollout_id": rollout, "rule": "score-shift", "metric": "score_mean",
        "comparator": ">", "threshold": 5, "gate_class": "Signal", "outcome": "Passed",
        "value": 1.5, "samples": 250, "min_samples": 50, "window_seconds": 600,
        "for_seconds": 0, "candidate": {"value": 71.5, "samples": 120},
        "baseline": {"value": 70.0, "samples": 130}, "breach_since": None,
        "at": datetime.now(UTC).isoformat()}).encode())])
    return rollout


def test_notes_per_tenant_in_json_and_markdown(runtime: Runtime, stack: ReadStack) -> None:
    rollout = _history(runtime)
    with stack.client(stack.token("audrey", "auditor")) as http:
        answer = http.get("/v1/read/release-notes",
                          params={"task": "csat", "release": 2, "tenant": "acme"})
        assert answer.status_code == 200, answer.text
        notes = answer.json()
        assert (notes["tenant"], notes["affected"], notes["replaces"]) == ("acme", True, 1)
        assert [c["area"] for c in notes["changes"]] == ["prompt", "model"]
        reasons = [r["reason"] for r in notes["why"]]
        assert "fewer false fails on long calls" in reasons
        assert "passed the golden set" in reasons and "try v2 on 10 %" in reasons
        [shift] = notes["expected"]
        assert (shift["declared"], shift["measured"]) == (2.0, 1.5)
        assert notes["measured"][0]["rollout_id"] == rollout
        assert any("Recalibrate" in x for x in notes["what_to_do"])
        assert any(f"relctl rollout rollback {rollout}" in x for x in notes["opt_out"])
        for tenant, shield in (("globex", "pinned to v1"), ("initech", "overrides prompt")):
            other = http.get("/v1/read/release-notes", params={
                "task": "csat", "release": 2, "tenant": tenant}).json()
            assert other["affected"] is False and shield in other["shielded_by"]
        everyone = http.get("/v1/read/release-notes", params={"task": "csat", "release": 2})
        assert (everyone.json()["reached"], everyone.json()["shielded"]) == (
            ["acme"], ["globex", "initech"])
        markdown = http.get("/v1/read/release-notes", params={
            "task": "csat", "release": 2, "tenant": "globex", "format": "markdown"})
        assert markdown.headers["content-type"].startswith("text/markdown")
        assert "**does not affect you**: pinned to v1" in markdown.text
        missing = http.get("/v1/read/release-notes", params={"task": "csat", "release": 9})
        assert missing.status_code == 404
        unknown = http.get("/v1/read/release-notes",
                           params={"task": "csat", "release": 2, "tenant": "nobody"})
        assert unknown.status_code == 404
    with stack.client(stack.token("pat", "producer", ("acme",))) as producer:
        assert producer.get("/v1/read/release-notes",
                            params={"task": "csat", "release": 2}).status_code == 403


def test_cli_release_notes(runtime: Runtime, stack: ReadStack,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    _history(runtime)
    monkeypatch.setenv("RELCTL_API_URL", stack.url)
    monkeypatch.setenv("RELCTL_TOKEN", stack.admin_token)
    text = CliRunner().invoke(cli, ["release", "notes", "csat", "2", "--tenant", "acme"])
    assert text.exit_code == 0, text.output
    assert text.output.startswith("# csat v2 (Beta)")
    assert "score_mean: declared +2 points, measured +1.5" in text.output
    as_json = CliRunner().invoke(cli, ["release", "notes", "csat", "2", "-o", "json"])
    assert json.loads(as_json.output)["release"] == 2
