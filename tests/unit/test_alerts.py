"""Platform alert rules: the seed's defaults, for-duration, min samples, hysteresis, relative."""

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relctl.domain.alerts import (
    DEFAULT_RULES,
    AlertRule,
    AlertState,
    AlertTransition,
    load_rules,
    measure,
    step,
)
from relctl.domain.guard_eval import COMPARE
from relctl.domain.metrics import WindowStats

from tests.unit.stream_support import T0


def breaching(rule: AlertRule, samples: int) -> tuple[WindowStats, WindowStats | None]:
    """(current, previous) windows of ``samples`` evaluations each that breach ``rule``."""
    n = samples
    previous = None
    if rule.metric == "llm_error_rate":
        current = WindowStats(count=n, llm_error=round(n * 0.03))
    elif rule.metric == "transcription_error_rate":
        current = WindowStats(count=n, transcription_error=round(n * 0.05))
    elif rule.metric == "human_review_rate":
        current = WindowStats(count=n, human_review=round(n * 0.3))
    elif rule.metric == "sandbox_failure_rate":
        current = WindowStats(count=n, sandbox_n=n, sandbox_failed=round(n * 0.25))
    elif rule.metric == "confidence_mean":  # 0.9 -> 0.72 is a 20% drop
        previous = WindowStats(count=n, confidence_n=n, confidence_sum=0.9 * n)
        current = WindowStats(count=n, confidence_n=n, confidence_sum=0.72 * n)
    elif rule.metric == "tokens_per_eval":  # 1000 -> 1500 tokens is a 50% spike
        previous = WindowStats(count=n, tokens=1000.0 * n)
        current = WindowStats(count=n, tokens=1500.0 * n)
    elif rule.metric == "queue_depth_max":
        current = WindowStats(count=n, queue_depth_max=250)
    else:  # pragma: no cover - a new default rule needs a builder here
        raise AssertionError(f"no breaching window for {rule.metric}")
    return current, previous


RULES = {rule.name: rule for rule in DEFAULT_RULES}


def test_the_seed_rules_are_configured() -> None:
    assert set(RULES) == {"llm-error-rate", "transcription-errors", "confidence-drop",
                          "human-review-rate", "sandbox-failures", "token-spike",
                          "queue-backlog"}
    assert RULES["llm-error-rate"].severity == "critical"
    assert {name for name, rule in RULES.items() if rule.relative} == {"confidence-drop",
                                                                        "token-spike"}


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=lambda r: r.name)
def test_default_rule_fires_after_its_for_duration_not_before(rule: AlertRule) -> None:
    current, previous = breaching(rule, rule.min_samples)
    value, samples = measure(rule, current, previous)
    assert value is not None and samples == rule.min_samples
    assert COMPARE[rule.comparator](value, rule.threshold)
    state, transition = step(rule, value, samples, T0, AlertState())
    if rule.for_seconds:
        assert transition is None
        assert state == AlertState(status="pending", since=T0)
        state, transition = step(rule, value, samples, T0 + rule.for_seconds - 0.001, state)
        assert transition is None and state.status == "pending"
        state, transition = step(rule, value, samples, T0 + rule.for_seconds, state)
    assert transition == AlertTransition("fired", rule, value, samples,
                                         T0 + rule.for_seconds, T0 + rule.for_seconds)
    assert state == AlertState(status="firing", since=T0, fired_at=T0 + rule.for_seconds)
    # Still breaching: no second "fired".
    state, again = step(rule, value, samples, T0 + rule.for_seconds + 30, state)
    assert again is None and state.status == "firing"


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=lambda r: r.name)
def test_default_rule_respects_min_samples(rule: AlertRule) -> None:
    current, previous = breaching(rule, rule.min_samples - 1)
    value, samples = measure(rule, current, previous)
    state = AlertState()
    for t in range(0, 3 * int(rule.window_seconds), 30):
        state, transition = step(rule, value, samples, T0 + t, state)
        assert transition is None
        assert state == AlertState()


def test_relative_rules_need_enough_samples_in_the_previous_window_too() -> None:
    rule = RULES["token-spike"]
    current, _ = breaching(rule, 500)
    # Traffic, but nothing to compare it with: unknown, yet not "quiet" (it cannot resolve).
    assert measure(rule, current, WindowStats(count=99, tokens=99_000.0)) == (None, 500)
    assert measure(rule, current, WindowStats(count=100, tokens=100_000.0)) == (0.5, 100)


@pytest.mark.parametrize("previous", [None, WindowStats(), WindowStats(count=500)])
def test_relative_rule_without_a_previous_value_is_unknown(previous: WindowStats | None) -> None:
    rule = RULES["token-spike"]  # a previous window of zero tokens has no relative change
    current, _ = breaching(rule, 500)
    assert measure(rule, current, previous) == (None, 500)


def test_confidence_drop_compares_with_the_previous_window() -> None:
    rule = RULES["confidence-drop"]
    before = WindowStats(count=200, confidence_n=200, confidence_sum=180.0)  # mean 0.9
    dropped = WindowStats(count=150, confidence_n=150, confidence_sum=120.0)  # mean 0.8
    steady = WindowStats(count=150, confidence_n=150, confidence_sum=127.5)  # mean 0.85
    value, samples = measure(rule, dropped, before)
    assert value == pytest.approx(-1 / 9) and samples == 150
    assert value is not None and COMPARE[rule.comparator](value, rule.threshold)
    value, _ = measure(rule, steady, before)
    assert value == pytest.approx(-1 / 18)
    assert value is not None and not COMPARE[rule.comparator](value, rule.threshold)
    # The same current window, absolute rather than relative, is just the mean.
    assert measure(replace(rule, relative=False), dropped, before) == (pytest.approx(0.8), 150)


def test_token_spike_compares_with_the_previous_window() -> None:
    rule = RULES["token-spike"]
    before = WindowStats(count=100, tokens=100_000.0)
    assert measure(rule, WindowStats(count=100, tokens=145_000.0), before)[0] == \
        pytest.approx(0.45)
    assert measure(rule, WindowStats(count=100, tokens=130_000.0), before)[0] == \
        pytest.approx(0.30)
    assert measure(rule, WindowStats(count=100, tokens=50_000.0), before)[0] == \
        pytest.approx(-0.5)


def test_absolute_rules_ignore_the_previous_window() -> None:
    rule = RULES["llm-error-rate"]
    assert measure(rule, WindowStats(count=200, llm_error=4), WindowStats(count=1)) == (0.02, 200)


# ---- hysteresis -------------------------------------------------------------------------

FLAPPY = AlertRule("errors", "llm_error_rate", ">", 0.10, window_seconds=300, for_seconds=0,
                   min_samples=10, hysteresis=0.1, resolve_seconds=60)  # margin 0.01


def drive(rule: AlertRule, values: Sequence[tuple[float, float | None]],
          state: AlertState | None = None, samples: int = 100,
          ) -> tuple[AlertState, list[AlertTransition]]:
    state = state or AlertState()
    transitions = []
    for at, value in values:
        state, transition = step(rule, value, samples, at, state)
        if transition is not None:
            transitions.append(transition)
    return state, transitions


def test_oscillating_value_fires_once_and_resolves_once() -> None:
    around = [0.11, 0.095, 0.105, 0.099, 0.12, 0.092, 0.101, 0.0905]  # never below 0.09
    values = [(T0 + 10 * i, around[i % len(around)]) for i in range(40)]
    state, transitions = drive(FLAPPY, values)
    assert [t.kind for t in transitions] == ["fired"]
    assert transitions[0].at == T0 and transitions[0].value == 0.11
    assert state.status == "firing"
    # Safely below threshold - margin (0.09): resolved after resolve_seconds, once.
    start = T0 + 400
    low = [(start + 10 * i, 0.085 if i % 2 else 0.05) for i in range(20)]
    state, transitions = drive(FLAPPY, low, state)
    assert [(t.kind, t.at, t.fired_at) for t in transitions] == [("resolved", start + 60, T0)]
    assert state == AlertState()


def test_a_value_inside_the_band_restarts_the_resolve_timer() -> None:
    state, fired = drive(FLAPPY, [(T0, 0.2)])
    assert [t.kind for t in fired] == ["fired"]
    state, transitions = drive(FLAPPY, [(T0 + 10, 0.05), (T0 + 50, 0.05), (T0 + 60, 0.095),
                                        (T0 + 70, 0.05), (T0 + 129, 0.05)], state)
    assert transitions == [] and state.status == "firing" and state.clear_since == T0 + 70
    state, transitions = drive(FLAPPY, [(T0 + 130, 0.05)], state)
    assert [t.kind for t in transitions] == ["resolved"]


def test_firing_alert_is_not_resolved_by_thin_evidence() -> None:
    """Some traffic, but fewer samples than the rule needs: no verdict either way."""
    state, _ = drive(FLAPPY, [(T0, 0.2)])
    state, transitions = drive(FLAPPY, [(T0 + 10 * i, 0.0) for i in range(1, 30)], state,
                               samples=FLAPPY.min_samples - 1)
    assert transitions == [] and state == AlertState(status="firing", since=T0, fired_at=T0)


@pytest.mark.parametrize(("value", "samples"), [(None, 0), (0.0, 0)], ids=["none", "zero"])
def test_firing_alert_resolves_when_the_release_has_no_traffic(
        value: float | None, samples: int) -> None:
    """Nobody runs the release any more (e.g. it was rolled back): after resolve_seconds of no
    traffic at all, the alert resolves, once, with the empty evidence."""
    state, _ = drive(FLAPPY, [(T0, 0.2)])
    quiet = [(T0 + 100 + 10 * i, value) for i in range(6)]  # T0 + 100 .. T0 + 150
    state, transitions = drive(FLAPPY, quiet, state, samples=samples)
    assert transitions == [] and state.clear_since == T0 + 100
    state, transitions = drive(FLAPPY, [(T0 + 160, value), (T0 + 170, value)], state,
                               samples=samples)
    assert transitions == [AlertTransition("resolved", FLAPPY, value, 0, T0 + 160, T0)]
    assert state == AlertState()


@pytest.mark.parametrize("interruption", [(0.2, 100), (0.0, 5), (0.095, 100)],
                         ids=["breach", "thin", "inside-the-band"])
def test_anything_but_quiet_or_clear_restarts_the_resolve_timer(
        interruption: tuple[float, int]) -> None:
    state, _ = drive(FLAPPY, [(T0, 0.2)])
    state, _ = drive(FLAPPY, [(T0 + 10, None), (T0 + 50, None)], state, samples=0)
    value, samples = interruption
    state, transitions = drive(FLAPPY, [(T0 + 60, value)], state, samples=samples)
    assert transitions == [] and state.status == "firing" and state.clear_since is None
    state, transitions = drive(FLAPPY, [(T0 + 70, None), (T0 + 129, None)], state, samples=0)
    assert transitions == [] and state.clear_since == T0 + 70
    state, transitions = drive(FLAPPY, [(T0 + 130, None)], state, samples=0)
    assert [(t.kind, t.at) for t in transitions] == [("resolved", T0 + 130)]


def test_quiet_and_clear_observations_count_together() -> None:
    """The traffic fades out after recovering: the clear period and the quiet one are one."""
    state, _ = drive(FLAPPY, [(T0, 0.2)])
    state, transitions = drive(FLAPPY, [(T0 + 10, 0.05), (T0 + 40, 0.05)], state)
    assert transitions == [] and state.clear_since == T0 + 10
    state, transitions = drive(FLAPPY, [(T0 + 50, None), (T0 + 70, None)], state, samples=0)
    assert [(t.kind, t.at, t.value, t.samples) for t in transitions] == [
        ("resolved", T0 + 70, None, 0)]


def test_no_traffic_never_fires_and_resets_a_pending_alert() -> None:
    rule = replace(FLAPPY, for_seconds=60)
    state, transitions = drive(rule, [(T0 + 10 * i, None) for i in range(20)], samples=0)
    assert transitions == [] and state == AlertState()
    state, _ = drive(rule, [(T0 + 300, 0.2)])
    assert state == AlertState(status="pending", since=T0 + 300)
    state, transitions = drive(rule, [(T0 + 330, None)], state, samples=0)
    assert transitions == [] and state == AlertState()


def test_pending_alert_is_reset_by_a_safe_value() -> None:
    rule = replace(FLAPPY, for_seconds=60)
    state, transitions = drive(rule, [(T0, 0.2), (T0 + 50, 0.05), (T0 + 70, 0.2),
                                      (T0 + 120, 0.2)])
    assert transitions == [] and state == AlertState(status="pending", since=T0 + 70)
    state, transitions = drive(rule, [(T0 + 130, 0.2)], state)
    assert [(t.kind, t.at) for t in transitions] == [("fired", T0 + 130)]


def test_hysteresis_below_a_lower_bound_rule() -> None:
    rule = AlertRule("agreement", "category_agreement", "<", 0.8, for_seconds=0, min_samples=1,
                     hysteresis=0.1, resolve_seconds=0)  # clear above 0.88
    state, transitions = drive(rule, [(T0, 0.7), (T0 + 1, 0.85), (T0 + 2, 0.79),
                                      (T0 + 3, 0.87), (T0 + 4, 0.9)])
    assert [(t.kind, t.at) for t in transitions] == [("fired", T0), ("resolved", T0 + 4)]
    assert state == AlertState()


def test_alert_state_json_round_trip() -> None:
    state = AlertState(status="firing", since=1.0, fired_at=2.0, clear_since=3.0)
    assert AlertState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert AlertState.from_json(None) == AlertState()


def test_load_rules(tmp_path: Path) -> None:
    assert load_rules(None) == DEFAULT_RULES
    assert load_rules("") == DEFAULT_RULES
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([{"name": "fast-errors", "metric": "llm_error_rate",
                                 "comparator": ">", "threshold": 0.05, "for_seconds": 5,
                                 "min_samples": 10}]))
    assert load_rules(str(path)) == (AlertRule("fast-errors", "llm_error_rate", ">", 0.05,
                                               for_seconds=5, min_samples=10),)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.one_of(st.none(), st.floats(0, 0.3)), st.integers(0, 40),
                                st.sampled_from([0, 5, 100])), max_size=60),
       for_seconds=st.sampled_from([0.0, 30.0]))
def test_transitions_alternate_and_resolve_only_when_clear_or_quiet(
        steps: list[tuple[float | None, int, int]], for_seconds: float) -> None:
    """Fired only on enough evidence above the threshold; resolved only after resolve_seconds
    in which every observation was clear of the band or had no traffic at all."""
    rule = replace(FLAPPY, for_seconds=for_seconds)
    state, now, kinds = AlertState(), T0, []
    calm_since: float | None = None  # start of the current run of clear or quiet observations
    for value, dt, samples in steps:
        now += dt
        quiet = value is None or samples == 0
        clear = samples >= rule.min_samples and value is not None \
            and value < rule.threshold * (1 - rule.hysteresis)
        calm_since = (calm_since if calm_since is not None else now) if quiet or clear else None
        state, transition = step(rule, value, samples, now, state)
        if transition is None:
            continue
        kinds.append(transition.kind)
        assert (transition.value, transition.samples, transition.at) == (value, samples, now)
        if transition.kind == "fired":
            assert transition.value is not None and transition.samples >= rule.min_samples
            assert transition.value > rule.threshold
        else:
            assert calm_since is not None and now - calm_since >= rule.resolve_seconds
    assert kinds == ["fired", "resolved"] * (len(kinds) // 2) + ["fired"] * (len(kinds) % 2)
    assert (state.status == "firing") == (kinds[-1:] == ["fired"])


def test_a_firing_relative_alert_with_traffic_but_no_comparison_does_not_resolve() -> None:
    rule = replace(RULES["token-spike"], for_seconds=0.0)
    state, fired = step(rule, 0.5, 500, 0.0, AlertState())
    assert fired is not None and state.status == "firing"
    for second in range(1, int(rule.resolve_seconds) * 3):
        state, transition = step(rule, None, 500, float(second), state)
        assert transition is None, "traffic without a previous window is not 'no traffic'"
    assert state.status == "firing"
