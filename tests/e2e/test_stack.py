"""The whole stack as a new user runs it: `relctl up` on the embedded default, driven by the CLI."""

import json
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from relctl.domain.release import prompt_hash

from tests.conftest import wait_until
from tests.e2e.support import Stack
from tests.integration.conftest import SPEC

pytestmark = pytest.mark.e2e



def test_operator_scenario_over_the_cli_then_clean_stop_and_restart(
    stack: Stack, tmp_path: Path,
) -> None:
    stack.up()
    token_file = stack.data_dir / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    spec_file = tmp_path / "v1.json"
    spec_file.write_text(json.dumps(SPEC))
    spec2 = tmp_path / "v2.json"
    spec2.write_text(json.dumps({**SPEC, "prompt_template": "Score the call, strictly."}))

    def cli_ok(*args: str) -> Any:
        code, payload, err = stack.cli(*args)
        assert code == 0, err
        return payload

    cli_ok("release", "create", "csat", "-f", str(spec_file), "-r", "first prompt")
    assert cli_ok("gate", "waive", "--task", "csat", "-r", "the stack, not the gates")[
        "gate_policy"] == "waived"
    cli_ok("release", "promote", "csat", "1", "Stable", "-r", "regression passed")
    cli_ok("release", "set-default", "csat", "1", "-r", "launch")
    cli_ok("release", "create", "csat", "-f", str(spec2), "-r", "stricter")
    cli_ok("release", "promote", "csat", "2", "Beta", "-r", "eval bundle ok")
    plan = cli_ok("rollout", "plan", "csat", "2", "--steps", "10,25,50,100", "-r", "progressive")
    rollout = plan["aggregate"]["id"]
    cli_ok("rollout", "start", rollout, "-r", "canary")
    cli_ok("rollout", "advance", rollout, "-r", "healthy")
    assert cli_ok("rollout", "show", rollout)["current_step"] == 25
    assert cli_ok("rollout", "rollback", rollout, "-r", "complaints")["changed"] is True
    assert cli_ok("rollout", "rollback", rollout, "-r", "again")["changed"] is False
    resolved = cli_ok("resolve", "acme", "csat")
    assert (resolved["release"], resolved["source"]) == (1, "default")
    history = cli_ok("rollout", "history", rollout)["events"]
    assert [e["type"].split(".")[-2] for e in history] == [
        "planned", "started", "step_advanced", "rolled_back"]

    # The guard worker that `relctl up` runs rolls a breaking candidate back on its own.
    guard = tmp_path / "guard.json"
    guard.write_text(json.dumps([{
        "name": "errors", "metric": "llm_error_rate", "comparator": ">", "threshold": 0.05,
        "min_samples": 50, "window_seconds": 300, "for_seconds": 0,
        "gate_class": "RollbackTrigger"}]))
    cli_ok("release", "create", "csat", "-f", str(spec2), "-r", "third try")
    cli_ok("release", "promote", "csat", "3", "Beta", "-r", "eval bundle ok")
    guarded = cli_ok("rollout", "plan", "csat", "3", "--steps", "100", "--guards", str(guard),
                     "-r", "guarded")["aggregate"]["id"]
    cli_ok("rollout", "start", guarded, "-r", "all in")
    producer = cli_ok("token", "create", "scorer", "--role", "producer", "--tenant", "acme")
    records = [{"tenant": "acme", "task": "csat", "call_id": f"c{i}", "release": 3,
                "prompt_hash": prompt_hash("Score the call, strictly."),
                "model_provider": "openai",
                "model_version": "gpt-4o-2024-08-06", "temperature": 0.0, "seed": 7,
                "outcome": "llm_error" if i % 4 == 0 else "ok", "latency_ms": 900.0,
                "tokens": 800, "cost_usd": 0.01,
                "occurred_at": datetime.now(UTC).isoformat()} for i in range(80)]
    posted = httpx.post(stack.url + "/v1/evaluations", json=records, timeout=30,
                        headers={"Authorization": f"Bearer {producer['token']}"})
    assert posted.status_code == 202 and posted.json()["accepted"] == 80
    wait_until(lambda: cli_ok("rollout", "show", guarded)["state"] == "RolledBack",
               timeout=60, interval=0.2, what="automatic rollback by the worker")
    decisions = cli_ok("rollout", "show", guarded)["decisions"]
    assert [d["actor"] for d in decisions] == ["relctl-guard"]
    assert cli_ok("resolve", "acme", "csat")["release"] == 1

    # Exit codes tell scripts what went wrong.
    assert stack.cli("release", "show", "csat", "9")[0] == 5
    assert stack.cli("rollout", "advance", rollout, "-r", "after rollback")[0] == 4
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SPEC, "model_version": "latest"}))
    code, _, err = stack.cli("release", "create", "csat", "-f", str(bad), "-r", "alias")
    assert code == 3 and "alias" in err
    assert stack.cli("task", "show", "csat", token="rk_wrong")[0] == 6

    # Ctrl-C / SIGTERM stops everything, child processes included.
    assert stack.process is not None
    children = psutil.Process(stack.process.pid).children(recursive=True)
    assert children, "the embedded broker runs as a child"
    assert stack.down() == 0
    assert stack.token not in stack.output, "the admin token is never printed"
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert not (stack.data_dir / "postgres" / "postmaster.pid").exists()
    assert stack.cli("task", "show", "csat")[0] == 7, "API down means 'unavailable'"

    # Data persists in the data directory; the admin token is not re-created.
    token_before = stack.token
    stack.up()
    assert stack.token == token_before
    assert cli_ok("task", "show", "csat")["default_release"] == 1
    started = time.monotonic()
    assert stack.down() == 0
    assert time.monotonic() - started < 30
