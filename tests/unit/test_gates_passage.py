"""Gated steps: what passing InternalTest and starting a rollout record, decided on the task's
golden set and the release's recorded bundles (pure domain, and the application in memory)."""

from typing import Any
from uuid import UUID

import pytest
from relctl.domain.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from relctl.domain.gate_policy import GatePolicy, GateWaiver
from relctl.domain.gates import (
    GateEvaluated,
    PassageBasis,
    PromotionStep,
    StepAcknowledgement,
    default_thresholds,
    gate_passage,
    passes_internal_test,
    policy_gates,
)
from relctl.domain.release import STAGES
from relctl.domain.task import Task

from tests.unit.support import ACTOR, REASON, new_app, notification_count, spec, waive_gates
from tests.unit.test_gates import INC, B, C, F, P, S, evaluated, ref

HASH_2 = "sha256:" + "2" * 64


@pytest.mark.parametrize(("current", "target", "gated"), [
    ("Draft", "InternalTest", False), ("Draft", "Beta", True), ("Draft", "Stable", True),
    ("InternalTest", "Beta", True), ("InternalTest", "Stable", True), ("Beta", "Stable", True),
    ("InternalTest", "Deprecated", False), ("Stable", "Deprecated", False),
    ("Draft", "Nonsense", False),
])
def test_which_promotions_are_gated(current: str, target: str, gated: bool) -> None:
    assert passes_internal_test(current, target, STAGES) is gated


def passage(bundles: list[GateEvaluated], role: str = "operator", **kwargs: Any) -> dict:
    return gate_passage(release_id="rel-1", step=PromotionStep.PASS_INTERNAL_TEST,
                        golden=ref(), bundles=[b.model_dump(mode="json") for b in bundles],
                        actor="olga", role=role, **kwargs)


def test_passing_gates_record_the_bundle_and_golden_set() -> None:
    recorded = passage([evaluated({"acc": (B, P), "lat": (S, F)})])
    assert recorded["basis"] == PassageBasis.GATES_PASSED
    assert recorded["bundle_id"] == "b1"
    assert recorded["golden_set"] == ref().model_dump(mode="json")
    assert len(recorded["signals"]) == 1 and recorded["break_glass"] is None


@pytest.mark.parametrize("outcome", [F, INC])
def test_a_failing_or_inconclusive_block_gate_refuses(outcome: Any) -> None:
    with pytest.raises(ConflictError, match="blocked by acc"):
        passage([evaluated({"acc": (B, outcome)})])


def test_no_bundle_refuses_and_a_stale_one_does_not_count() -> None:
    with pytest.raises(ConflictError, match="no gate bundle"):
        passage([])
    stale = evaluated({"acc": (B, P)}, golden=ref().model_copy(update={"content_hash": HASH_2}))
    with pytest.raises(ConflictError, match="no gate bundle"):
        passage([stale])


def test_a_conditional_failure_needs_an_acknowledgement_naming_the_gate() -> None:
    bundle = evaluated({"acc": (B, P), "cost": (C, F)})
    with pytest.raises(ConflictError, match="needs acknowledgement: cost"):
        passage([bundle])
    with pytest.raises(ValidationError, match="not a failing Conditional gate"):
        passage([bundle], acknowledgements=[StepAcknowledgement(gate="acc", reason="fine")])
    recorded = passage([bundle], acknowledgements=[
        StepAcknowledgement(gate="cost", reason="budget approved")])
    assert recorded["basis"] == PassageBasis.ACKNOWLEDGED
    assert recorded["acknowledged"] == [{"bundle_id": "b1", "gate": "cost", "actor": "olga",
                                         "reason": "budget approved"}]


def test_break_glass_is_for_admins_and_lists_what_it_overrode() -> None:
    bundle = evaluated({"acc": (B, F), "cost": (C, F)})
    with pytest.raises(ForbiddenError):
        passage([bundle], break_glass="incident 12")
    recorded = passage([bundle], role="admin", break_glass="incident 12")
    assert recorded["basis"] == PassageBasis.BREAK_GLASS
    assert recorded["break_glass"] == {"actor": "olga", "role": "admin",
                                       "reason": "incident 12"}
    assert [line.split(":")[0] for line in recorded["overridden"]] == ["acc", "cost"]
    # gates that pass need no glass: the passage says they passed
    assert passage([evaluated({"acc": (B, P)})], role="admin",
                   break_glass="just in case")["basis"] == PassageBasis.GATES_PASSED


def test_a_task_without_a_golden_set_is_refused_unless_waived_or_broken_glass() -> None:
    args: dict[str, Any] = {"release_id": "csat@2", "step": PromotionStep.START_ROLLOUT,
                            "golden": None, "bundles": [], "actor": "olga"}
    with pytest.raises(ConflictError, match=r"no golden set registered.*relctl gate golden "
                                            r"register.*relctl gate run --task csat --release 2"):
        gate_passage(**args, role="operator")
    with pytest.raises(ForbiddenError):
        gate_passage(**args, role="operator", break_glass="why not")
    with pytest.raises(ValidationError, match="no gate to acknowledge"):
        gate_passage(**args, role="operator",
                     acknowledgements=[StepAcknowledgement(gate="cost", reason="fine")])
    glass = gate_passage(**{**args, "actor": "ana"}, role="admin", break_glass="incident 9")
    assert glass["basis"] == PassageBasis.BREAK_GLASS
    assert glass["break_glass"] == {"actor": "ana", "role": "admin", "reason": "incident 9"}
    assert glass["overridden"] == ["no golden set registered for task csat (no evidence)"]


def test_a_waived_task_passes_and_the_passage_names_the_waiver() -> None:
    waiver = GateWaiver(actor="ana", role="admin", reason="internal tool, no customers")
    args: dict[str, Any] = {"release_id": "csat@2", "step": PromotionStep.PASS_INTERNAL_TEST,
                            "golden": None, "bundles": [], "actor": "olga", "waiver": waiver}
    recorded = gate_passage(**args, role="operator")
    assert recorded["basis"] == PassageBasis.WAIVED
    assert recorded["waiver"] == waiver.model_dump(mode="json")
    with pytest.raises(ValidationError, match="waived"):
        gate_passage(**args, role="admin", break_glass="no need")


def test_only_an_admin_waives_a_task_and_a_golden_set_ends_the_waiver() -> None:
    task = Task.open("csat", ACTOR, REASON)
    assert task.gate_policy is GatePolicy.REQUIRED and task.gate_waiver is None
    with pytest.raises(ForbiddenError, match="admin"):
        task.waive_gates("olga", "no customers yet", "operator")
    assert task.waive_gates("ana", "no customers yet", "admin") is True
    assert task.gate_policy is GatePolicy.WAIVED
    assert task.waive_gates("ana", "again", "admin") is False
    task.register_golden_set("csat", HASH_2, 9, ACTOR, REASON, "operator",
                             policy_gates(default_thresholds()))
    assert task.gate_policy is GatePolicy.GOLDEN_SET and task.gate_waiver is None
    with pytest.raises(ConflictError, match="cannot be waived"):
        task.waive_gates("ana", "changed my mind", "admin")
    names = [type(e).__name__ for e in task.collect_events()]
    assert names == ["Opened", "GatesWaived", "GoldenSetRegistered"]


def test_only_an_admin_withdraws_a_waiver_the_task_is_gated_again_and_may_be_waived_again(
) -> None:
    task = Task.open("csat", ACTOR, REASON)
    assert task.withdraw_gate_waiver("ana", "nothing to withdraw", "admin") is False
    assert task.waive_gates("ana", "no customers yet", "admin") is True
    with pytest.raises(ForbiddenError, match="admin"):
        task.withdraw_gate_waiver("olga", "customers now", "operator")
    assert task.gate_policy is GatePolicy.WAIVED
    assert task.withdraw_gate_waiver("ana", "first customers signed", "admin") is True
    assert task.gate_policy is GatePolicy.REQUIRED and task.gate_waiver is None
    assert task.summary()["gate_policy"] == "required" and task.summary()["gate_waiver"] is None
    assert task.withdraw_gate_waiver("ana", "twice", "admin") is False
    assert task.waive_gates("bea", "customers left again", "admin") is True
    assert task.gate_waiver == GateWaiver(actor="bea", role="admin",
                                          reason="customers left again")
    events = task.collect_events()
    assert [type(e).__name__ for e in events] == [
        "Opened", "GatesWaived", "GateWaiverWithdrawn", "GatesWaived"]
    withdrawn = events[2]
    assert (withdrawn.actor, withdrawn.role, withdrawn.reason) == (
        "ana", "admin", "first customers signed")


def test_a_golden_set_leaves_no_waiver_to_withdraw() -> None:
    task = Task.open("csat", ACTOR, REASON)
    task.waive_gates("ana", "no customers yet", "admin")
    task.register_golden_set("csat", HASH_2, 9, ACTOR, REASON, "operator",
                             policy_gates(default_thresholds()))
    assert task.withdraw_gate_waiver("ana", "not needed", "admin") is False
    assert task.gate_policy is GatePolicy.GOLDEN_SET
    assert [type(e).__name__ for e in task.collect_events()] == [
        "Opened", "GatesWaived", "GoldenSetRegistered"]


def test_golden_set_versions_on_the_task() -> None:
    task = Task.open("csat", ACTOR, REASON)
    assert task.current_golden is None
    gates = policy_gates(default_thresholds())
    first = task.register_golden_set("csat", "sha256:" + "1" * 64, 10, ACTOR, REASON, "operator",
                                     gates)
    assert first is not None and first.version == 1
    assert task.register_golden_set("csat", "sha256:" + "1" * 64, 10, ACTOR, REASON,
                                    "operator", gates) is None
    second = task.register_golden_set("csat", HASH_2, 9, ACTOR, REASON, "admin", gates)
    assert second is not None and second.version == 2 and task.current_golden == second
    again = task.register_golden_set("csat", "sha256:" + "1" * 64, 10, ACTOR, REASON, "admin",
                                     gates)
    assert again is not None and again.version == 1
    # the same content with other gates is a new policy, recorded again (same version)
    fewer = task.register_golden_set("csat", "sha256:" + "1" * 64, 10, ACTOR, REASON, "admin",
                                     gates[:3])
    assert fewer is not None and fewer.version == 1 and task.gate_thresholds == gates[:3]
    events = task.collect_events()
    assert [type(e).__name__ for e in events] == ["Opened", *["GoldenSetRegistered"] * 4]
    assert events[-1].role == "admin"


# ---- the application, in memory ----------------------------------------------------------

def gated_app(outcomes: dict | None = None) -> Any:
    """csat v1 Stable (default), v2 InternalTest; a golden set and (optionally) a bundle."""
    app = new_app()
    app.create_release("csat", spec(), ACTOR, REASON)
    waive_gates(app, "csat")  # v1 went Stable before csat had evidence; the golden set ends it
    app.promote_release("csat", 1, "Stable", ACTOR, REASON)
    app.set_default_release("csat", 1, ACTOR, REASON)
    app.create_release("csat", spec(prompt_template="v2"), ACTOR, REASON)
    app.promote_release("csat", 2, "InternalTest", ACTOR, REASON)
    golden = ref()
    policy = [r.gate for r in evaluated(outcomes or {"acc": (B, P)}).results]
    app.register_golden_set("csat", golden.name, golden.content_hash, 30, ACTOR, REASON,
                            "operator", policy)
    if outcomes is not None:
        release = app.release("csat", 2)
        bundle = evaluated(outcomes).model_copy(update={
            "release_id": "csat@2", "task_id": "csat",
            "runner": {"candidate": {"prompt_hash": release.prompt_hash,
                                     "model": release.content["model_version"]}}})
        app.record_gate_evaluation("csat", 2, bundle, ACTOR, REASON, "operator")
    return app


def test_promotion_of_a_gated_task_records_the_passage_with_the_stage_change() -> None:
    app = gated_app({"acc": (B, P)})
    before = notification_count(app)
    app.promote_release("csat", 2, "Beta", ACTOR, REASON)
    events = app.history(app.release("csat", 2).id)[-2:]
    assert [type(e).__name__ for e in events] == ["StageChanged", "GatePassed"]
    assert events[1].basis == "gates_passed" and events[1].evidence["bundle_id"] == "b1"
    assert notification_count(app) == before + 2


def test_a_refused_promotion_or_start_records_nothing() -> None:
    app = gated_app({"acc": (B, F)})
    before = notification_count(app)
    with pytest.raises(ConflictError, match="may not pass_internal_test"):
        app.promote_release("csat", 2, "Stable", ACTOR, REASON)
    rollout = UUID(app.plan_rollout("csat", 2, ACTOR, REASON)["aggregate"]["id"])
    planned = notification_count(app)
    assert planned == before + 2
    with pytest.raises(ConflictError, match="may not start_rollout"):
        app.start_rollout(rollout, ACTOR, REASON)
    assert notification_count(app) == planned
    assert app.rollout(rollout).state == "Planned"
    with pytest.raises(ForbiddenError):
        app.start_rollout(rollout, ACTOR, REASON, break_glass="incident 1")
    app.start_rollout(rollout, "root", REASON, role="admin", break_glass="incident 1")
    last = app.history(app.release("csat", 2).id)[-1]
    assert (type(last).__name__, last.basis, last.role) == ("GatePassed", "break_glass", "admin")


def test_an_internal_test_release_of_a_gated_task_cannot_become_the_default() -> None:
    app = gated_app()
    with pytest.raises(ConflictError, match="is gated"):
        app.set_default_release("csat", 2, ACTOR, REASON)


def test_a_pin_or_an_override_cannot_put_a_tenant_on_an_ungated_internal_test_release() -> None:
    app = gated_app()
    app.register_tenant("acme", "Acme", "general", ACTOR, REASON)
    before = notification_count(app)
    with pytest.raises(ConflictError, match="is gated"):
        app.pin("acme", "csat", 2, ACTOR, REASON)
    with pytest.raises(ConflictError, match="is gated"):
        app.set_override("acme", "csat", "temperature", "0.2", ACTOR, REASON, base_release=2)
    assert notification_count(app) == before
    app.pin("acme", "csat", 1, ACTOR, REASON)  # the Stable release still can be pinned


def test_gate_fields_on_an_ungated_step_are_refused() -> None:
    app = gated_app()
    with pytest.raises(ValidationError, match="not a gated step"):
        app.promote_release("csat", 2, "Deprecated", ACTOR, REASON, break_glass="why")


def test_a_bundle_must_be_of_the_release_as_stored_and_a_registered_golden_set() -> None:
    app = gated_app()
    release = app.release("csat", 2)
    good = evaluated({"acc": (B, P)}).model_copy(update={
        "release_id": "csat@2", "task_id": "csat",
        "runner": {"candidate": {"prompt_hash": release.prompt_hash,
                                 "model": release.content["model_version"]}}})
    for bad in (good.model_copy(update={"runner": {}}),
                good.model_copy(update={"task_id": "other"}),
                good.model_copy(update={"golden_set": ref().model_copy(update={"version": 2})})):
        with pytest.raises(ValidationError):
            app.record_gate_evaluation("csat", 2, bad, ACTOR, REASON, "operator")
    app.record_gate_evaluation("csat", 2, good, ACTOR, REASON, "operator")
    with pytest.raises(ConflictError, match="already recorded"):
        app.record_gate_evaluation("csat", 2, good, ACTOR, REASON, "operator")


def test_a_bundle_decided_with_other_gates_than_the_policy_does_not_count() -> None:
    bundle = evaluated({"acc": (B, P)})
    policy = policy_gates([r.gate for r in bundle.results])
    assert passage([bundle], policy=policy)["basis"] == PassageBasis.GATES_PASSED
    other = policy_gates([r.gate for r in evaluated({"acc": (B, P), "cost": (C, P)}).results])
    with pytest.raises(ConflictError, match="no gate bundle"):
        passage([bundle], policy=other)


def test_the_application_refuses_an_ungated_step_records_nothing_and_waives_for_admins() -> None:
    app = new_app()
    app.create_release("csat", spec(), ACTOR, REASON)
    app.promote_release("csat", 1, "InternalTest", ACTOR, REASON)  # not a gated step
    before = notification_count(app)
    with pytest.raises(ConflictError, match="no golden set registered"):
        app.promote_release("csat", 1, "Stable", ACTOR, REASON)
    with pytest.raises(ConflictError, match="is gated"):
        app.set_default_release("csat", 1, ACTOR, REASON)
    with pytest.raises(ForbiddenError, match="admin"):
        app.waive_gates("csat", "olga", "no customers yet", role="operator")
    assert notification_count(app) == before
    assert app.task("csat").gate_policy is GatePolicy.REQUIRED

    assert app.waive_gates("csat", "ana", "no customers yet", role="admin")["changed"] is True
    assert app.waive_gates("csat", "ana", "twice", role="admin")["changed"] is False
    app.promote_release("csat", 1, "Stable", ACTOR, REASON)
    passed = app.history(app.release("csat", 1).id)[-1]
    assert (type(passed).__name__, passed.basis) == ("GatePassed", "waived")
    assert passed.evidence["waiver"] == {"actor": "ana", "role": "admin",
                                         "reason": "no customers yet"}
    waived = app.history(app.task("csat").id)[-1]
    assert (type(waived).__name__, waived.actor, waived.role) == ("GatesWaived", "ana", "admin")


def test_the_application_withdraws_a_waiver_for_admins_and_gated_steps_are_refused_again(
) -> None:
    app = new_app()
    app.create_release("csat", spec(), ACTOR, REASON)
    app.create_release("csat", spec(prompt_template="v2"), ACTOR, REASON)
    with pytest.raises(NotFoundError):
        app.withdraw_gate_waiver("nosuch", "ana", "no such task", role="admin")
    before = notification_count(app)
    unchanged = app.withdraw_gate_waiver("csat", "ana", "nothing waived yet", role="admin")
    assert (unchanged["changed"], unchanged["note"]) == (
        False, "task csat's gates are not waived; nothing recorded")
    assert notification_count(app) == before

    app.waive_gates("csat", "ana", "no customers yet", role="admin")
    app.promote_release("csat", 1, "Beta", ACTOR, REASON)  # allowed by the waiver
    before = notification_count(app)
    with pytest.raises(ForbiddenError, match="admin"):
        app.withdraw_gate_waiver("csat", "olga", "customers now", role="operator")
    with pytest.raises(ForbiddenError, match="admin"):
        app.withdraw_gate_waiver("csat", "olga", "customers now")  # the default role
    assert notification_count(app) == before
    assert app.task("csat").gate_policy is GatePolicy.WAIVED

    withdrawn = app.withdraw_gate_waiver("csat", "ana", "first customers signed", role="admin")
    assert withdrawn["changed"] is True
    assert (withdrawn["aggregate"]["gate_policy"], withdrawn["aggregate"]["gate_waiver"]) == (
        "required", None)
    event = app.history(app.task("csat").id)[-1]
    assert (type(event).__name__, event.actor, event.role, event.reason) == (
        "GateWaiverWithdrawn", "ana", "admin", "first customers signed")
    with pytest.raises(ConflictError, match="no golden set registered"):
        app.promote_release("csat", 2, "Beta", ACTOR, REASON)
    # what the waiver allowed stays as it was recorded
    assert app.release("csat", 1).stage == "Beta"
    passed = app.history(app.release("csat", 1).id)[-1]
    assert (type(passed).__name__, passed.basis) == ("GatePassed", "waived")

    assert app.waive_gates("csat", "ana", "customers left", role="admin")["changed"] is True
    app.promote_release("csat", 2, "Beta", ACTOR, REASON)
    assert app.release("csat", 2).stage == "Beta"


def test_an_admin_breaks_glass_on_a_task_without_a_golden_set_and_it_is_recorded() -> None:
    app = new_app()
    app.create_release("csat", spec(), ACTOR, REASON)
    before = notification_count(app)
    with pytest.raises(ForbiddenError):
        app.promote_release("csat", 1, "Beta", ACTOR, REASON, break_glass="incident 7")
    assert notification_count(app) == before
    app.promote_release("csat", 1, "Beta", "ana", REASON, role="admin", break_glass="incident 7")
    passed = app.history(app.release("csat", 1).id)[-1]
    assert (passed.basis, passed.role) == ("break_glass", "admin")
    assert passed.evidence["break_glass"] == {"actor": "ana", "role": "admin",
                                              "reason": "incident 7"}
    assert passed.evidence["overridden"] == [
        "no golden set registered for task csat (no evidence)"]
