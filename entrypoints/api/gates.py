"""Release gates over HTTP: golden sets registered per task, gate bundles recorded per release.

Registering a golden set stores its rows content-addressed under the API's data directory and
records ``Task.GoldenSetRegistered``: promotion past InternalTest and rollout start then consult
its bundles (before that they are refused, unless an admin waived the task's gates: POST
``/v1/tasks/{task}/gate-waiver``, withdrawn with POST ``/v1/tasks/{task}/gate-waiver/withdraw``).
``relctl gate run`` computes a bundle on the operator's machine and records it here as
``Release.GateEvaluated``; both need an operator or admin token, and the event records the
token's actor and role.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from relctl.adapters.golden_store import GoldenStore
from relctl.adapters.postgres import Principal
from relctl.domain import errors
from relctl.domain.commands import (
    RecordGateEvaluation,
    RegisterGoldenSet,
    WaiveGates,
    WithdrawGateWaiver,
)
from relctl.domain.gate_policy import GatePolicy
from relctl.domain.gates import GateEvaluated, PromotionStep, decide_gate_passage, uses_policy
from relctl.domain.ids import release_id
from relctl.entrypoints.api.auth import READERS, WRITERS, Authenticator
from relctl.entrypoints.api.common import COMMAND_ERRORS, READ_ERRORS, Outcome, run
from relctl.infra.bootstrap import Runtime

TaskKey = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", max_length=63)]
Number = Annotated[int, Path(ge=1, le=2**31)]
GATE_EVALUATED = "GateEvaluated"


def gates_router(runtime: Runtime, auth: Authenticator,
                 on_change: Callable[[], None]) -> APIRouter:
    router = APIRouter(tags=["gates"])
    app = runtime.app
    store = GoldenStore(runtime.settings.data_dir)
    writer, reader = auth.role(*WRITERS), auth.role(*READERS)

    @router.post("/v1/tasks/{task}/golden-sets", response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def register_golden_set(task: TaskKey, body: RegisterGoldenSet,
                            who: Principal = writer) -> Any:
        """Register a golden set content as the task's current version (gates bind the task
        from now on); the same content again records nothing."""
        app.task(task)
        seen: set[str] = set()
        for number, row in enumerate(body.rows):
            if row.call_id in seen:
                raise errors.ValidationError(f"rows[{number}]: duplicate call_id {row.call_id!r}")
            seen.add(row.call_id)
        digest = store.put(list(body.rows))
        return run("register_golden_set", lambda: app.register_golden_set(
            task, body.name, digest, len(body.rows), who.actor, body.reason, who.role,
            body.thresholds), on_change)

    @router.post("/v1/tasks/{task}/gate-waiver", response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def waive_gates(task: TaskKey, body: WaiveGates, who: Principal = writer) -> Any:
        """Declare the task ungated (admins only; an operator gets 403): records
        ``Task.GatesWaived`` with the reason, which every passage it allows then names."""
        return run("waive_gates", lambda: app.waive_gates(task, who.actor, body.reason,
                                                          who.role), on_change)

    @router.post("/v1/tasks/{task}/gate-waiver/withdraw", response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def withdraw_gate_waiver(task: TaskKey, body: WithdrawGateWaiver,
                             who: Principal = writer) -> Any:
        """Withdraw the task's gate waiver (admins only; an operator gets 403): records
        ``Task.GateWaiverWithdrawn`` with the reason, and gated steps are refused again until
        a golden set is registered. With no waiver in force nothing is recorded."""
        return run("withdraw_gate_waiver", lambda: app.withdraw_gate_waiver(
            task, who.actor, body.reason, who.role), on_change)

    @router.get("/v1/tasks/{task}/golden-sets/current", responses=READ_ERRORS)
    def golden_sets(task: TaskKey, _: Principal = reader) -> dict[str, Any]:
        """The task's current golden set (None: none registered), its gates (the policy
        bundles must use), every registered version, and its gate policy and waiver."""
        index = app.task(task)
        waiver = index.gate_waiver
        return {"task": task, "current": index.summary()["golden_set"],
                "gate_policy": index.gate_policy.value,
                "waiver": waiver.model_dump(mode="json") if waiver else None,
                "thresholds": index.gate_thresholds,
                "versions": getattr(index, "golden_versions", {})}

    @router.get("/v1/tasks/{task}/golden-sets/rows", responses=READ_ERRORS)
    def golden_rows(task: TaskKey, content_hash: Annotated[str | None, Query(
            pattern=r"^sha256:[0-9a-f]{64}$")] = None, _: Principal = reader) -> dict[str, str]:
        """Canonical JSON Lines of a registered content (default: the current one), as
        ``{"content_hash", "jsonl"}``; the hash is over those lines, so a reader can check."""
        index = app.task(task)
        current = index.current_golden
        known = {h for hashes in getattr(index, "golden_versions", {}).values() for h in hashes}
        digest = content_hash or (current.content_hash if current else None)
        if digest is None or digest not in known:
            raise errors.NotFoundError(f"task {task} has no such golden set registered")
        return {"content_hash": digest, "jsonl": store.read_text(digest)}

    @router.post("/v1/releases/{task}/{number}/gate-evaluations", response_model=Outcome,
                 responses=COMMAND_ERRORS)
    def record_gate_evaluation(task: TaskKey, number: Number, body: RecordGateEvaluation,
                               who: Principal = writer) -> Any:
        """Record a gate bundle (``GateEvaluated``) on the release it evaluated."""
        return run("record_gate_evaluation", lambda: app.record_gate_evaluation(
            task, number, body.evaluation, who.actor, body.reason, who.role), on_change)

    @router.get("/v1/releases/{task}/{number}/gates", responses=READ_ERRORS)
    def gates(task: TaskKey, number: Number, _: Principal = reader) -> dict[str, Any]:
        """Every recorded bundle (full payload, oldest first), the task's current golden set,
        and what promotion past InternalTest would decide now without acknowledgements."""
        release = app.release(task, number)
        index = app.task(task)
        current = index.current_golden
        waiver = index.gate_waiver
        bundles = [dict(event.evidence) for event in app.history(release_id(task, number))
                   if type(event).__name__ == GATE_EVALUATED]
        decision = None
        if current is not None:
            policy = app.task(task).gate_thresholds
            decision = decide_gate_passage(
                release_id=release.display_id, step=PromotionStep.PASS_INTERNAL_TEST,
                bundles=[e for e in (GateEvaluated.model_validate(b) for b in bundles)
                         if uses_policy(e, policy)],
                current_golden=current).model_dump(mode="json")
        return {"release": release.display_id, "stage": release.stage,
                "golden_set": current.model_dump(mode="json") if current else None,
                "gated": index.gate_policy is not GatePolicy.WAIVED,
                "gate_policy": index.gate_policy.value,
                "waiver": waiver.model_dump(mode="json") if waiver else None,
                "bundles": bundles, "decision": decision}

    return router
