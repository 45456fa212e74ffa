"""The guided scenario behind ``relctl demo``: what an operator does on day one.

It talks to a running ``relctl up`` through the same client as every CLI command, so it shows
the real API: two releases of a task (whose gates an admin waives, recorded, since the demo has
no golden set), a rollout with a guard rule, an advance, evaluations that break the guard (the
worker rolls the rollout back on its own), and the audit history that explains every step.
"""

import time
from datetime import UTC, datetime
from typing import Any

from relctl.domain.release import prompt_hash
from rich.console import Console

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

    step("1. create release v1 of " + task, "POST", "/v1/releases",
         {"task": task, "spec": SPEC, "reason": "first scoring prompt"})
    # Gates are required: without a golden set, promotion past InternalTest and rollout start
    # are refused. The demo is about rollouts and the guard, so an admin declares its task
    # ungated, which is recorded (Task.GatesWaived) and named by every passage it allows.
    step("   declare the demo task ungated (admin waiver, recorded)", "POST",
         f"/v1/tasks/{task}/gate-waiver",
         {"reason": "demo task: no golden set; see relctl gate golden register / gate run"})
    step("2. promote v1 to Stable and make it the default", "POST",
         f"/v1/releases/{task}/1/promote", {"stage": "Stable", "reason": "passed regression"})
    step("", "POST", f"/v1/tasks/{task}/default", {"release": 1, "reason": "launch"})
    v2 = {**SPEC, "prompt_template": SPEC["prompt_template"] + " Penalise unresolved issues.",
          "release_notes": {**SPEC["release_notes"], "what": "stricter resolution scoring"}}
    step("3. create release v2 (new prompt) and promote it to Beta", "POST", "/v1/releases",
         {"task": task, "spec": v2, "reason": "stricter resolution scoring"})
    step("", "POST", f"/v1/releases/{task}/2/promote", {"stage": "Beta", "reason": "eval ok"})
    guard = [{"name": "llm-errors", "metric": "llm_error_rate", "comparator": ">",
              "threshold": 0.05, "min_samples": 100, "window_seconds": 600,
              "for_seconds": 0, "gate_class": "RollbackTrigger"}]
    plan = step("4. plan a 10 -> 25 -> 50 -> 100 rollout with a guard rule", "POST",
                "/v1/rollouts", {"task": task, "candidate": 2, "guard_rules": guard,
                                 "reason": "progressive rollout of v2"})
    rollout = plan["aggregate"]["id"]
    step("5. start and advance to 25%", "POST", f"/v1/rollouts/{rollout}/start",
         {"reason": "canary"})
    step("", "POST", f"/v1/rollouts/{rollout}/advance", {"reason": "canary healthy"})
    console.rule("[bold]6. resolve: who runs what now")
    # What a producer stamps on its records comes from resolve: the release it must run, with
    # its prompt hash and concrete model (the guard checks records against the release).
    ran: dict[int, dict[str, Any]] = {
        1: {"prompt_hash": prompt_hash(SPEC["prompt_template"])},
        2: {"prompt_hash": prompt_hash(v2["prompt_template"])}}
    for tenant in tenants:
        result = client.call("GET", "/v1/resolve", None, {"tenant": tenant, "task": task})
        ran[result["release"]] = result["release_detail"]
        console.print(f"  {tenant:10} -> v{result['release']} ({result['source']})")
    console.rule("[bold]7. the candidate misbehaves: 20% LLM errors, reported by the producers")
    now = datetime.now(UTC).isoformat()
    records = [{
        "tenant": tenants[i % len(tenants)], "task": task, "call_id": f"call-{i}",
        "release": 2 if i % 2 else 1, "prompt_hash": ran[2 if i % 2 else 1]["prompt_hash"],
        "model_provider": "openai", "model_version": SPEC["model_version"],
        "temperature": 0.0, "seed": 42,
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


def _wait_for_guard(client: Any, rollout: str, seconds: float = 20.0) -> str:
    deadline = time.monotonic() + seconds
    state = "Running"
    while time.monotonic() < deadline:
        state = client.call("GET", f"/v1/rollouts/{rollout}", None, None)["state"]
        if state != "Running":
            break
        time.sleep(0.2)
    return str(state)
