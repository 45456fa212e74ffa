"""The guided scenario behind ``relctl demo``: what an operator does on day one.

It talks to a running ``relctl up`` through the same client as every CLI command, so it shows
the real API: two releases of a task (v1 launched under an admin's recorded waiver of the gates;
v2 gated with real evidence: the example golden set registered, v2 run against v1 through the
bundled local OpenAI-compatible server, the bundle recorded, then promoted on it), a rollout
with a guard rule, an advance, evaluations that break the guard (the worker rolls the rollout
back on its own), and the audit history that explains every step.
"""

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relctl.adapters.config import Settings
from relctl.adapters.gate_runner import EndpointConfig
from relctl.adapters.openai_compatible_server import serve_in_thread
from relctl.domain.golden import parse_golden_lines
from relctl.domain.release import prompt_hash
from relctl.entrypoints.cli_gate import record_gate_run
from rich.console import Console

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "golden"

SPEC: dict[str, Any] = {
    "prompt_template": "You are a QA analyst. Score the call transcript for empathy and "
                       "resolution. Return JSON with score and categories.",
    "model_provider": "openai", "model_name": "gpt-4o", "model_version": "gpt-4o-2024-08-06",
    "temperature": 0.0, "seed": 42, "output_schema_version": "1",
    "output_schema": {"type": "object", "required": ["score"],
                      "properties": {"score": {"type": "number"},
                                     "categories": {"type": "object"}}},
    "known_limitations": ["short calls (< 30 s) score unreliably"],
    "release_notes": {"what": "initial scoring prompt", "why": "launch",
                      "expected_effect": "baseline", "customer_action": "none"},
}


def run_demo(client: Any, console: Console, output: str) -> None:
    task = f"csat-demo-{int(time.time())}"
    tenants = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]

    def step(title: str, method: str, path: str, body: Any = None, **params: Any) -> Any:
        if title:
            console.rule(f"[bold]{title}")
        result = client.call(method, path, body, params or None)
        if output == "json":
            console.print_json(data=result)
        return result

    v1, v2 = _releases()
    step("1. create release v1 of " + task, "POST", "/v1/releases",
         {"task": task, "spec": v1, "reason": "first scoring prompt"})
    # Gates are required: without a golden set, promotion past InternalTest and rollout start
    # are refused. v1 went live before the task had one, so an admin declared the task
    # ungated; the waiver is recorded (Task.GatesWaived) and named by v1's passage.
    step("2. v1 launched before a golden set existed: an admin waives the gates (recorded)",
         "POST", f"/v1/tasks/{task}/gate-waiver",
         {"reason": "launched before the golden set existed"})
    step("   promote v1 to Stable and make it the default", "POST",
         f"/v1/releases/{task}/1/promote", {"stage": "Stable", "reason": "passed regression"})
    step("", "POST", f"/v1/tasks/{task}/default", {"release": 1, "reason": "launch"})
    step("3. create release v2 (new prompt, newer model) for InternalTest", "POST",
         "/v1/releases", {"task": task, "spec": v2, "reason": "stricter resolution scoring"})
    step("", "POST", f"/v1/releases/{task}/2/promote",
         {"stage": "InternalTest", "reason": "evaluate it"})
    _gate(client, console, step, task)
    step("   promote v2 to Beta on that evidence", "POST", f"/v1/releases/{task}/2/promote",
         {"stage": "Beta", "reason": "gate bundle passed"})
    guard = [{"name": "llm-errors", "metric": "llm_error_rate", "comparator": ">",
              "threshold": 0.05, "min_samples": 100, "window_seconds": 600,
              "for_seconds": 0, "gate_class": "RollbackTrigger"}]
    plan = step("5. plan a 10 -> 25 -> 50 -> 100 rollout with a guard rule", "POST",
                "/v1/rollouts", {"task": task, "candidate": 2, "guard_rules": guard,
                                 "reason": "progressive rollout of v2"})
    rollout = plan["aggregate"]["id"]
    step("6. start (v2's gates pass again) and advance to 25%", "POST",
         f"/v1/rollouts/{rollout}/start", {"reason": "canary"})
    step("", "POST", f"/v1/rollouts/{rollout}/advance", {"reason": "canary healthy"})
    console.rule("[bold]   resolve: who runs what now")
    # What a producer stamps on its records comes from resolve: the release it must run, with
    # its prompt hash and concrete model (the guard checks records against the release).
    ran: dict[int, dict[str, Any]] = {
        n: client.call("GET", f"/v1/releases/{task}/{n}", None, None)["content"]
        | {"prompt_hash": prompt_hash(spec["prompt_template"])}
        for n, spec in ((1, v1), (2, v2))}
    for tenant in tenants:
        result = client.call("GET", "/v1/resolve", None, {"tenant": tenant, "task": task})
        ran[result["release"]] = result["release_detail"]
        console.print(f"  {tenant:10} -> v{result['release']} ({result['source']})")
    console.rule("[bold]7. the candidate misbehaves: 20% LLM errors, reported by the producers")
    now = datetime.now(UTC).isoformat()
    records = [{
        "tenant": tenants[i % len(tenants)], "task": task, "call_id": f"call-{i}",
        "release": 2 if i % 2 else 1, "prompt_hash": ran[2 if i % 2 else 1]["prompt_hash"],
        "model_provider": ran[2 if i % 2 else 1]["model_provider"],
        "model_version": ran[2 if i % 2 else 1]["model_version"],
        "temperature": ran[2 if i % 2 else 1]["temperature"],
        "seed": ran[2 if i % 2 else 1]["seed"],
        "outcome": "llm_error" if i % 2 and i % 5 == 1 else "ok", "latency_ms": 900.0,
        "tokens": 850, "cost_usd": 0.004, "score": 78.0, "occurred_at": now,
    } for i in range(600)]
    accepted = client.call("POST", "/v1/evaluations", records, None)
    console.print(f"  POST /v1/evaluations: {accepted['accepted']} accepted")
    state = _wait_for_guard(client, rollout)
    if state == "RolledBack":
        decision = client.call("GET", f"/v1/rollouts/{rollout}", None, None)["decisions"][-1]
        console.print(f"  rolled back automatically by {decision['actor']}: {decision['reason']}")
    else:
        console.print(f"  the guard has not acted yet (rollout is {state}; is a worker "
                      "running?); rolling back by hand")
        step("", "POST", f"/v1/rollouts/{rollout}/rollback",
             {"reason": "error rate too high", "evidence": {"llm_error_rate": 0.2}})
    again = client.call("POST", f"/v1/rollouts/{rollout}/rollback",
                        {"reason": "operator double-click"}, None)
    console.print(f"  a second rollback changes nothing: changed={again['changed']}")
    console.rule("[bold]8. after rollback every tenant is on the baseline")
    for tenant in tenants:
        result = client.call("GET", "/v1/resolve", None, {"tenant": tenant, "task": task})
        console.print(f"  {tenant:10} -> v{result['release']} ({result['source']})")
    history = client.call("GET", f"/v1/rollouts/{rollout}/history", None, None)
    console.rule("[bold]9. the rollout's audit history")
    for event in history["events"]:
        data = event["data"]
        kind = event["type"].removeprefix("io.relctl.")
        console.print(f"  {event['time'][11:23]} {kind:28} {data['actor']}: "
                      f"{data['reason'][:60]}")


def _releases() -> tuple[dict[str, Any], dict[str, Any]]:
    """v1 and v2 of the demo task: the example golden set's baseline and candidate releases
    (their schema is the scorecard the local model server answers with), without blueprint
    (a fresh control plane has none)."""
    specs = []
    for name in ("baseline", "candidate"):
        spec = json.loads((EXAMPLES / f"release-{name}.json").read_text("utf-8"))
        spec.pop("blueprint_version_id", None)
        specs.append(spec)
    return specs[0], specs[1]


def _gate(client: Any, console: Console, step: Any, task: str) -> None:
    """Register the example golden set (ending the waiver) and gate v2 against v1 through the
    bundled local OpenAI-compatible server, as ``relctl gate run --release 2`` does."""
    rows = [call.model_dump(mode="json") for call in
            parse_golden_lines((EXAMPLES / "csat-golden.jsonl").read_text("utf-8").splitlines())]
    step("4. register the example golden set: the gates bind again, v2 needs evidence",
         "POST", f"/v1/tasks/{task}/golden-sets",
         {"name": "csat-golden", "rows": rows, "reason": "first labelled set"})
    config = EndpointConfig.from_file(EXAMPLES / "endpoint-local.json")
    with serve_in_thread() as (url, _):
        event = record_gate_run(client, task, 2, config.model_copy(update={"base_url": url}),
                                Settings.from_env().data_dir, reason="gate v2 against v1")
    console.print(f"  gate run v2 vs v1 over {len(rows)} calls x 2 arms through the local "
                  f"model server: bundle {event.bundle_id} recorded")
    for result in event.results:
        console.print(f"    {result.gate.name:26} {result.gate.gate_class!s:12} "
                      f"{result.outcome!s:13} {result.message}")


def _wait_for_guard(client: Any, rollout: str, seconds: float = 20.0) -> str:
    deadline = time.monotonic() + seconds
    state = "Running"
    while time.monotonic() < deadline:
        state = client.call("GET", f"/v1/rollouts/{rollout}", None, None)["state"]
        if state != "Running":
            break
        time.sleep(0.2)
    return str(state)
