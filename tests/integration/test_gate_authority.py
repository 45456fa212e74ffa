"""Gates with authority: golden sets and bundles recorded through the API, and promotion past
InternalTest and rollout start refused, acknowledged or overridden on the recorded evidence.

The bundles come from ``relctl gate run --release`` through the real ``openai`` SDK against the
local OpenAI-compatible server; the control plane is the real API over PostgreSQL.
"""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from relctl.adapters.openai_compatible_server import Behaviour, ModelServerState, serve_in_thread
from relctl.domain.gates import GateClass, default_thresholds
from relctl.domain.ids import release_id
from relctl.entrypoints.cli_gate import gate_app
from relctl.infra.bootstrap import Runtime
from relctl.projections.runner import ProjectorSet
from typer.testing import CliRunner

from tests.integration.conftest import Server
from tests.integration.gate_support import GOLDEN_PATH, golden_calls, planted_names

pytestmark = pytest.mark.integration
EXAMPLES = GOLDEN_PATH.parent
CANDIDATE_MODEL = "qa-scorer-2026-11-01"


@pytest.fixture(scope="module")
def model() -> Iterator[tuple[str, ModelServerState]]:
    with serve_in_thread() as running:
        yield running


class Gated:
    """A task csat with v1 (Stable, default; promoted under an admin's waiver, before csat had
    a golden set) and v2 (InternalTest), as an operator sees it. ``waive=False``: v1 and v2 stay
    InternalTest and csat has neither a golden set nor a waiver."""

    def __init__(self, server: Server, model_url: str, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch, waive: bool = True) -> None:
        self.server = server
        self.tmp = tmp_path
        self.operator = server.client(server.token("olga", "operator"))
        self.admin = server.client(server.token("ana", "admin"))
        monkeypatch.setenv("RELCTL_API_URL", server.url)
        monkeypatch.setenv("RELCTL_TOKEN", server.token("olga", "operator"))
        monkeypatch.setenv("RELCTL_DATA_DIR", str(tmp_path / "data"))
        endpoint = json.loads((EXAMPLES / "endpoint-local.json").read_text())
        self.endpoint = tmp_path / "endpoint.json"
        self.endpoint.write_text(json.dumps({**endpoint, "base_url": model_url}))
        for name in ("baseline", "candidate"):
            spec = json.loads((EXAMPLES / f"release-{name}.json").read_text())
            spec.pop("blueprint_version_id", None)  # no blueprint in this control plane
            ok(self.operator.post("/v1/releases", json={"task": "csat", "spec": spec,
                                                        "reason": f"the {name}"}))
        if waive:  # v1 went to production before csat had evidence; a golden set ends it
            ok(self.admin.post("/v1/tasks/csat/gate-waiver",
                               json={"reason": "launched before gates existed"}))
            ok(self.operator.post("/v1/releases/csat/1/promote",
                                  json={"stage": "Stable", "reason": "before gates existed"}))
            ok(self.operator.post("/v1/tasks/csat/default",
                                  json={"release": 1, "reason": "launch"}))
        ok(self.operator.post("/v1/releases/csat/2/promote",
                              json={"stage": "InternalTest", "reason": "evaluate it"}))

    def cli(self, *args: str) -> Any:
        return CliRunner().invoke(gate_app, list(args))

    def register(self, path: Path = GOLDEN_PATH, reason: str = "first labelled set",
                 thresholds: Path | None = None) -> Any:
        extra = ["--thresholds", str(thresholds)] if thresholds else []
        result = self.cli("golden", "register", str(path), "--name", "csat", "--task", "csat",
                          "--reason", reason, *extra)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def run_gates(self, bundle_id: str) -> dict[str, str]:
        args = ["run", "--task", "csat", "--release", "2", "--endpoint", str(self.endpoint),
                "--bundle-id", bundle_id, "--reason", "gate the candidate", "--no-progress",
                "-o", "json"]
        result = self.cli(*args)
        assert result.exit_code == 0, result.output
        return {r["gate"]["name"]: r["outcome"] for r in json.loads(result.stdout)["results"]}

    def promote(self, client: httpx.Client, **fields: Any) -> httpx.Response:
        return client.post("/v1/releases/csat/2/promote",
                           json={"stage": "Beta", "reason": "ship to beta", **fields})

    def release(self) -> dict[str, Any]:
        return ok(self.operator.get("/v1/releases/csat/2"))

    def events(self, name: str) -> list[dict[str, Any]]:
        history = ok(self.operator.get("/v1/releases/csat/2/history"))["events"]
        return [e["data"] for e in history if e["type"] == f"io.relctl.release.{name}.v1"]


def ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


@pytest.fixture
def gated(server: Server, model: tuple[str, ModelServerState], tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Gated:
    return Gated(server, model[0], tmp_path, monkeypatch)


@pytest.fixture
def required(server: Server, model: tuple[str, ModelServerState], tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Gated:
    return Gated(server, model[0], tmp_path, monkeypatch, waive=False)


def test_a_task_without_a_golden_set_is_refused_and_nothing_is_recorded(required: Gated):
    before = required.release()
    refused = required.promote(required.operator)
    assert refused.status_code == 409
    message = refused.json()["error"]["message"]
    assert "no golden set registered" in message
    assert "relctl gate golden register" in message and "relctl gate run" in message
    assert required.release() == before and required.events("gate_passed") == []
    shown = ok(required.operator.get("/v1/releases/csat/2/gates"))
    assert (shown["gated"], shown["gate_policy"], shown["waiver"]) == (True, "required", None)
    text = required.cli("show", "--task", "csat", "--release", "2")
    assert text.exit_code == 0, text.output
    assert "no golden set registered" in text.stdout and "refused" in text.stdout


def audit_rows(runtime: Runtime, first: str, second: str) -> list[dict[str, Any]]:
    """The audit trail's rows of two event types, in order, once the projectors caught up."""
    settings = runtime.settings
    assert settings.database_url
    with ProjectorSet(runtime.app, settings.database_url, settings.database_schema) as views:
        views.catch_up()
    return [json.loads(r["content"]) for r in runtime.db.execute(
        "SELECT content FROM relctl_rm_audit WHERE event LIKE %s OR event LIKE %s ORDER BY seq",
        (f"%{first}", f"%{second}"))]


def test_an_operator_may_not_waive_the_gates_an_admin_may_and_it_is_recorded(
        required: Gated, runtime: Runtime):
    task_before = ok(required.operator.get("/v1/tasks/csat"))
    forbidden = required.operator.post("/v1/tasks/csat/gate-waiver",
                                       json={"reason": "no customers yet"})
    assert forbidden.status_code == 403
    assert ok(required.operator.get("/v1/tasks/csat")) == task_before
    assert required.promote(required.operator).status_code == 409

    waived = ok(required.admin.post("/v1/tasks/csat/gate-waiver",
                                    json={"reason": "internal tool, no customers"}))
    assert waived["aggregate"]["gate_policy"] == "waived"
    assert ok(required.promote(required.operator))["aggregate"]["stage"] == "Beta"
    passed = required.events("gate_passed")
    assert [(p["step"], p["basis"], p["actor"]) for p in passed] == [
        ("pass_internal_test", "waived", "olga")]
    waiver = {"actor": "ana", "role": "admin", "reason": "internal tool, no customers"}
    assert passed[0]["evidence"]["waiver"] == waiver
    shown = required.cli("show", "--task", "csat", "--release", "2")
    assert "gates waived by ana (admin): internal tool, no customers" in shown.stdout

    rows = audit_rows(runtime, "GatesWaived", "GatePassed")
    assert [(r["event"].rsplit(".", 1)[-1], r["actor"], r["reason"]) for r in rows] == [
        ("GatesWaived", "ana", "internal tool, no customers"),
        ("GatePassed", "olga", "ship to beta")]


def test_only_an_admin_withdraws_the_waiver_the_task_is_gated_again_and_it_is_audited(
        gated: Gated, server: Server, runtime: Runtime, monkeypatch: pytest.MonkeyPatch):
    path = "/v1/tasks/csat/gate-waiver/withdraw"
    task_before = ok(gated.operator.get("/v1/tasks/csat"))
    assert task_before["gate_policy"] == "waived"
    forbidden = gated.operator.post(path, json={"reason": "customers now"})
    assert forbidden.status_code == 403
    assert "admin" in forbidden.json()["error"]["message"]
    assert ok(gated.operator.get("/v1/tasks/csat")) == task_before

    withdrawn = ok(gated.admin.post(path, json={"reason": "first customers signed"}))
    assert withdrawn["changed"] is True
    assert (withdrawn["aggregate"]["gate_policy"], withdrawn["aggregate"]["gate_waiver"]) == (
        "required", None)
    refused = gated.promote(gated.operator)
    assert refused.status_code == 409
    assert "no golden set registered" in refused.json()["error"]["message"]
    assert gated.events("gate_passed") == []
    shown = ok(gated.operator.get("/v1/releases/csat/2/gates"))
    assert (shown["gated"], shown["gate_policy"], shown["waiver"]) == (True, "required", None)
    # what the waiver allowed stays: v1 went Stable under it, and its passage names it
    assert ok(gated.operator.get("/v1/releases/csat/1"))["stage"] == "Stable"
    v1 = ok(gated.operator.get("/v1/releases/csat/1/history"))["events"]
    assert [e["data"]["basis"] for e in v1
            if e["type"] == "io.relctl.release.gate_passed.v1"] == ["waived"]
    again = ok(gated.admin.post(path, json={"reason": "withdraw it twice"}))
    assert (again["changed"], again["note"]) == (
        False, "task csat's gates are not waived; nothing recorded")

    monkeypatch.setenv("RELCTL_TOKEN", server.token("ana", "admin"))
    unchanged = gated.cli("unwaive", "--task", "csat", "-r", "already gated")
    assert unchanged.exit_code == 0, unchanged.output
    assert unchanged.stdout.startswith("unchanged: task csat")
    assert gated.cli("waive", "--task", "csat", "-r", "customers left").exit_code == 0
    text = gated.cli("unwaive", "--task", "csat", "-r", "customers are back")
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("recorded: task csat is gated again")
    assert gated.cli("waive", "--task", "csat", "-r", "customers left again").exit_code == 0
    as_json = gated.cli("unwaive", "--task", "csat", "-r", "for good", "-o", "json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == {"task": "csat", "gate_policy": "required",
                                          "waiver": None, "changed": True, "note": None}
    monkeypatch.setenv("RELCTL_TOKEN", server.token("olga", "operator"))
    assert gated.cli("unwaive", "--task", "csat", "-r", "not mine").exit_code == 6
    assert gated.promote(gated.operator).status_code == 409

    rows = audit_rows(runtime, "GatesWaived", "GateWaiverWithdrawn")
    assert [(r["event"], r["actor"], r["role"], r["reason"]) for r in rows] == [
        ("Task.GatesWaived", "ana", "admin", "launched before gates existed"),
        ("Task.GateWaiverWithdrawn", "ana", "admin", "first customers signed"),
        ("Task.GatesWaived", "ana", "admin", "customers left"),
        ("Task.GateWaiverWithdrawn", "ana", "admin", "customers are back"),
        ("Task.GatesWaived", "ana", "admin", "customers left again"),
        ("Task.GateWaiverWithdrawn", "ana", "admin", "for good")]
    assert rows[1]["before"] == {"gate_policy": "waived", "gate_waiver": {
        "actor": "ana", "role": "admin", "reason": "launched before gates existed"}}
    assert rows[1]["after"] == {"gate_policy": "required", "gate_waiver": None}


def test_an_admin_breaks_glass_on_a_task_without_a_golden_set_and_it_is_audited(
        required: Gated):
    assert required.promote(required.operator, break_glass="incident 9").status_code == 403
    assert required.events("gate_passed") == []
    assert ok(required.promote(required.admin, break_glass="incident 9, CTO approved"))[
        "aggregate"]["stage"] == "Beta"
    passed = required.events("gate_passed")
    assert [(p["basis"], p["actor"], p["role"]) for p in passed] == [
        ("break_glass", "ana", "admin")]
    assert passed[0]["evidence"]["break_glass"] == {
        "actor": "ana", "role": "admin", "reason": "incident 9, CTO approved"}
    assert passed[0]["evidence"]["overridden"] == [
        "no golden set registered for task csat (no evidence)"]


def test_a_failing_block_gate_refuses_promotion_and_rollout_start_until_an_admin_breaks_glass(
        gated: Gated, model: tuple[str, ModelServerState], runtime: Runtime):
    _, state = model
    state.behaviours[CANDIDATE_MODEL] = Behaviour(miss_critical=0.5)
    try:
        registered = gated.register()
        assert registered["golden_set"]["version"] == 1
        state.received.clear()
        outcomes = gated.run_gates("gb-block")
    finally:
        state.behaviours.pop(CANDIDATE_MODEL)
    assert outcomes["critical-false-negatives"] == "Failed"
    # redaction: no planted name or e-mail address of the set reached the model server
    wire = json.dumps(list(state.received))
    assert len(state.received) == 2 * 320
    assert sorted({n for c in golden_calls() for n in planted_names(c.transcript)
                   if n in wire}) == []

    recorded = gated.events("gate_evaluated")
    assert [(e["bundle_id"], e["actor"], e["role"]) for e in recorded] == [
        ("gb-block", "olga", "operator")]
    evidence = recorded[0]["evidence"]
    assert evidence["golden_set"]["content_hash"] == registered["golden_set"]["content_hash"]
    assert evidence["runner"]["candidate"]["model"] == CANDIDATE_MODEL
    assert "api_key" not in evidence["runner"]["endpoint"]
    assert evidence["candidate_metrics"]["critical_false_negative_rate"]["value"] > 0.01
    assert recorded[0]["verdicts"]["critical-false-negatives"] == "Failed"

    before = gated.release()
    refused = gated.promote(gated.operator)
    assert refused.status_code == 409
    assert "critical-false-negatives" in refused.json()["error"]["message"]
    assert gated.release() == before

    rollout = ok(gated.operator.post("/v1/rollouts", json={
        "task": "csat", "candidate": 2, "reason": "plan is not gated"}))["aggregate"]["id"]
    start = gated.operator.post(f"/v1/rollouts/{rollout}/start", json={"reason": "go ahead"})
    assert start.status_code == 409
    assert ok(gated.operator.get(f"/v1/rollouts/{rollout}"))["state"] == "Planned"

    forbidden = gated.promote(gated.operator, break_glass="incident 4711, CEO approved")
    assert forbidden.status_code == 403
    assert gated.release() == before
    assert gated.operator.post(f"/v1/rollouts/{rollout}/start", json={
        "reason": "go ahead", "break_glass": "incident 4711"}).status_code == 403

    assert ok(gated.admin.post(f"/v1/rollouts/{rollout}/start", json={
        "reason": "go anyway", "break_glass": "incident 4711, CEO approved"}))[
        "aggregate"]["state"] == "Running"
    passed = gated.events("gate_passed")
    assert [(p["step"], p["basis"], p["actor"], p["role"]) for p in passed] == [
        ("start_rollout", "break_glass", "ana", "admin")]
    glass = passed[0]["evidence"]
    assert glass["break_glass"] == {"actor": "ana", "role": "admin",
                                    "reason": "incident 4711, CEO approved"}
    assert glass["bundle_id"] == "gb-block"
    assert any(line.startswith("critical-false-negatives") for line in glass["overridden"])

    settings = runtime.settings
    assert settings.database_url
    with ProjectorSet(runtime.app, settings.database_url, settings.database_schema) as views:
        views.catch_up()
    rows = [json.loads(r["content"]) for r in runtime.db.execute(
        "SELECT content FROM relctl_rm_audit WHERE event LIKE %s ORDER BY seq",
        ("%GatePassed",))]
    # v1 was promoted to Stable under the waiver, before csat had a golden set
    assert [(r["aggregate_id"], r["actor"], r["evidence"]["break_glass"]) for r in rows] == [
        (str(release_id("csat", 1)), "olga", None),
        (str(release_id("csat", 2)), "ana",
         {"actor": "ana", "role": "admin", "reason": "incident 4711, CEO approved"})]


def test_a_failing_conditional_gate_needs_an_acknowledgement_with_a_reason(gated: Gated):
    gates = [g.model_dump(mode="json") for g in default_thresholds()]
    for gate in gates:
        if gate["name"] == "tokens":
            assert gate["gate_class"] == GateClass.CONDITIONAL
            gate["threshold"] = 10  # every answer costs more: the Conditional gate fails
    thresholds = gated.tmp / "thresholds.json"
    thresholds.write_text(json.dumps(gates))
    # the gates are the task's policy, registered with the golden set
    gated.register(thresholds=thresholds)
    outcomes = gated.run_gates("gb-cond")
    assert outcomes["tokens"] == "Failed"
    assert {n: o for n, o in outcomes.items() if n != "tokens"} == dict.fromkeys(
        [n for n in outcomes if n != "tokens"], "Passed")

    refused = gated.promote(gated.operator)
    assert refused.status_code == 409
    assert "needs acknowledgement: tokens" in refused.json()["error"]["message"]
    wrong = gated.promote(gated.operator, acknowledgements=[{"gate": "cost", "reason": "ok"}])
    assert wrong.status_code == 422
    assert ok(gated.promote(gated.operator, acknowledgements=[
        {"gate": "tokens", "reason": "longer prompts accepted for Q1"}]))[
        "aggregate"]["stage"] == "Beta"
    passed = gated.events("gate_passed")
    assert [(p["basis"], p["evidence"]["acknowledged"]) for p in passed] == [
        ("acknowledged", [{"bundle_id": "gb-cond", "gate": "tokens", "actor": "olga",
                           "reason": "longer prompts accepted for Q1"}])]

    rollout = ok(gated.operator.post("/v1/rollouts", json={
        "task": "csat", "candidate": 2, "reason": "roll it out"}))["aggregate"]["id"]
    assert gated.operator.post(f"/v1/rollouts/{rollout}/start",
                               json={"reason": "go ahead"}).status_code == 409
    assert ok(gated.operator.post(f"/v1/rollouts/{rollout}/start", json={
        "reason": "go ahead", "acknowledgements": [{"gate": "tokens", "reason": "as for Beta"}]}))[
        "aggregate"]["state"] == "Running"


def test_a_new_golden_set_version_makes_the_old_bundle_stale(gated: Gated):
    gated.register()
    outcomes = gated.run_gates("gb-pass")
    assert set(outcomes.values()) == {"Passed"}
    changed = gated.tmp / "changed.jsonl"
    shutil.copy(GOLDEN_PATH, changed)
    rows = changed.read_text().splitlines()
    changed.write_text("\n".join(rows[:-1]) + "\n")
    assert gated.register(changed, "drop one call")["golden_set"]["version"] == 2

    stale = gated.promote(gated.operator)
    assert stale.status_code == 409
    assert "no gate bundle for golden set csat v2" in stale.json()["error"]["message"]
    shown = gated.cli("show", "--task", "csat", "--release", "2")
    assert shown.exit_code == 0, shown.output
    assert "(stale)" in shown.stdout and "refused" in shown.stdout
    # the InternalTest release cannot become everyone's default around its gates either
    assert gated.operator.post("/v1/tasks/csat/default", json={
        "release": 2, "reason": "skip the gates"}).status_code == 409

    # registering v1's content again makes v1 current once more: the bundle counts again
    assert gated.register(reason="back to the first set")["golden_set"]["version"] == 1
    assert ok(gated.promote(gated.operator))["aggregate"]["stage"] == "Beta"
    assert [p["basis"] for p in gated.events("gate_passed")] == ["gates_passed"]
    report = gated.cli("report", "--task", "csat", "--release", "2")
    assert report.exit_code == 0, report.output
    assert "gb-pass" in report.stdout


def test_the_gates_are_the_tasks_policy_and_a_new_policy_makes_old_bundles_stale(
        gated: Gated):
    gated.register()
    assert set(gated.run_gates("gb-std").values()) == {"Passed"}
    # a run cannot bring its own, looser gates
    loose = gated.tmp / "loose.json"
    loose.write_text(json.dumps([{"name": "score-delta", "metric": "abs_score_delta_human",
                                  "comparator": "<=", "threshold": 100,
                                  "gate_class": "Block"}]))
    own = gated.cli("run", "--task", "csat", "--release", "2", "--endpoint",
                    str(gated.endpoint), "--thresholds", str(loose), "--no-progress")
    assert own.exit_code == 3
    evaluation = gated.events("gate_evaluated")[0]["evidence"]
    results = [r for r in evaluation["results"] if r["gate"]["name"] != "tokens"]
    dropped = gated.operator.post("/v1/releases/csat/2/gate-evaluations", json={
        "reason": "without the tokens gate", "evaluation": {
            **evaluation, "bundle_id": "gb-fewer", "results": results}})
    assert dropped.status_code == 422
    assert "gate policy" in dropped.json()["error"]["message"]
    # the same content with other gates is a new policy: the old bundle no longer counts
    gated.register(thresholds=loose, reason="only the score gate")
    stale = gated.promote(gated.operator)
    assert stale.status_code == 409
    assert "no gate bundle" in stale.json()["error"]["message"]


def test_recording_is_for_writers_and_only_for_the_release_that_ran(gated: Gated,
                                                                     server: Server):
    auditor = server.client(server.token("aud", "auditor"))
    rows = [json.loads(line) for line in GOLDEN_PATH.read_text().splitlines()[:5]]
    body = {"name": "csat", "rows": rows, "reason": "small set"}
    assert auditor.post("/v1/tasks/csat/golden-sets", json=body).status_code == 403
    assert ok(auditor.get("/v1/tasks/csat/golden-sets/current"))["current"] is None
    first = ok(gated.operator.post("/v1/tasks/csat/golden-sets", json=body))
    assert first["changed"] is True
    again = ok(gated.operator.post("/v1/tasks/csat/golden-sets", json=body))
    assert again["changed"] is False
    bad = gated.operator.post("/v1/tasks/csat/golden-sets", json={**body, "rows": [{"x": 1}]})
    assert bad.status_code == 422
    twice = gated.operator.post("/v1/tasks/csat/golden-sets",
                                json={**body, "rows": [rows[0], rows[0]]})
    assert twice.status_code == 422
    assert "duplicate call_id" in twice.json()["error"]["message"]

    gated.register()
    gated.run_gates("gb-real")
    evaluation = gated.events("gate_evaluated")[0]["evidence"]
    for change, expected in (
        ({"bundle_id": "gb-real"}, 409),  # already recorded
        ({"bundle_id": "gb-x", "release_id": "csat@1"}, 422),  # another release's bundle
        ({"bundle_id": "gb-y", "runner": {**evaluation["runner"], "candidate": {
            **evaluation["runner"]["candidate"], "prompt_hash": "sha256:" + "0" * 64}}}, 422),
        ({"bundle_id": "gb-z", "golden_set": {**evaluation["golden_set"], "version": 9}}, 422),
    ):
        posted = gated.operator.post("/v1/releases/csat/2/gate-evaluations", json={
            "reason": "tampered", "evaluation": {**evaluation, **change}})
        assert posted.status_code == expected, (change, posted.text)
    assert auditor.post("/v1/releases/csat/2/gate-evaluations", json={
        "reason": "not mine", "evaluation": {**evaluation, "bundle_id": "gb-a"}}
    ).status_code == 403
    assert len(gated.events("gate_evaluated")) == 1


def test_a_golden_set_of_thousands_of_calls_registers_though_commands_stay_small(
        gated: Gated, server: Server):
    """A golden set is an artifact of megabytes, not a command: its route has its own limit."""
    rows = [json.loads(line) for line in GOLDEN_PATH.read_text().splitlines()]
    many = [{**row, "call_id": f"{row['call_id']}-{copy}"} for copy in range(8) for row in rows]
    body = {"name": "csat-large", "rows": many, "reason": "the full regression set"}
    size = len(json.dumps(body))
    assert size > 2 * 1024 * 1024  # well past the 512 KiB command limit
    registered = ok(gated.operator.post("/v1/tasks/csat/golden-sets", json=body))
    assert registered["changed"] is True
    current = ok(gated.operator.get("/v1/tasks/csat/golden-sets/current"))["current"]
    assert current["name"] == "csat-large"
    stored = ok(gated.operator.get("/v1/tasks/csat/golden-sets/rows"))
    assert stored["content_hash"] == current["content_hash"]
    assert len(stored["jsonl"].splitlines()) == len(many)
    # an ordinary command of that size is still refused before it is read
    refused = gated.operator.post("/v1/tasks/csat/default",
                                  json={"release": 1, "reason": "x" * size})
    assert refused.status_code == 413
