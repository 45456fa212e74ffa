"""Stage 2 with what stage 1 really sends: each evaluation judged once, restarts included."""

from typing import Any

from relctl.streams.attribute import Attributor, Partial
from relctl.streams.guard import TRACE_RESOLVE_SECONDS, TRACE_RULE, DictStore, Guard

from tests.unit.stream_support import SCOPE, T0, Control, guard_rule, record


def rig(min_samples: int = 200) -> tuple[Control, Guard, DictStore]:
    control = Control()
    control.running([guard_rule(threshold=0.05, min_samples=min_samples)])
    store = DictStore()
    return control, Guard(control.index, store, ()), store


def send(guard: Guard, attributor: Attributor, records: list[Any], now: float,
         max_rows: int = 2000) -> list[Any]:
    verdicts = []
    for built in attributor.process(records, now=now):
        for part in built.split(max_rows):
            verdicts += guard.handle(Partial.decode(part.encode()), now).verdicts
    return verdicts


def failing(count: int) -> list[Any]:
    return [record(T0 + i % 10, call_id=f"c{i}", release=2, outcome="llm_error",
                   tenant=f"t{i % 3}") for i in range(count)]


def test_seventy_calls_sent_three_times_stay_seventy_samples() -> None:
    """The issue's false rollback: 70 unique failing calls, each sent three times, against a
    min_samples of 200. Counted once, they are not enough evidence."""
    control, guard, _ = rig()
    attributor = Attributor(control.index)
    verdicts = []
    for _ in range(3):
        verdicts = send(guard, attributor, failing(70), T0 + 12)
    [verdict] = verdicts
    assert (verdict.outcome, verdict.samples) == ("Inconclusive", 70)
    assert guard.last.duplicates == 70


def test_a_restarted_guard_still_knows_what_it_counted() -> None:
    control, guard, store = rig(min_samples=100)
    send(guard, Attributor(control.index), failing(70), T0 + 12)
    restarted = Guard(control.index, store, ())
    [verdict] = send(restarted, Attributor(control.index), failing(90), T0 + 13)
    assert verdict.samples == 90
    assert restarted.last.duplicates == 70 and restarted.last.counted == 20


def test_a_split_batch_is_judged_once_after_all_of_it_is_counted() -> None:
    control, guard, _ = rig(min_samples=100)
    verdicts = send(guard, Attributor(control.index), failing(100), T0 + 12, max_rows=30)
    [verdict] = verdicts
    assert (verdict.outcome, verdict.samples) == ("Failed", 100)


def test_trace_violations_fire_the_release_alert_once_and_resolve_later() -> None:
    control, guard, _ = rig()
    first = guard.handle(Partial(SCOPE, violations={2: 3}), T0)
    again = guard.handle(Partial(SCOPE, violations={2: 1}), T0 + 10)
    quiet = guard.handle(Partial(SCOPE), T0 + 10 + TRACE_RESOLVE_SECONDS - 1)
    resolved = guard.handle(Partial(SCOPE), T0 + 10 + TRACE_RESOLVE_SECONDS)
    fired = [a.wire() for a in first.alerts if a.rule == TRACE_RULE]
    assert [a["kind"] for a in fired] == ["fired"]
    assert (fired[0]["scope"], fired[0]["release"]) == ("release|csat|2", 2)
    assert not [a for a in again.alerts + quiet.alerts if a.rule == TRACE_RULE]
    [done] = [a.wire() for a in resolved.alerts if a.rule == TRACE_RULE]
    assert done["kind"] == "resolved" and done["evidence"]["violations"] == 4
    assert control.index.trace("csat", 2) is not None
