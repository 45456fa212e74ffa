"""Stage 2 over an in-memory StateStore: decisions, re-sends, recovery, retention, alerts.

Partials are task partials (scope ``task|csat``, arms ``<release>|<produced arm>``); the guard
maps releases to the rollout's baseline and candidate when it evaluates. The control state comes
from a real in-memory application; decisions are executed with the same function the control
plane's command consumer uses, and the resulting control events are fed back into the index, so
the loop guard -> command -> event -> index is closed.
"""

from collections.abc import Callable, Mapping
from dataclasses import replace
from itertools import pairwise
from typing import Any
from uuid import UUID

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relctl.adapters.commands import parse_command
from relctl.domain.alerts import DEFAULT_RULES, AlertRule, AlertState
from relctl.domain.guard_eval import RuleState
from relctl.domain.ledger import Ledger
from relctl.domain.metrics import WindowStats
from relctl.streams import guard as guard_module
from relctl.streams.attribute import BUCKET_SECONDS, Attributor, Partial, arm_key
from relctl.streams.guard import (
    DEFAULT_RETENTION_SECONDS,
    GUARD_ACTOR,
    RESEND_AFTER_SECONDS,
    SIGNAL_RESOLVE_SECONDS,
    DictStore,
    Guard,
    GuardOutcome,
    ScopeState,
)

from tests.unit.stream_support import (
    BASE,
    CAND,
    PAIRS,
    SCOPE,
    SHADOW,
    STARTED,
    T0,
    TASK,
    Control,
    errors,
    guard_rule,
    iso,
    partial,
    record,
    scores,
)
from tests.unit.support import ACTOR, REASON

B0, B1, B2 = int(T0), int(T0 + BUCKET_SECONDS), int(T0 + 2 * BUCKET_SECONDS)
Buckets = Mapping[tuple[str, float], WindowStats]


class Rig:
    """A rollout of task ``csat`` (baseline 1, candidate 2), its guard, and the store behind
    it. ``state`` is how far the rollout got: None (planned only, or not visible to the index
    with ``sync=False``), else the Started event's time."""

    def __init__(self, rules: list[dict[str, Any]], shadow: bool = False,
                 alert_rules: tuple[AlertRule, ...] = (), started_at: float | None = STARTED,
                 start: bool = True, sync: bool = True) -> None:
        self.control = Control()
        self.rollout = (self.control.running(rules, shadow=shadow, started_at=started_at,
                                             sync=sync)
                        if start else self.control.plan(rules, shadow=shadow, sync=sync))
        self.store = DictStore()
        self.alert_rules = alert_rules
        self.guard = Guard(self.control.index, self.store, alert_rules)

    def feed(self, now: float, buckets: Buckets | None = None) -> GuardOutcome:
        return self.guard.handle(partial(buckets or {}), now)

    def restart(self) -> Guard:
        """A new worker over the same (changelogged) store: nothing kept in memory."""
        self.guard = Guard(self.control.index, self.store, self.alert_rules)
        return self.guard

    def execute(self, command: dict[str, Any]) -> bool:
        """What the control plane does with a command from relctl.commands."""
        return self.control.execute(command)

    def state(self) -> str:
        return self.control.index.rollouts[self.rollout].state

    def stored(self, arm: str, bucket: int) -> WindowStats | None:
        """The (arm, bucket) stats a restarted worker would recover from the store."""
        recovered = Ledger(SCOPE, self.store, BUCKET_SECONDS)
        recovered.load()
        return recovered.buckets.get(arm, {}).get(bucket)

    def meta(self) -> dict[str, Any]:
        return orjson.loads(self.store[f"{SCOPE}|meta"])

    def rule(self, name: str) -> RuleState:
        return RuleState.from_json(self.meta()["rules"][name])


def decision_id(rig: Rig, rule: str, since: float) -> str:
    return f"{rig.rollout}:{rule}:{int(since * 1000)}"


def outcomes(out: GuardOutcome) -> list[tuple[str, str | None]]:
    return [(v.outcome, v.action) for v in out.verdicts]


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
    assert command["reason"].startswith("guard errors (RollbackTrigger) failed: llm_error_rate")
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


# ---- which arms are judged ------------------------------------------------------------------

def test_sandbox_runs_count_on_neither_side() -> None:
    """A sandbox run is not rollout traffic: neither the candidate's nor the baseline's."""
    errors_rule = guard_rule()
    delta = guard_rule(name="delta", metric="score_delta_baseline", comparator="<",
                       threshold=-5, min_samples=50)
    rig = Rig([errors_rule, delta])
    out = rig.feed(T0 + 1, {
        (CAND, B0): scores(60, 80.0),
        (arm_key(2, "sandbox"), B0): replace(scores(100, 0.0), llm_error=100),
        (BASE, B0): scores(60, 80.0),
        (arm_key(1, "sandbox"), B0): scores(100, 100.0)})
    assert [(v.rule, v.outcome, v.value, v.samples) for v in out.verdicts] == [
        ("errors", "Passed", 0.0, 60), ("delta", "Passed", 0.0, 60)]
    assert out.commands == []


def test_baseline_is_the_baseline_releases_production_arm_only() -> None:
    delta = guard_rule(name="delta", metric="score_delta_baseline", comparator="<",
                       threshold=-5, min_samples=50)
    rig = Rig([delta])
    out = rig.feed(T0 + 1, {
        (CAND, B0): scores(60, 70.0), (BASE, B0): scores(60, 80.0),
        (arm_key(1, "shadow"), B0): scores(100, 0.0),
        (arm_key(3, "production"), B0): scores(100, 0.0),
        (arm_key(1, "pairs"), B0): WindowStats(shadow_pairs=100, shadow_delta_sum=-5000.0)})
    assert [(v.outcome, v.value, v.samples) for v in out.verdicts] == [("Failed", -10.0, 60)]
    assert [c["action"] for c in out.commands] == ["rollback"]


def test_progressive_candidate_is_its_production_arm() -> None:
    rig = Rig([guard_rule()])
    out = rig.feed(T0 + 1, {(SHADOW, B0): errors(100, 100),
                            (arm_key(3, "production"), B0): errors(100, 100)})
    assert [(v.outcome, v.samples) for v in out.verdicts] == [("Inconclusive", 0)]
    out = rig.feed(T0 + 2, {(CAND, B0): errors(60, 6)})
    assert [(v.outcome, v.samples) for v in out.verdicts] == [("Failed", 60)]


def test_shadow_candidate_is_its_shadow_arm_not_its_production_arm() -> None:
    rig = Rig([guard_rule()], shadow=True)
    out = rig.feed(T0 + 1, {(CAND, B0): errors(100, 100)})  # e.g. a tenant pinned to v2
    assert [(v.outcome, v.samples) for v in out.verdicts] == [("Inconclusive", 0)]
    out = rig.feed(T0 + 2, {(SHADOW, B0): errors(60, 6)})
    assert [(v.outcome, v.samples) for v in out.verdicts] == [("Failed", 60)]
    assert [c["action"] for c in out.commands] == ["rollback"]


def test_candidate_pairs_count_for_the_shadow_delta() -> None:
    rule = guard_rule(name="drift", metric="score_delta_shadow", comparator="<", threshold=-5,
                      min_samples=30)
    rig = Rig([rule], shadow=True)
    out = rig.feed(T0 + 1, {
        (PAIRS, B0): WindowStats(shadow_pairs=40, shadow_delta_sum=-400.0),
        (arm_key(3, "pairs"), B0): WindowStats(shadow_pairs=1000, shadow_delta_sum=0.0)})
    assert [(v.outcome, v.value, v.samples) for v in out.verdicts] == [("Failed", -10.0, 40)]


def test_shadow_rollout_is_guarded_on_paired_deltas_end_to_end() -> None:
    rule = guard_rule(name="drift", metric="score_delta_shadow", comparator="<", threshold=-5,
                      min_samples=30)
    rig = Rig([rule], shadow=True)
    attributor = Attributor(rig.control.index)
    records = []
    for i in range(40):
        records.append(record(T0 + i % 10, tenant=f"t{i % 4}", call_id=f"c{i}", release=1,
                              score=80.0))
        records.append(record(T0 + i % 10, tenant=f"t{i % 4}", call_id=f"c{i}", release=2,
                              arm="shadow", score=70.0))
        records.append(record(T0 + i % 10, tenant=f"t{i % 4}", call_id=f"c{i}", release=2,
                              arm="sandbox", score=0.0))
    commands = []
    for part in attributor.process(records, now=T0 + 11):
        out = rig.guard.handle(Partial.decode(part.encode()), T0 + 12)
        commands += out.commands
    assert [(c["action"], c["evidence"]["value"], c["evidence"]["samples"])
            for c in commands] == [("rollback", -10.0, 40)]


def test_only_guarded_rollouts_are_evaluated_but_their_data_is_kept() -> None:
    rig = Rig([guard_rule()], start=False)
    out = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)})
    assert (out.verdicts, out.commands) == ([], [])
    assert rig.stored(CAND, B0) is not None
    rig.control.app.start_rollout(UUID(rig.rollout), ACTOR, REASON)
    rig.control.sync(at=T0)
    out = rig.feed(T0 + 2)
    assert [(c["action"], c["evidence"]["samples"]) for c in out.commands] == [("rollback", 60)]


# ---- windows and the rollout's start --------------------------------------------------------

def test_the_window_slides_bucket_by_bucket() -> None:
    """A bucket counts while it overlaps (now - window, now]: bucket B0 covers [T0, T0 + 5),
    so a 120 s window drops it at T0 + 125."""
    rig = Rig([guard_rule(min_samples=1000)])
    rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)})
    assert [(v.outcome, v.samples) for v in rig.feed(T0 + 124.9).verdicts] == [
        ("Inconclusive", 60)]
    assert [(v.outcome, v.samples) for v in rig.feed(T0 + 125).verdicts] == [
        ("Inconclusive", 0)]
    assert rig.stored(CAND, B0) is not None, "kept for longer windows and alerts"


def test_evaluations_before_the_rollouts_start_are_not_judged() -> None:
    rig = Rig([guard_rule()], started_at=T0 + 60)
    out = rig.feed(T0 + 90, {(CAND, B0 + 50): errors(100, 100), (CAND, B0 + 55): errors(100, 100),
                             (CAND, B0 + 60): errors(60, 0), (CAND, B0 + 85): errors(10, 0)})
    assert [(v.outcome, v.samples, v.window_seconds) for v in out.verdicts] == [
        ("Passed", 70, 120.0)]
    assert out.commands == []


def test_the_bucket_holding_the_start_counts_whole() -> None:
    """The start is honoured to the bucket: a bucket that overlaps the rollout counts."""
    rig = Rig([guard_rule()], started_at=T0 + 62)
    out = rig.feed(T0 + 90, {(CAND, B0 + 55): errors(100, 100), (CAND, B0 + 60): errors(60, 0)})
    assert [(v.outcome, v.samples) for v in out.verdicts] == [("Passed", 60)]


def test_throughput_guard_does_not_fail_on_a_young_rollout() -> None:
    """evaluations_per_minute is measured over the part of the window since the start."""
    rule = guard_rule(name="throughput", metric="evaluations_per_minute", comparator="<",
                      threshold=100, min_samples=50, window_seconds=300)
    rig = Rig([rule], started_at=T0)
    # A steady 120 evaluations per minute (10 per 5 s bucket) for the first 30 s.
    out = rig.feed(T0 + 30, {(CAND, B0 + 5 * i): errors(10, 0) for i in range(6)})
    assert [(v.outcome, v.value, v.samples, v.window_seconds) for v in out.verdicts] == [
        ("Passed", 120.0, 60, 300.0)]
    assert out.commands == []
    # Then nothing for 30 s: 60 evaluations in the first minute is a real drop.
    out = rig.feed(T0 + 60)
    assert [(v.outcome, v.value) for v in out.verdicts] == [("Failed", 60.0)]
    # Once the rollout is older than the window, the whole window counts.
    rig.restart()
    later = T0 + 600
    out = rig.feed(later, {(CAND, int(later) - 5 * i): errors(50, 0) for i in range(60)})
    assert [(v.value, v.samples) for v in out.verdicts] == [(600.0, 3000)]


@pytest.mark.parametrize(("started_at", "expected"), [
    (T0, ("Failed", 60)), (T0 + 20, ("Inconclusive", 0))], ids=["started-before", "after"])
def test_evaluations_that_arrived_before_the_index_knew_the_rollout(
        started_at: float, expected: tuple[str, int]) -> None:
    """The producer resolved the candidate a moment before the relay published the start:
    the guard has the evaluations before it knows the rollout. Once the Started event arrives,
    what was counted is judged against the start it carries."""
    rig = Rig([guard_rule()], sync=False)
    assert rig.control.index.guarded_rollout(TASK) is None
    attributor = Attributor(rig.control.index)
    batch = [record(T0 + 1 + i % 9, call_id=f"c{i}", release=2,
                    outcome="llm_error" if i % 10 == 0 else "ok") for i in range(60)]
    batch += [record(T0 + 1 + i % 9, call_id=f"b{i}", release=1) for i in range(60)]
    for part in attributor.process(batch, now=T0 + 10):
        out = rig.guard.handle(Partial.decode(part.encode()), T0 + 10)
        assert (out.verdicts, out.commands) == ([], [])
    rig.control.sync(at=started_at)
    assert rig.control.index.guarded_rollout(TASK) is not None
    out = rig.feed(T0 + 30)
    assert [(v.outcome, v.samples) for v in out.verdicts] == [expected]
    assert len(out.commands) == (expected[0] == "Failed")


def test_late_partials_for_an_older_bucket_are_merged() -> None:
    rig = Rig([guard_rule(min_samples=50)])
    out = rig.feed(T0 + 1, {(CAND, B0): errors(30, 3)})
    assert [(v.outcome, v.samples) for v in out.verdicts] == [("Inconclusive", 30)]
    out = rig.feed(T0 + 11, {(CAND, B2): errors(10, 1)})
    assert [(v.outcome, v.samples) for v in out.verdicts] == [("Inconclusive", 40)]
    late = rig.feed(T0 + 12, {(CAND, B0): errors(30, 3)})  # same bucket, arrives late
    stored = rig.stored(CAND, B0)
    assert stored is not None and (stored.count, stored.llm_error) == (60, 6)
    assert [(v.outcome, v.samples, v.value) for v in late.verdicts] == [("Failed", 70, 0.1)]
    assert [c["action"] for c in late.commands] == ["rollback"]


def test_scope_state_window_bounds() -> None:
    state = ScopeState(SCOPE, buckets={CAND: {B0 - 5: errors(1, 0), B0: errors(2, 0),
                                              B1: errors(4, 0), B2: errors(8, 0)},
                                       BASE: {B0: errors(16, 0)}})
    assert state.window([CAND], T0 + 0.1, T0 + 10).count == 14  # B0 overlaps the start
    assert state.window([CAND], T0 + 5, T0 + 10).count == 12
    assert state.window([CAND], T0, T0 + 9.9).count == 6  # B2 starts after the end
    assert state.window([CAND, BASE], T0, T0 + 4).count == 18
    assert state.window(["9|production"], T0, T0 + 10).count == 0
    assert state.releases() == [1, 2]


# ---- state recovery -------------------------------------------------------------------------

def test_restarted_guard_continues_a_pending_breach() -> None:
    rig = Rig([guard_rule(for_seconds=30)])
    out = rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)})
    assert [(v.outcome, v.breach_since) for v in out.verdicts] == [("Pending", T0 + 1)]
    rig.restart()
    out = rig.feed(T0 + 20)
    assert [(v.outcome, v.breach_since, v.samples) for v in out.verdicts] == [
        ("Pending", T0 + 1, 60)]
    assert rig.guard.scopes[SCOPE].buckets[CAND][B0].count == 60
    rig.restart()
    out = rig.feed(T0 + 31)
    assert outcomes(out) == [("Failed", "rollback")]
    assert [c["decision_id"] for c in out.commands] == [decision_id(rig, "errors", T0 + 1)]
    assert out.commands[0]["evidence"]["breach_since"] == iso(T0 + 1)


def test_restarted_guard_does_not_decide_twice() -> None:
    rig = Rig([guard_rule()])
    assert len(rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)}).commands) == 1
    rig.restart()
    out = rig.feed(T0 + 1.5, {(CAND, B1): errors(60, 6)})
    assert out.commands == [] and outcomes(out) == [("Failed", None)]


def test_state_survives_only_through_the_store() -> None:
    rig = Rig([guard_rule(for_seconds=30)])
    rig.feed(T0 + 1, {(CAND, B0): errors(60, 6)})
    fresh = Guard(rig.control.index, DictStore(), [])  # a worker that lost its table
    out = fresh.handle(partial({}), T0 + 40)
    assert [v.outcome for v in out.verdicts] == ["Inconclusive"]


# ---- retention --------------------------------------------------------------------------------

def kept_until(retention: float, bucket: int = B0) -> float:
    """The first instant at which ``bucket`` is deleted under ``retention``."""
    return bucket + BUCKET_SECONDS + retention + BUCKET_SECONDS


def test_buckets_older_than_the_retention_are_deleted() -> None:
    rig = Rig([guard_rule(window_seconds=120)])  # no alert rules: the 1200 s default
    rig.feed(T0 + 1, {(CAND, B0): errors(10, 0), (BASE, B0): errors(10, 0)})
    rig.feed(T0 + 60, {(CAND, B0 + 60): errors(10, 0)})
    gone = kept_until(DEFAULT_RETENTION_SECONDS)
    rig.feed(gone - 0.1)
    assert rig.stored(CAND, B0) is not None and rig.stored(BASE, B0) is not None
    rig.feed(gone)
    assert rig.stored(CAND, B0) is None and rig.stored(BASE, B0) is None
    assert rig.stored(CAND, B0 + 60) is not None
    assert rig.meta()["buckets"] == {CAND: [B0 + 60], BASE: []}
    # A bucket already past the retention is not stored at all.
    rig.feed(gone + 1, {(CAND, B0): errors(10, 10)})
    assert rig.stored(CAND, B0) is None
    assert list(rig.guard.scopes[SCOPE].buckets[CAND]) == [B0 + 60]
    # A restarted worker loads only what is left.
    rig.restart()
    rig.feed(gone + 2)
    assert {arm: list(b) for arm, b in rig.guard.scopes[SCOPE].buckets.items()} == {
        CAND: [B0 + 60]}


def test_retention_covers_the_longest_alert_window() -> None:
    relative = AlertRule("token-spike", "tokens_per_eval", ">", 0.4, window_seconds=900,
                         relative=True)
    plain = AlertRule("errors", "llm_error_rate", ">", 0.01, window_seconds=1500)
    for rules, retention in (((relative,), 1800.0), ((relative, plain), 1800.0),
                             ((plain,), 1500.0), (DEFAULT_RULES, DEFAULT_RETENTION_SECONDS)):
        rig = Rig([guard_rule(window_seconds=120)], alert_rules=rules)
        rig.feed(T0 + 1, {(BASE, B0): errors(10, 0)})
        rig.feed(kept_until(retention) - 0.1)
        assert rig.stored(BASE, B0) is not None, rules
        rig.feed(kept_until(retention))
        assert rig.stored(BASE, B0) is None, rules


@pytest.mark.parametrize("state", ["Planned", "Running", "Paused", "Frozen"])
def test_retention_covers_the_guard_windows_of_the_active_rollout(state: str) -> None:
    rules = [guard_rule(window_seconds=600), guard_rule(name="long", window_seconds=3600)]
    rig = Rig(rules, start=state != "Planned")
    if state in ("Paused", "Frozen"):
        rig.control.do({"Paused": "pause_rollout", "Frozen": "freeze_rollout"}[state],
                       rig.rollout)
    assert rig.state() == state
    rig.feed(T0 + 1, {(CAND, B0): errors(10, 0)})
    rig.feed(kept_until(3600) - 0.1)
    assert rig.stored(CAND, B0) is not None
    rig.feed(kept_until(3600))
    assert rig.stored(CAND, B0) is None


def test_retention_falls_back_to_the_default_once_the_rollout_is_closed() -> None:
    rig = Rig([guard_rule(window_seconds=3600)])
    rig.feed(T0 + 1, {(CAND, B0): errors(10, 0)})
    rig.control.do("roll_back", rig.rollout)
    rig.feed(kept_until(DEFAULT_RETENTION_SECONDS) - 0.1)
    assert rig.stored(CAND, B0) is not None
    rig.feed(kept_until(DEFAULT_RETENTION_SECONDS))
    assert rig.stored(CAND, B0) is None


@pytest.mark.xfail(strict=True, reason=(
    "bug (partly fixed): Guard._retention falls back to the 1200 s default while the index "
    "does not know the task's active rollout. The worker now waits for the index to catch up "
    "at startup, but if the control topic lags by more than the default retention at run "
    "time (relay down or behind), buckets that the rollout's longer guard window needs, "
    "recorded after the rollout started, are deleted before its Planned/Started events "
    "arrive, and are missing from the window once they do"))
def test_buckets_are_kept_for_a_rollout_the_index_learns_about_late() -> None:
    rig = Rig([guard_rule(window_seconds=3600, min_samples=50)], sync=False)
    rig.feed(T0 + 1, {(CAND, B0): errors(60, 0)})
    rig.feed(T0 + 1300, {(CAND, B0 + 1300): errors(2, 0)})  # the relay is still behind
    rig.control.sync(at=T0)  # the rollout started at T0, with a 3600 s window
    verdict = rig.feed(T0 + 1310).verdicts[0]
    assert rig.stored(CAND, B0) is not None  # actual: deleted (1300 s > 1200 + 10 s)
    assert verdict.samples == 62


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


# ---- platform alerts per release --------------------------------------------------------------

LLM_ERRORS = replace(next(r for r in DEFAULT_RULES if r.name == "llm-error-rate"),
                     for_seconds=10, resolve_seconds=30)
SANDBOX = replace(next(r for r in DEFAULT_RULES if r.name == "sandbox-failures"),
                  for_seconds=0)
RELEASE_1 = f"release|{TASK}|1"


def test_platform_alert_fires_and_resolves_with_hysteresis() -> None:
    rig = Rig([guard_rule()], alert_rules=(LLM_ERRORS,))
    assert rig.feed(T0 + 1, {(BASE, B0): errors(100, 5)}).alerts == []
    assert rig.feed(T0 + 10.9).alerts == []
    out = rig.feed(T0 + 11)
    assert out.commands == []
    assert len(out.alerts) == 1
    fired = out.alerts[0]
    assert {k: fired[k] for k in ("kind", "scope", "rule", "severity", "task", "release", "at",
                                  "fired_at")} == {
        "kind": "fired", "scope": RELEASE_1, "rule": "llm-error-rate", "severity": "critical",
        "task": TASK, "release": 1, "at": iso(T0 + 11), "fired_at": iso(T0 + 11)}
    assert fired["summary"] == LLM_ERRORS.summary
    assert fired["evidence"] == {"metric": "llm_error_rate", "value": 0.05, "samples": 100,
                                 "comparator": ">", "threshold": 0.01, "window_seconds": 600.0,
                                 "relative": False}
    assert rig.feed(T0 + 20).alerts == []
    # Below the threshold but inside the hysteresis band (0.009 .. 0.01): still firing.
    assert rig.feed(T0 + 21, {(BASE, B1 + 10): errors(420, 0)}).alerts == []  # 5 / 520
    assert rig.feed(T0 + 80).alerts == []
    assert AlertState.from_json(rig.meta()["alerts"]["1:llm-error-rate"]).status == "firing"
    # Clear of the band: resolved after resolve_seconds, once.
    assert rig.feed(T0 + 81, {(BASE, B2 + 70): errors(300, 0)}).alerts == []  # 5 / 820
    assert rig.feed(T0 + 110).alerts == []
    out = rig.feed(T0 + 111)
    assert [(a["kind"], a["scope"], a["at"], a["fired_at"]) for a in out.alerts] == [
        ("resolved", RELEASE_1, iso(T0 + 111), iso(T0 + 11))]
    assert rig.feed(T0 + 200).alerts == []
    assert AlertState.from_json(rig.meta()["alerts"]["1:llm-error-rate"]) == AlertState()


def test_platform_alert_of_a_release_nobody_runs_any_more_resolves() -> None:
    """The candidate's alert fired and the guard rolled it back: its traffic stops. Once its
    window is empty for resolve_seconds, the alert resolves (the baseline's traffic goes on and
    never alerts)."""
    rig = Rig([guard_rule()], alert_rules=(LLM_ERRORS,))
    baseline: Buckets = {(BASE, B0): errors(100, 0)}
    out = rig.feed(T0 + 1, {(CAND, B0): errors(100, 10), **baseline})
    assert [c["action"] for c in out.commands] == ["rollback"]
    assert rig.execute(out.commands[0]) and rig.state() == "RolledBack"
    fired = rig.feed(T0 + 11, {(BASE, B2): errors(100, 0)})
    assert [(a["kind"], a["scope"]) for a in fired.alerts] == [("fired", f"release|{TASK}|2")]

    def tick(now: float) -> list[tuple[str, str, str]]:
        out = rig.feed(now, {(BASE, int(now // BUCKET_SECONDS * BUCKET_SECONDS)):
                             errors(10, 0)})
        assert out.verdicts == [] and out.commands == []
        return [(a["kind"], a["scope"], a["at"]) for a in out.alerts]

    for now in (T0 + 300, T0 + 604.9):  # B0 is still in release 2's 600 s window
        assert tick(now) == []
    assert tick(T0 + 605) == []  # the window is empty from here on: quiet
    assert tick(T0 + 634.9) == []
    resolved = rig.feed(T0 + 635)
    assert [(a["kind"], a["scope"], a["at"], a["fired_at"], a["evidence"]["value"],
             a["evidence"]["samples"]) for a in resolved.alerts] == [
        ("resolved", f"release|{TASK}|2", iso(T0 + 635), iso(T0 + 11), None, 0)]
    assert AlertState.from_json(rig.meta()["alerts"]["2:llm-error-rate"]) == AlertState()
    assert tick(T0 + 700) == []


def test_platform_alerts_are_per_release_over_all_its_traffic_but_pairs() -> None:
    rule = replace(LLM_ERRORS, for_seconds=0)
    rig = Rig([guard_rule(min_samples=10_000)], alert_rules=(rule, SANDBOX))
    out = rig.feed(T0 + 1, {
        (CAND, B0): errors(50, 1), (SHADOW, B0): errors(50, 1),
        (arm_key(2, "sandbox"), B0): WindowStats(count=20, sandbox_n=20, sandbox_failed=2),
        (PAIRS, B0): WindowStats(count=1000, shadow_pairs=1000),  # never counted
        (BASE, B0): errors(1000, 1), (arm_key(1, "sandbox"), B0): WindowStats(
            count=20, sandbox_n=20, sandbox_failed=0)})
    assert [(a["kind"], a["rule"], a["scope"], a["release"], a["evidence"]["samples"],
             a["evidence"]["value"]) for a in out.alerts] == [
        ("fired", "llm-error-rate", f"release|{TASK}|2", 2, 120, pytest.approx(2 / 120)),
        ("fired", "sandbox-failures", f"release|{TASK}|2", 2, 20, pytest.approx(0.1))]
    assert sorted(rig.meta()["alerts"]) == ["1:llm-error-rate", "1:sandbox-failures",
                                            "2:llm-error-rate", "2:sandbox-failures"]
    assert outcomes(out) == [("Inconclusive", None)] and out.commands == []


def test_platform_alerts_do_not_need_a_rollout() -> None:
    control = Control()
    store = DictStore()
    guard = Guard(control.index, store, (replace(LLM_ERRORS, for_seconds=0),))
    out = guard.handle(partial({(BASE, B0): errors(100, 5)}), T0 + 1)
    assert out.verdicts == [] and out.commands == []
    assert [(a["kind"], a["scope"]) for a in out.alerts] == [("fired", RELEASE_1)]


def test_relative_alert_windows_do_not_share_a_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    """The previous window ends one bucket before the current one starts, so a bucket that
    straddles the boundary is counted once, in the current window."""
    spike = AlertRule("token-spike", "tokens_per_eval", ">", 0.40, window_seconds=60,
                      for_seconds=0, min_samples=10, relative=True)
    seen: list[tuple[int, int]] = []
    real: Callable[..., Any] = guard_module.measure

    def spy(rule: AlertRule, current: WindowStats, previous: WindowStats | None) -> Any:
        seen.append((current.count, previous.count if previous is not None else -1))
        return real(rule, current, previous)

    monkeypatch.setattr(guard_module, "measure", spy)
    rig = Rig([guard_rule()], alert_rules=(spike,))
    rig.feed(T0 + 1, {(BASE, B0): WindowStats(count=20, tokens=20_000.0)})
    fired = []
    for tenth in range(600, 1250, 5):  # T0 + 60 .. T0 + 124.5
        now = T0 + tenth / 10
        buckets: Buckets | None = {(BASE, B0 + 60): WindowStats(count=20, tokens=30_000.0)} \
            if tenth == 600 else None
        seen.clear()
        out = rig.feed(now, buckets)
        assert [sum(s) for s in seen] == [40], f"at T0 + {tenth / 10}: {seen}"
        fired += [(now, a["evidence"]["value"], a["evidence"]["samples"]) for a in out.alerts]
    # While B0 overlaps the current window there is no previous one to compare with; from
    # T0 + 65 it is the previous window: +50 % tokens per evaluation, over 20 samples each.
    assert fired == [(T0 + 65, pytest.approx(0.5), 20)]


def test_platform_alert_state_survives_a_restart() -> None:
    rig = Rig([guard_rule()], alert_rules=(LLM_ERRORS,))
    rig.feed(T0 + 1, {(BASE, B0): errors(100, 5)})
    rig.restart()
    out = rig.feed(T0 + 11)
    assert [(a["kind"], a["fired_at"]) for a in out.alerts] == [("fired", iso(T0 + 11))]
    rig.restart()
    assert rig.feed(T0 + 30).alerts == []


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
