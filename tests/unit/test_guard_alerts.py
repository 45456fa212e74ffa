"""Platform alert rules per release in the stage-2 guard: fire and resolve with hysteresis, per
release over all its traffic, without a rollout, across a restart.

See tests/unit/guard_support.py for the rig.
"""

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from relctl.domain.alerts import DEFAULT_RULES, AlertRule, AlertState
from relctl.domain.metrics import WindowStats
from relctl.streams import guard as guard_module
from relctl.streams.attribute import BUCKET_SECONDS, arm_key
from relctl.streams.guard import (
    DictStore,
    Guard,
)

from tests.unit.guard_support import (
    B0,
    B1,
    B2,
    Buckets,
    Rig,
    Sent,
    outcomes,
)
from tests.unit.stream_support import (
    BASE,
    CAND,
    PAIRS,
    SHADOW,
    T0,
    TASK,
    Control,
    errors,
    guard_rule,
    iso,
    partial,
)

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
    out = Sent.of(guard.handle(partial({(BASE, B0): errors(100, 5)}), T0 + 1))
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
