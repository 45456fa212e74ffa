"""``relctl gate`` end to end on the example golden set against the local model server."""

import json
import shutil
from pathlib import Path

import pytest
from relctl.adapters.openai_compatible_server import Behaviour, serve_in_thread
from relctl.entrypoints.cli_gate import gate_app
from typer.testing import CliRunner

from tests.integration.gate_support import GOLDEN_PATH

pytestmark = pytest.mark.integration
EXAMPLES = GOLDEN_PATH.parent


def test_register_run_report_and_decide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RELCTL_DATA_DIR", str(tmp_path / "data"))
    cli = CliRunner()
    with serve_in_thread() as (url, state):
        endpoint = json.loads((EXAMPLES / "endpoint-local.json").read_text())
        (tmp_path / "endpoint.json").write_text(json.dumps({**endpoint, "base_url": url}))
        state.behaviours["qa-scorer-2026-11-01"] = Behaviour(miss_critical=0.5)

        registered = cli.invoke(gate_app, ["golden", "register", str(GOLDEN_PATH), "--name",
                                           "csat", "--reason", "first labelled set"])
        assert registered.exit_code == 0, registered.output
        assert json.loads(registered.stdout)["golden_set"]["version"] == 1

        args = ["run", "--task", "csat", "--golden", "csat",
                "--candidate", str(EXAMPLES / "release-candidate.json"), "--candidate-id", "r2",
                "--baseline", str(EXAMPLES / "release-baseline.json"), "--baseline-id", "r1",
                "--endpoint", str(tmp_path / "endpoint.json"), "--bundle-id", "gb-1",
                "--no-progress", "-o", "json"]
        result = cli.invoke(gate_app, args)
        assert result.exit_code == 0, result.output
        event = json.loads(result.stdout)
        outcomes = {r["gate"]["name"]: r["outcome"] for r in event["results"]}
        assert outcomes["critical-false-negatives"] == "Failed"
        sent_once = len(state.received)
        assert sent_once == 2 * 320

        # the same command again resumes from the checkpoints: nothing is sent twice
        again = cli.invoke(gate_app, [*args[:-5], "--bundle-id", "gb-2", "--no-progress"])
        assert again.exit_code == 0, again.output
        assert len(state.received) == sent_once

    folder = tmp_path / "data" / "gates" / "bundles" / "gb-1"
    assert {p.name for p in folder.iterdir()} == {
        "bundle.json", "report.md", "report.html", "gate-evaluated.json"}
    decide = ["decide", "--release", "r2", "--golden", "csat",
              "--bundle", str(folder / "gate-evaluated.json")]
    refused = cli.invoke(gate_app, decide)
    assert refused.exit_code == 4
    assert "critical-false-negatives" in refused.stdout
    forbidden = cli.invoke(gate_app, [*decide, "--break-glass", "incident 12", "--role",
                                      "operator"])
    assert forbidden.exit_code == 6
    glass = cli.invoke(gate_app, [*decide, "--break-glass", "incident 12", "--role", "admin",
                                  "--actor", "ana", "-o", "json"])
    assert glass.exit_code == 0, glass.output
    assert json.loads(glass.stdout)["break_glass"]["actor"] == "ana"

    # a new golden set version makes the old bundle stale: refused again
    changed = tmp_path / "changed.jsonl"
    shutil.copy(GOLDEN_PATH, changed)
    rows = changed.read_text().splitlines()
    changed.write_text("\n".join(rows[:-1]) + "\n")
    assert cli.invoke(gate_app, ["golden", "register", str(changed), "--name", "csat",
                                 "--reason", "drop one call"]).exit_code == 0
    stale = cli.invoke(gate_app, decide)
    assert stale.exit_code == 4
    assert "no gate bundle for golden set csat v2" in stale.stdout


def test_bad_input_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RELCTL_DATA_DIR", str(tmp_path))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"call_id": "x"}\n')
    result = CliRunner().invoke(gate_app, ["golden", "register", str(bad), "--name", "csat",
                                           "--reason", "oops"])
    assert result.exit_code == 3
    assert "line 1" in result.stderr
    missing = CliRunner().invoke(gate_app, ["golden", "show", "nope"])
    assert missing.exit_code == 5
