"""The decision lifecycle (domain/guard_decisions.py) driven through the stage-2 guard: a breach
decides once, re-sends until applied, an applied decision is over when the breach is, the next
rollout starts afresh, Signal rules fire and resolve with hysteresis; and a property over
random traffic.

See tests/unit/guard_support.py for the rig (real control events, real command execution).
"""

from itertools import pairwise
from uuid import UUID

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relctl.adapters.commands import parse_command
from relctl.domain.guard_eval import RuleState
from relctl.streams.attribute import arm_key
from relctl.streams.guard import (
    GUARD_ACTOR,
    RESEND_AFTER_SECONDS,
    SIGNAL_RESOLVE_SECONDS,
)

from tests.unit.guard_support import (
    B0,
    B1,
    B2,
    Buckets,
    Rig,
    decision_id,
    outcomes,
)
from tests.unit.stream_support import (
    BASE,
    CAND,
    SCOPE,
    T0,
    TASK,
    errors,
    guard_rule,
    iso,
)

# ---- a breach decides once ------------------------------------------------------------------

def test_breach_produces_exactly_one_rollback_with_evidence() -> None:
    rig = Rig([guard_rule()])
    out = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6), (BASE, B0): errors(60, 0)})
    assert [(v.rule, v.outcome, v.action) for v in out.verdicts] == [
        ("errors", "Failed", "rollback")]
    assert len(out.commands) == 1
    command = out.commands[0]
    expected_id = decision_id(rig, "errors", T0 + 1)
    assert {k: command[k] for k in ("rollout_id", "action", "decision_id", "actor")} == {
        "rollout_id": rig.rollout, "action": "rollback", "decision_id": expected_id,
        "actor": GUARD_ACTOR}
    assert command["reason"] == ("Rolled back because guard rule errors failed: llm_error_rate "
                                 "was 0.1, above the threshold 0.05, over 60 samples in the "
                                 "last 2 min")
    evidence = command["evidence"]
    assert {k: evidence[k] for k in ("rule", "metric", "value", "samples", "comparator",
                                     "threshold", "window_seconds", "outcome")} == {
        "rule": "errors", "metric": "llm_error_rate", "value": 0.1, "samples": 60,
        "comparator": ">", "threshold": 0.05, "window_seconds": 120.0, "outcome": "Failed"}
    assert {k: evidence[k] for k in ("rollout", "task", "baseline", "candidate", "step",
                                     "breach_since", "decided_at", "decision_id")} == {
        "rollout": rig.rollout, "task": TASK, "baseline": 1, "candidate": 2, "step": 50,
        "breach_since": iso(T0 + 1), "decided_at": iso(T0 + 1), "decision_id": expected_id}
    assert [r["rule"] for r in evidence["all_rules"]] == ["errors"]
    assert out.alerts == [{"kind": "decision", "scope": SCOPE, **command}]
    assert rig.rule("errors") == RuleState(
        breach_since=T0 + 1, decided=True, outcome="Failed", decision_id=expected_id,
        action="rollback", decided_at=T0 + 1, applied=False, rollout_id=rig.rollout)
    parse_command(orjson.dumps(command))  # a valid command for the control plane


def test_no_second_command_before_the_resend_interval() -> None:
    rig = Rig([guard_rule()])
    first = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)})
    assert len(first.commands) == 1
    for now in (T0 + 1.5, T0 + 1 + RESEND_AFTER_SECONDS - 0.01):
        again = rig.feed(now, {(CAND, B0): errors(60, 6)})
        assert again.commands == [] and again.alerts == []
        assert outcomes(again) == [("Failed", None)]


def test_once_rolled_back_in_the_index_nothing_more_is_sent() -> None:
    rig = Rig([guard_rule()])
    command = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)}).commands[0]
    assert rig.execute(command)
    assert rig.state() == "RolledBack"
    assert not rig.execute(command), "the control plane records a repeated rollback once"
    for now in (T0 + 5, T0 + 10, T0 + 60):
        out = rig.feed(now, {(CAND, B1): errors(100, 50)})
        assert (out.commands, out.alerts, out.verdicts) == ([], [], [])
    rollbacks = [e for e in rig.control.app.history(UUID(rig.rollout))
                 if type(e).__name__ == "RolledBack"]
    assert len(rollbacks) == 1


def test_unapplied_decision_is_resent_with_the_same_id() -> None:
    rig = Rig([guard_rule()])
    first = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)}).commands[0]
    assert rig.state() == "Running"  # the command was lost: the index never moved
    resent = rig.feed(T0 + 1 + RESEND_AFTER_SECONDS)
    assert resent.commands == [first]
    assert outcomes(resent) == [("Failed", None)]
    assert rig.feed(T0 + 1 + RESEND_AFTER_SECONDS + 1).commands == []
    assert rig.feed(T0 + 1 + 2 * RESEND_AFTER_SECONDS).commands == [first]
    assert rig.rule("errors").decision_id == first["decision_id"]
    assert rig.execute(first)
    assert rig.feed(T0 + 30).commands == []


def test_resend_after_a_restart_keeps_the_decision_id() -> None:
    rig = Rig([guard_rule()])
    first = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)}).commands[0]
    rig.restart()
    resent = rig.feed(T0 + 4).commands
    assert len(resent) == 1
    assert {k: resent[0][k] for k in ("rollout_id", "action", "decision_id", "actor")} == {
        k: first[k] for k in ("rollout_id", "action", "decision_id", "actor")}
    assert "re-sent after restart" in resent[0]["reason"]
    assert resent[0]["evidence"]["breach_since"] == iso(T0 + 1)
    parse_command(orjson.dumps(resent[0]))  # a valid command for the control plane
    assert rig.execute(resent[0])
    assert rig.feed(T0 + 10).commands == []


def test_decision_while_paused_or_frozen_still_rolls_back() -> None:
    rig = Rig([guard_rule()])
    rig.control.do("pause_rollout", rig.rollout)
    out = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)})
    assert [c["action"] for c in out.commands] == ["rollback"]
    assert rig.feed(T0 + 1 + RESEND_AFTER_SECONDS).commands == out.commands, "Paused: re-sent"
    rig.control.do("freeze_rollout", rig.rollout)
    assert rig.feed(T0 + 1 + 2 * RESEND_AFTER_SECONDS).commands == out.commands
    assert not rig.rule("errors").applied
    assert rig.execute(out.commands[0]) and rig.state() == "RolledBack"


@pytest.mark.parametrize(("gate_class", "action", "state"), [
    ("Block", "freeze", "Frozen"), ("Conditional", "pause", "Paused")])
def test_gate_class_decides_the_command_and_applied_stops_resends(
        gate_class: str, action: str, state: str) -> None:
    rig = Rig([guard_rule(gate_class=gate_class)])
    out = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)})
    assert [c["action"] for c in out.commands] == [action]
    assert rig.execute(out.commands[0]) and rig.state() == state
    for now in (T0 + 1 + RESEND_AFTER_SECONDS, T0 + 10, T0 + 20):
        again = rig.feed(now)
        assert again.commands == [], "applied: not re-sent"
        assert outcomes(again) == [("Failed", None)]
    applied = rig.rule("errors")
    assert (applied.applied, applied.decision_id, applied.action) == (
        True, out.commands[0]["decision_id"], action)
    rig.restart()
    assert rig.feed(T0 + 30).commands == [], "applied survives a restart"


def test_strongest_of_simultaneous_failures_is_the_one_command() -> None:
    rules = [guard_rule(name="pause-on-errors", gate_class="Conditional"),
             guard_rule(name="rollback-on-errors", threshold=0.08),
             guard_rule(name="freeze-on-errors", gate_class="Block", threshold=0.02)]
    rig = Rig(rules)
    out = rig.feed(T0 + 1, {(CAND, B0): errors(100, 10)})
    assert [v.action for v in out.verdicts] == ["pause", "rollback", "freeze"]
    assert [(c["action"], c["decision_id"]) for c in out.commands] == [
        ("rollback", decision_id(rig, "rollback-on-errors", T0 + 1))]
    assert sorted(r["rule"] for r in out.commands[0]["evidence"]["all_rules"]) == sorted(
        r["name"] for r in rules)
    assert rig.feed(T0 + 1.5, {(CAND, B0): errors(100, 10)}).commands == []


# ---- after a decision took effect ------------------------------------------------------------

@pytest.mark.parametrize(("gate_class", "state"), [("Conditional", "Paused"),
                                                   ("Block", "Frozen")])
def test_operator_resume_is_not_overridden_by_an_applied_decision(gate_class: str,
                                                                  state: str) -> None:
    rig = Rig([guard_rule(gate_class=gate_class)])
    command = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)}).commands[0]
    assert rig.execute(command) and rig.state() == state
    assert rig.feed(T0 + 5).commands == []  # the guard sees the decision applied
    rig.control.do("resume_rollout", rig.rollout)  # an operator looked and resumed
    assert rig.state() == "Running"
    # The breach goes on, but the operator has overridden it: nothing is sent.
    for now in (T0 + 10, T0 + 20):
        out = rig.feed(now)
        assert (outcomes(out), out.commands) == ([("Failed", None)], [])
    out = rig.feed(T0 + 30, {(CAND, B1): errors(5000, 0)})
    assert outcomes(out) == [("Passed", None)]
    assert out.commands == []
    assert rig.rule("errors") == RuleState(outcome="Passed", rollout_id=rig.rollout)
    assert rig.feed(T0 + 40).commands == []


@pytest.mark.parametrize("recovery", ["Passed", "Inconclusive"])
@pytest.mark.parametrize(("gate_class", "state"), [("Conditional", "Paused"),
                                                   ("Block", "Frozen")])
def test_a_new_breach_after_an_applied_decision_recovered_is_a_new_decision(
        gate_class: str, state: str, recovery: str) -> None:
    rig = Rig([guard_rule(gate_class=gate_class)])
    first = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)}).commands[0]
    assert rig.execute(first) and rig.state() == state
    rig.feed(T0 + 2)
    rig.control.do("resume_rollout", rig.rollout)
    if recovery == "Passed":
        recovered = rig.feed(T0 + 10, {(CAND, B1): errors(5000, 0)})
    else:  # the window drains: no evidence either way
        recovered = rig.feed(T0 + 200)
    assert outcomes(recovered) == [(recovery, None)] and recovered.commands == []
    assert rig.rule("errors") == RuleState(outcome=recovery, rollout_id=rig.rollout)
    again = T0 + 300
    out = rig.feed(again, {(CAND, int(again)): errors(100, 50)})
    assert outcomes(out) == [("Failed", first["action"])]
    [second] = out.commands
    assert second["decision_id"] == decision_id(rig, "errors", again) != first["decision_id"]
    assert second["evidence"]["breach_since"] == iso(again)
    assert rig.execute(second) and rig.state() == state


@pytest.mark.parametrize("restart", [False, True], ids=["same-worker", "restarted"])
@pytest.mark.parametrize("metric", ["recovered", "still-breaching"])
@pytest.mark.parametrize(("gate_class", "state"), [("Conditional", "Paused"),
                                                   ("Block", "Frozen")])
def test_resume_before_the_guard_saw_the_decision_applied_is_respected(
        gate_class: str, state: str, metric: str, restart: bool) -> None:
    """Regression: the operator resumed before the guard handled any partial while the rollout
    was Paused/Frozen (a quick resume, or the worker was down). The Paused/Frozen event of the
    guard's own command carries its decision id, so the guard knows the decision took effect
    and does not re-send it over the operator's resume."""
    rig = Rig([guard_rule(gate_class=gate_class)])
    command = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)}).commands[0]
    assert rig.execute(command) and rig.state() == state
    rig.control.do("resume_rollout", rig.rollout)  # no partial handled in between
    assert rig.state() == "Running"
    assert command["decision_id"] in rig.control.index.rollouts[rig.rollout].applied_decisions
    if restart:
        rig.restart()
    now = T0 + 1 + RESEND_AFTER_SECONDS
    if metric == "recovered":
        out = rig.feed(now, {(CAND, B0): errors(5000, 0)})
        assert outcomes(out) == [("Passed", None)]
        assert rig.rule("errors") == RuleState(outcome="Passed", rollout_id=rig.rollout)
    else:
        out = rig.feed(now, {(CAND, B0): errors(60, 6)})
        assert outcomes(out) == [("Failed", None)]
        applied = rig.rule("errors")
        assert (applied.applied, applied.decision_id) == (True, command["decision_id"])
    assert out.commands == []
    for later in (now + RESEND_AFTER_SECONDS, now + 10 * RESEND_AFTER_SECONDS):
        assert rig.feed(later).commands == []
    assert rig.state() == "Running"


def test_a_rule_subsumed_by_a_stronger_decision_can_decide_later() -> None:
    """Regression: rules failing together share the strongest decision (its id and action),
    so they are marked applied, and reset after recovery, together; each can decide again."""
    rig = Rig([guard_rule(name="pause", gate_class="Conditional", threshold=0.05),
               guard_rule(name="freeze", gate_class="Block", threshold=0.2)])
    out = rig.feed(T0 + 1, {(CAND, B0): errors(60, 30)})
    assert [c["action"] for c in out.commands] == ["freeze"]
    shared = decision_id(rig, "freeze", T0 + 1)
    assert out.commands[0]["decision_id"] == shared
    for name in ("pause", "freeze"):
        assert rig.rule(name) == RuleState(
            breach_since=T0 + 1, decided=True, outcome="Failed", decision_id=shared,
            action="freeze", decided_at=T0 + 1, applied=False, rollout_id=rig.rollout)
    assert rig.execute(out.commands[0]) and rig.state() == "Frozen"
    rig.feed(T0 + 2)
    assert [rig.rule(name).applied for name in ("pause", "freeze")] == [True, True]
    rig.control.do("resume_rollout", rig.rollout)
    assert outcomes(rig.feed(T0 + 10, {(CAND, B1): errors(5000, 0)})) == [
        ("Passed", None), ("Passed", None)]
    # Only the pause rule breaches now (10 % > 5 %, < 20 %).
    out = rig.feed(T0 + 300, {(CAND, B0 + 300): errors(100, 10)})
    assert [(v.rule, v.outcome) for v in out.verdicts] == [("pause", "Failed"),
                                                          ("freeze", "Passed")]
    assert [(c["action"], c["decision_id"]) for c in out.commands] == [
        ("pause", decision_id(rig, "pause", T0 + 300))]
    assert rig.execute(out.commands[0]) and rig.state() == "Paused"


def test_a_decision_shared_by_several_rules_is_resent_as_one_command() -> None:
    rules = [guard_rule(name="pause-on-errors", gate_class="Conditional"),
             guard_rule(name="rollback-on-errors", threshold=0.08),
             guard_rule(name="freeze-on-errors", gate_class="Block", threshold=0.02)]
    rig = Rig(rules)
    [first] = rig.feed(T0 + 1, {(CAND, B0): errors(100, 10)}).commands
    assert {rig.rule(r["name"]).decision_id for r in rules} == {first["decision_id"]}
    assert rig.feed(T0 + 1 + RESEND_AFTER_SECONDS).commands == [first]
    assert rig.feed(T0 + 1 + 1.5 * RESEND_AFTER_SECONDS).commands == []
    rig.restart()
    [rebuilt] = rig.feed(T0 + 1 + 2 * RESEND_AFTER_SECONDS).commands
    assert {k: rebuilt[k] for k in ("rollout_id", "action", "decision_id")} == {
        k: first[k] for k in ("rollout_id", "action", "decision_id")}
    assert rig.execute(rebuilt) and rig.state() == "RolledBack"


@pytest.mark.parametrize("restart", [False, True], ids=["same-worker", "restarted"])
def test_the_next_rollout_of_the_task_starts_with_fresh_rule_states(restart: bool) -> None:
    """Regression: a rule's state belongs to one rollout. The task's next rollout, with a
    rule of the same name, neither re-sends the previous rollout's rollback nor inherits its
    decided state: its own breach is its own decision."""
    rig = Rig([guard_rule()])
    first = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)}).commands[0]
    assert rig.execute(first) and rig.state() == "RolledBack"
    second = rig.control.running([guard_rule()], candidate=3)
    if restart:
        rig.restart()
    candidate = arm_key(3, "production")
    for now in (T0 + 10, T0 + 20):
        out = rig.feed(now, {(candidate, int(now)): errors(100, 0)})
        assert outcomes(out) == [("Passed", None)]
        assert out.commands == []
    assert rig.rule("errors") == RuleState(outcome="Passed", rollout_id=second)
    out = rig.feed(T0 + 30, {(candidate, int(T0 + 30)): errors(1000, 500)})
    assert outcomes(out) == [("Failed", "rollback")]
    assert [(c["rollout_id"], c["action"], c["decision_id"]) for c in out.commands] == [
        (second, "rollback", f"{second}:errors:{int((T0 + 30) * 1000)}")]
    assert rig.execute(out.commands[0])
    assert rig.control.index.rollouts[second].state == "RolledBack"


def test_a_pending_breach_of_the_previous_rollout_is_not_carried_over() -> None:
    rig = Rig([guard_rule(for_seconds=60)])
    out = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)})
    assert [(v.outcome, v.breach_since) for v in out.verdicts] == [("Pending", T0 + 1)]
    rig.control.do("roll_back", rig.rollout)  # an operator's rollback
    second = rig.control.running([guard_rule(for_seconds=60)], candidate=3, started_at=T0 + 30)
    candidate = arm_key(3, "production")
    out = rig.feed(T0 + 70, {(candidate, B0 + 70): errors(60, 6)})
    assert [(v.outcome, v.breach_since) for v in out.verdicts] == [("Pending", T0 + 70)]
    assert out.commands == [] and rig.rule("errors").rollout_id == second


def test_a_restarted_worker_does_not_roll_back_the_next_rollout_with_an_old_decision() -> None:
    """Regression: after a restart, only decisions of the current rollout are rebuilt and
    re-sent; the previous rollout's (never marked applied) rollback is not."""
    rig = Rig([guard_rule()])
    first = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)}).commands[0]
    assert rig.execute(first) and rig.state() == "RolledBack"
    second = rig.control.running([guard_rule(name="other")], candidate=3)
    rig.restart()
    out = rig.feed(T0 + 10, {(arm_key(3, "production"), B0 + 10): errors(100, 0)})
    assert outcomes(out) == [("Passed", None)]
    for command in out.commands:
        rig.execute(command)
    assert out.commands == []
    assert rig.feed(T0 + 10 + 5 * RESEND_AFTER_SECONDS).commands == []
    assert rig.control.index.rollouts[second].state == "Running"


@pytest.mark.parametrize("gate_class", ["Conditional", "Block"])
def test_a_state_stored_before_the_upgrade_keeps_the_operators_resume(gate_class: str) -> None:
    """A rule state without rollout_id is adopted from its decision id
    ('<rollout id>:<rule>:<ms>'), so an operator's resume survives the upgrade."""
    rig = Rig([guard_rule(gate_class=gate_class)])
    command = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)}).commands[0]
    assert rig.execute(command)
    rig.feed(T0 + 2)
    rig.control.do("resume_rollout", rig.rollout)
    assert rig.feed(T0 + 5).commands == []  # the breach goes on; the operator overrode it
    meta = rig.meta()  # as the previous version stored it: no rollout_id
    meta["rules"] = {name: {k: v for k, v in rule.items() if k != "rollout_id"}
                     for name, rule in meta["rules"].items()}
    rig.store.set(f"{SCOPE}|meta", orjson.dumps(meta))
    rig.restart()  # the upgraded worker
    out = rig.feed(T0 + 10)
    assert outcomes(out) == [("Failed", None)]
    assert out.commands == []  # actual: a new pause/freeze
    assert rig.state() == "Running"


# ---- Signal rules ---------------------------------------------------------------------------

def test_signal_rule_fires_then_resolves_with_fired_at_and_can_fire_again() -> None:
    rig = Rig([guard_rule(name="drift", gate_class="Signal")])
    out = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)})
    assert out.commands == []
    assert [(a["kind"], a["rule"], a["scope"]) for a in out.alerts] == [
        ("fired", "guard:drift", f"rollout|{rig.rollout}")]
    fired = out.alerts[0]
    assert (fired["task"], fired["release"], fired["baseline"], fired["at"],
            fired["fired_at"]) == (TASK, 2, 1, iso(T0 + 1), iso(T0 + 1))
    assert (fired["evidence"]["outcome"], fired["evidence"]["value"]) == ("Failed", 0.1)
    assert rig.rule("drift").decided_at == T0 + 1
    again = rig.feed(T0 + 2, {(CAND, B0): errors(10, 1)})
    assert (again.alerts, again.commands) == ([], [])
    assert rig.feed(T0 + 1 + RESEND_AFTER_SECONDS + 5).commands == [], "alerts are not re-sent"
    assert rig.feed(T0 + 12, {(CAND, B2): errors(1000, 0)}).alerts == [], "hysteresis"
    resolved_at = T0 + 12 + SIGNAL_RESOLVE_SECONDS
    assert rig.feed(resolved_at - 1).alerts == []
    passed = rig.feed(resolved_at)
    assert [(a["kind"], a["rule"], a["at"], a["fired_at"]) for a in passed.alerts] == [
        ("resolved", "guard:drift", iso(resolved_at), iso(T0 + 1))]
    assert passed.alerts[0]["evidence"]["outcome"] == "Passed"
    assert rig.rule("drift") == RuleState(outcome="Passed", rollout_id=rig.rollout)
    assert rig.feed(resolved_at + 1).alerts == []
    refire = resolved_at + 8
    refired = rig.feed(refire, {(CAND, int(refire) // 5 * 5): errors(5000, 4500)})
    assert [(a["kind"], a["fired_at"]) for a in refired.alerts] == [("fired", iso(refire))]
    assert refired.commands == []


def test_a_flapping_signal_metric_fires_once_and_resolves_once() -> None:
    rig = Rig([guard_rule(name="drift", gate_class="Signal", window_seconds=5)])
    kinds: list[str] = []
    for second in range(1, 40):
        bad = second % 2 == 1
        bucket = int(T0 + second) // 5 * 5
        out = rig.feed(T0 + second, {(CAND, bucket): errors(100, 90 if bad else 0)})
        kinds += [a["kind"] for a in out.alerts]
    assert kinds == ["fired"], "flapping around the threshold must not storm"
    quiet = T0 + 40 + SIGNAL_RESOLVE_SECONDS + 10
    for second in range(int(T0 + 40), int(quiet)):
        kinds += [a["kind"] for a in rig.feed(second, {(CAND, second // 5 * 5): errors(100, 0)})
                  .alerts]
    assert kinds == ["fired", "resolved"]


def test_signal_rule_resolves_when_the_evidence_runs_out() -> None:
    rig = Rig([guard_rule(name="drift", gate_class="Signal")])
    assert [a["kind"] for a in rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)}).alerts] == [
        "fired"]
    rig.restart()
    assert rig.feed(T0 + 200).alerts == [], "clear, but not yet for SIGNAL_RESOLVE_SECONDS"
    rig.restart()
    out = rig.feed(T0 + 200 + SIGNAL_RESOLVE_SECONDS)
    assert [(a["kind"], a["fired_at"], a["evidence"]["outcome"]) for a in out.alerts] == [
        ("resolved", iso(T0 + 1), "Inconclusive")]
    assert rig.rule("drift") == RuleState(outcome="Inconclusive", rollout_id=rig.rollout)


def test_signal_rule_next_to_a_rollback_rule() -> None:
    rig = Rig([guard_rule(name="drift", gate_class="Signal", threshold=0.02),
               guard_rule(name="errors", threshold=0.08)])
    out = rig.feed(T0 + 1, {(CAND, B0): errors(100, 10)})
    assert [a["kind"] for a in out.alerts] == ["fired", "decision"]
    assert [c["action"] for c in out.commands] == ["rollback"]
    # The alert is not part of the decision: the Signal rule keeps its own state.
    assert rig.rule("drift") == RuleState(breach_since=T0 + 1, decided=True, outcome="Failed",
                                          decided_at=T0 + 1, rollout_id=rig.rollout)
    assert rig.rule("errors").decision_id == out.commands[0]["decision_id"]


# ---- property ---------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(1, 8).map(lambda half: half / 2),
                                st.sampled_from(["breach", "pass", "none"])), max_size=40),
       applied=st.booleans())
def test_one_decision_per_breach_whatever_the_traffic(
        steps: list[tuple[float, str]], applied: bool) -> None:
    """However partials arrive, a rollback rule decides once: every command carries the same
    decision id, re-sends are at least RESEND_AFTER_SECONDS apart, and once the decision shows
    in the index nothing more is sent."""
    rig = Rig([guard_rule(min_samples=50)])
    now, sent = T0, []
    for dt, kind in steps:
        now += dt
        buckets: Buckets = {(CAND, int(now // 5 * 5)): errors(20, 4 if kind == "breach" else 0),
                   (BASE, int(now // 5 * 5)): errors(20, 4)}
        out = rig.feed(now, buckets if kind != "none" else None)
        assert len(out.commands) <= 1
        for command in out.commands:
            assert rig.state() == "Running", "nothing is sent once the rollback shows"
            sent.append((now, command))
            if applied:
                rig.execute(command)
    assert len({c["decision_id"] for _, c in sent}) <= 1
    assert all(c["action"] == "rollback" for _, c in sent)
    times = [t for t, _ in sent]
    assert all(b - a >= RESEND_AFTER_SECONDS for a, b in pairwise(times))
    if applied:
        assert len(sent) <= 1
