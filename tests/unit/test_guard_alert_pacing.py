"""Platform alerts evaluated at most every ``alert_every`` seconds per task (the worker's
setting): guard rules are still judged with every partial, and a task whose partial skipped the
alerts is due for the next tick's empty partial, which always evaluates them."""

from dataclasses import replace

from relctl.domain.alerts import DEFAULT_RULES
from relctl.streams.guard import ALERT_EVERY_SECONDS, DictStore, Guard

from tests.unit.guard_support import B0, Sent, outcomes
from tests.unit.stream_support import BASE, T0, TASK, Control, errors, guard_rule, partial

LLM_ERRORS = replace(next(r for r in DEFAULT_RULES if r.name == "llm-error-rate"),
                     for_seconds=0)


def paced() -> Guard:
    control = Control()
    control.running([guard_rule()])
    return Guard(control.index, DictStore(), (LLM_ERRORS,), alert_every=ALERT_EVERY_SECONDS)


def test_a_partial_soon_after_an_evaluation_skips_the_alerts_not_the_guard_rules() -> None:
    guard = paced()
    assert Sent.of(guard.handle(partial({(BASE, B0): errors(100, 0)}), T0 + 1)).alerts == []
    assert guard.alerts_due() == []
    out = Sent.of(guard.handle(partial({(BASE, B0): errors(100, 10)}), T0 + 1.5))
    assert out.alerts == []  # 5 % errors, but evaluated 0.5 s ago
    assert outcomes(out) != []  # the rollout's rule was judged all the same
    assert guard.alerts_due() == [TASK]


def test_the_ticks_empty_partial_evaluates_what_was_skipped() -> None:
    guard = paced()
    guard.handle(partial({(BASE, B0): errors(100, 0)}), T0 + 1)
    guard.handle(partial({(BASE, B0): errors(100, 10)}), T0 + 1.5)
    out = Sent.of(guard.handle(partial({}), T0 + 1.6))
    assert [a["kind"] for a in out.alerts] == ["fired"]
    assert guard.alerts_due() == []


def test_a_partial_after_the_interval_evaluates_the_alerts_itself() -> None:
    guard = paced()
    guard.handle(partial({(BASE, B0): errors(100, 0)}), T0 + 1)
    out = Sent.of(guard.handle(partial({(BASE, B0): errors(100, 10)}), T0 + 2))
    assert [a["kind"] for a in out.alerts] == ["fired"]


def test_a_bare_guard_evaluates_the_alerts_with_every_partial() -> None:
    control = Control()
    guard = Guard(control.index, DictStore(), (LLM_ERRORS,))
    guard.handle(partial({(BASE, B0): errors(100, 0)}), T0 + 1)
    out = Sent.of(guard.handle(partial({(BASE, B0): errors(100, 10)}), T0 + 1.5))
    assert [a["kind"] for a in out.alerts] == ["fired"]
