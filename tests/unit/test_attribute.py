"""Stage 1: one partial per task and batch, evidence rows per (release, produced arm) and
bucket, and the in-memory tenant windows; shadow pairing of what stage 1 sends (made by the
stage-2 ledger, where waiting halves are changelogged)."""

from typing import Any

import pytest
from relctl.domain.dedup import call_key
from relctl.domain.ledger import Ledger
from relctl.streams.attribute import (
    BUCKET_SECONDS,
    PAIRS,
    TENANT_BUCKET_SECONDS,
    TENANT_WINDOW_SECONDS,
    Attributor,
    Partial,
    arm_key,
    bucket_of,
    task_scope,
)
from relctl.streams.control_index import ControlIndex
from relctl.streams.guard import DictStore

from tests.unit.stream_support import T0, TASK, Control, guard_rule, record
from tests.unit.support import ACTOR, REASON

B0, B1, B2 = int(T0), int(T0 + BUCKET_SECONDS), int(T0 + 2 * BUCKET_SECONDS)
SCOPE = task_scope(TASK)


def by_scope(partials: list[Partial]) -> dict[str, Partial]:
    scopes = [p.scope for p in partials]
    assert len(scopes) == len(set(scopes)), "one partial per task and batch"
    return {p.scope: p for p in partials}


def counts(partial: Partial) -> dict[tuple[str, int], int]:
    return {(arm, bucket): stats.count for arm, buckets in partial.folded().items()
            for bucket, stats in buckets.items()}


class Stage2:
    """The stage-2 ledgers the partials go to (one per task scope), as the guard keeps them."""

    def __init__(self) -> None:
        self.store = DictStore()
        self.ledgers: dict[str, Ledger] = {}

    def ledger(self, scope: str = SCOPE) -> Ledger:
        if scope not in self.ledgers:
            self.ledgers[scope] = Ledger(scope, self.store, BUCKET_SECONDS)
        return self.ledgers[scope]

    def pairs(self, partial: Partial) -> dict[tuple[str, int], tuple[int, float]]:
        """Apply one partial; (arm, bucket) -> (shadow pairs, sum of deltas) it made."""
        ledger = self.ledger(partial.scope)
        before = _pair_stats(ledger)
        ledger.apply(partial.rows, horizon=0)
        after = _pair_stats(ledger)
        return {key: (n - before.get(key, (0, 0.0))[0], total - before.get(key, (0, 0.0))[1])
                for key, (n, total) in after.items() if n != before.get(key, (0, 0.0))[0]}

    def pending(self, scope: str = SCOPE) -> dict[int, tuple[str, int, float]]:
        return self.ledger(scope).pending()


def _pair_stats(ledger: Ledger) -> dict[tuple[str, int], tuple[int, float]]:
    return {(arm, bucket): (stats.shadow_pairs, stats.shadow_delta_sum)
            for arm, buckets in ledger.buckets.items()
            for bucket, stats in buckets.items() if stats.shadow_pairs}


@pytest.fixture
def control() -> Control:
    control = Control()
    control.app.register_tenant("acme", "Acme", "internal", ACTOR, REASON)
    control.sync()
    return control


def test_bucket_of() -> None:
    assert bucket_of(T0) == T0
    assert bucket_of(T0 + 4.999) == T0
    assert bucket_of(T0 + 5) == T0 + 5
    assert bucket_of(T0 - 0.001) == T0 - 5
    assert isinstance(bucket_of(T0 + 1.5), int)
    assert bucket_of(T0 + 61, 60.0) == T0 + 60


def test_scope_and_arm_key_names() -> None:
    assert task_scope("csat") == "task|csat"
    assert arm_key(2, "production") == "2|production"
    assert arm_key(7, PAIRS) == "7|pairs"


def test_one_partial_per_task_keyed_by_release_and_produced_arm(control: Control) -> None:
    control.running([guard_rule()])
    attributor = Attributor(control.index)
    batch = [record(T0 + 1, call_id="c1", release=2), record(T0 + 6, call_id="c2", release=2),
             record(T0 + 7, call_id="c3", release=2, outcome="llm_error"),
             record(T0 + 2, call_id="b1", release=1), record(T0 + 3, call_id="o1", release=3),
             record(T0 + 4, call_id="s1", release=2, arm="sandbox"),
             record(T0 + 8, call_id="s2", release=1, arm="shadow", score=None)]
    partials = by_scope(attributor.process(batch, now=T0 + 10))
    assert set(partials) == {SCOPE}
    only = partials[SCOPE]
    assert counts(only) == {("2|production", B0): 1, ("2|production", B1): 2,
                            ("1|production", B0): 1, ("3|production", B0): 1,
                            ("2|sandbox", B0): 1, ("1|shadow", B1): 1}
    assert only.folded()["2|production"][B1].llm_error == 1
    assert only.folded()["2|sandbox"][B0].sandbox_n == 1
    assert only.evaluations == 7
    assert only.watermark == T0 + 8


def test_partials_do_not_depend_on_the_control_index(control: Control) -> None:
    """Stage 1 does not attribute to rollout arms, so an evaluation that arrives before the
    control event that started its rollout is folded exactly like one that arrives after."""
    batch = [record(T0 + i, call_id=f"c{i}", release=1 + i % 3, tenant=f"t{i % 4}",
                    arm=("production", "shadow", "sandbox")[i % 3],
                    outcome="llm_error" if i % 5 == 0 else "ok") for i in range(30)]
    before = Attributor(ControlIndex()).process(batch, now=T0 + 40)
    control.running([guard_rule()], shadow=True)
    after = Attributor(control.index).process(batch, now=T0 + 40)
    assert [p.encode() for p in before] == [p.encode() for p in after]


def test_each_task_has_its_own_partial(control: Control) -> None:
    attributor = Attributor(control.index)
    partials = by_scope(attributor.process(
        [record(T0 + 1, call_id="a"), record(T0 + 2, call_id="b", task="nps"),
         record(T0 + 9, call_id="c", task="nps", release=4)], now=T0 + 10))
    assert set(partials) == {SCOPE, "task|nps"}
    assert counts(partials[SCOPE]) == {("1|production", B0): 1}
    assert counts(partials["task|nps"]) == {("1|production", B0): 1, ("4|production", B1): 1}
    assert (partials[SCOPE].watermark, partials["task|nps"].watermark) == (T0 + 1, T0 + 9)
    assert (partials[SCOPE].evaluations, partials["task|nps"].evaluations) == (1, 2)


def test_counts_per_arm_and_bucket_over_many_tenants(control: Control) -> None:
    attributor = Attributor(control.index)
    batch = []
    for i in range(60):
        batch.append(record(T0 + i % 15, tenant=f"t{i % 7}", call_id=f"c{i}", release=2,
                            outcome="llm_error" if i % 10 == 0 else "ok"))
        batch.append(record(T0 + i % 15, tenant=f"t{i % 7}", call_id=f"c{i}", release=1))
    scope = by_scope(attributor.process(batch, now=T0 + 20))[SCOPE]
    expected = {(arm, int(T0 + 5 * k)): 20 for arm in ("2|production", "1|production")
                for k in range(3)}
    assert counts(scope) == expected
    assert sum(s.llm_error for s in scope.folded()["2|production"].values()) == 6
    assert sum(s.llm_error for s in scope.folded()["1|production"].values()) == 0
    assert scope.evaluations == 120


def test_future_timestamps_are_clamped_to_now(control: Control) -> None:
    attributor = Attributor(control.index)
    only = by_scope(attributor.process([record(T0 + 3600, call_id="future")],
                                       now=T0 + 12))[SCOPE]
    assert counts(only) == {("1|production", int(T0 + 10)): 1}
    assert only.watermark == T0 + 12


def test_partial_wire_round_trip(control: Control) -> None:
    attributor = Attributor(control.index)
    [built] = attributor.process([record(T0 + 1, release=2, latency_ms=800.0, score=70.0,
                                         arm="shadow"),
                                  record(T0 + 9, release=1, score=80.0)], now=T0 + 10)
    again = Partial.decode(built.encode())
    assert (again.scope, again.watermark, again.evaluations) == (SCOPE, T0 + 9, 2)
    assert again.rows == built.rows
    assert counts(again) == counts(built) == {("2|shadow", B0): 1, ("1|production", B1): 1}
    assert Stage2().pairs(again) == {("2|pairs", B1): (1, -10.0)}
    latency = again.folded()["2|shadow"][B0].latency
    assert latency.get_quantile_value(0.5) == pytest.approx(800.0, rel=0.01)


def test_an_empty_batch_has_no_partials(control: Control) -> None:
    assert Attributor(control.index).process([], now=T0) == []


# ---- shadow pairing (made at stage 2 from what stage 1 sends) ----------------------------

def test_production_and_shadow_runs_of_one_call_are_paired(control: Control) -> None:
    attributor, stage2 = Attributor(control.index), Stage2()
    batch = [record(T0 + 1, call_id="k1", release=1, score=80.0),
             record(T0 + 2, call_id="k1", release=2, arm="shadow", score=70.0),
             record(T0 + 3, call_id="k2", release=2, arm="shadow", score=95.0),
             record(T0 + 6, call_id="k2", release=1, score=90.0)]
    scope = by_scope(attributor.process(batch, now=T0 + 10))[SCOPE]
    # The delta is shadow minus production, under the shadow release's pairs arm, in the
    # bucket of whichever run completed the pair.
    assert stage2.pairs(scope) == {("2|pairs", B0): (1, -10.0), ("2|pairs", B1): (1, 5.0)}
    assert counts(scope) == {("1|production", B0): 1, ("2|shadow", B0): 2,
                             ("1|production", B1): 1}
    assert scope.evaluations == 4, "pairs are not evaluations"
    assert stage2.pending() == {}


def test_pairing_spans_batches(control: Control) -> None:
    attributor, stage2 = Attributor(control.index), Stage2()
    first = by_scope(attributor.process([record(T0 + 1, call_id="k", release=2, arm="shadow",
                                                score=60.0)], now=T0 + 2))[SCOPE]
    assert stage2.pairs(first) == {}
    assert stage2.pending() == {call_key("acme", TASK, "k"): ("shadow", 2, 60.0)}
    second = by_scope(attributor.process([record(T0 + 30, call_id="k", release=1,
                                                 score=75.0)], now=T0 + 31))[SCOPE]
    assert stage2.pairs(second) == {("2|pairs", int(T0 + 30)): (1, -15.0)}
    assert counts(second) == {("1|production", int(T0 + 30)): 1}
    assert stage2.pending() == {}


def test_a_waiting_half_survives_a_restart(control: Control) -> None:
    attributor, stage2 = Attributor(control.index), Stage2()
    [first] = attributor.process([record(T0 + 1, call_id="k", release=2, arm="shadow",
                                         score=60.0)], now=T0 + 2)
    stage2.pairs(first)
    restarted = Stage2()
    restarted.store = stage2.store
    restarted.ledger().load()
    assert restarted.pending() == {call_key("acme", TASK, "k"): ("shadow", 2, 60.0)}
    [second] = attributor.process([record(T0 + 30, call_id="k", release=1, score=75.0)],
                                  now=T0 + 31)
    assert restarted.pairs(second) == {("2|pairs", int(T0 + 30)): (1, -15.0)}


def test_runs_are_paired_within_one_task_only(control: Control) -> None:
    attributor, stage2 = Attributor(control.index), Stage2()
    for p in attributor.process([record(T0 + 1, call_id="k", release=1, score=80.0)],
                                now=T0 + 2):
        stage2.pairs(p)
    partials = by_scope(attributor.process(
        [record(T0 + 3, call_id="k", release=3, arm="shadow", score=86.0),
         record(T0 + 3, call_id="k", task="nps", release=1, score=10.0)], now=T0 + 4))
    assert stage2.pairs(partials[SCOPE]) == {("3|pairs", B0): (1, 6.0)}
    assert stage2.pairs(partials["task|nps"]) == {}


@pytest.mark.parametrize("other", [
    {"call_id": "different-call"},
    {"tenant": "globex"},
    {"task": "nps"},
    {"score": None},
    {"arm": "sandbox"},
    {"arm": "production"},
], ids=["other-call", "other-tenant", "other-task", "unscored", "sandbox", "same-arm"])
def test_unpaired_runs_do_not_count(control: Control, other: dict[str, Any]) -> None:
    attributor, stage2 = Attributor(control.index), Stage2()
    second = {"call_id": "k", "release": 2, "arm": "shadow", "score": 50.0, **other}
    partials = attributor.process([record(T0 + 1, call_id="k", release=1, score=80.0),
                                   record(T0 + 2, **second)], now=T0 + 3)
    assert all(stage2.pairs(p) == {} for p in partials)
    assert not any(arm.endswith(f"|{PAIRS}") for ledger in stage2.ledgers.values()
                   for arm in ledger.buckets)


def test_sandbox_runs_are_never_paired_nor_pending(control: Control) -> None:
    attributor, stage2 = Attributor(control.index), Stage2()
    [sandbox] = attributor.process([record(T0 + 1, call_id="k", release=2, arm="sandbox",
                                           score=10.0)], now=T0 + 2)
    stage2.pairs(sandbox)
    assert stage2.pending() == {}
    scope = by_scope(attributor.process(
        [record(T0 + 3, call_id="k", release=1, score=80.0),
         record(T0 + 4, call_id="k", release=2, arm="sandbox", score=10.0, tenant="other"),
         record(T0 + 4, call_id="k", release=2, arm="shadow", score=70.0)], now=T0 + 5))[SCOPE]
    assert stage2.pairs(scope) == {("2|pairs", B0): (1, -10.0)}


def test_two_runs_of_the_same_arm_keep_the_latest(control: Control) -> None:
    attributor, stage2 = Attributor(control.index), Stage2()
    scope = by_scope(attributor.process([
        record(T0 + 1, call_id="k", release=1, score=80.0),
        record(T0 + 2, call_id="k", release=1, score=85.0, tenant="acme", prompt_version="p2",
               ),
        record(T0 + 3, call_id="k", release=2, arm="shadow", score=90.0)], now=T0 + 4))[SCOPE]
    # The second production run has the same identity: a duplicate, not counted, not paired.
    assert stage2.pairs(scope) == {("2|pairs", B0): (1, 10.0)}


def test_production_runs_of_two_releases_are_not_paired(control: Control) -> None:
    """A progressive rollout's candidate runs in production: nothing to pair."""
    control.running([guard_rule()])
    attributor, stage2 = Attributor(control.index), Stage2()
    partials = attributor.process([
        record(T0 + 1, call_id="k", release=1, score=80.0),
        record(T0 + 2, call_id="k", release=2, score=60.0)], now=T0 + 4)
    assert all(stage2.pairs(p) == {} for p in partials)
    assert list(stage2.pending().values()) == [("production", 2, 60.0)]


def test_waiting_halves_are_bounded_by_the_retention(control: Control) -> None:
    attributor, stage2 = Attributor(control.index), Stage2()
    [old] = attributor.process([record(T0, call_id=f"k{i}", release=1, score=80.0)
                                for i in range(3)], now=T0 + 1)
    [new] = attributor.process([record(T0 + 60, call_id="k9", release=1, score=80.0)],
                               now=T0 + 61)
    stage2.pairs(old)
    stage2.pairs(new)
    assert len(stage2.pending()) == 4
    stage2.ledger().expire(T0 + BUCKET_SECONDS)
    assert list(stage2.pending()) == [call_key("acme", TASK, "k9")]
    # An expired production run can no longer be paired; a kept one can.
    scope = by_scope(attributor.process(
        [record(T0 + 62, call_id=f"k{i}", release=2, arm="shadow", score=90.0)
         for i in (0, 9)], now=T0 + 63))[SCOPE]
    assert stage2.pairs(scope) == {("2|pairs", int(T0 + 60)): (1, 10.0)}


# ---- tenant windows -----------------------------------------------------------------------

def tumbling(at: float) -> int:
    return bucket_of(at, TENANT_BUCKET_SECONDS)


def test_tenant_windows_are_keyed_by_task_release_tenant_cohort_and_arm(
        control: Control) -> None:
    attributor = Attributor(control.index)
    attributor.process([record(T0 + 1, call_id="a", release=2),
                        record(T0 + 2, call_id="b", release=2),
                        record(T0 + 3, call_id="s", release=2, arm="shadow"),
                        record(T0 + 7, call_id="c", release=1),
                        record(T0 + 8, call_id="d", release=1, tenant="newco")], now=T0 + 9)
    windows = {key: {b: s.count for b, s in buckets.items()}
               for key, buckets in attributor.tenant_windows.items()}
    assert windows == {
        (TASK, 2, "acme", "internal", "production"): {tumbling(T0): 2},
        (TASK, 2, "acme", "internal", "shadow"): {tumbling(T0): 1},
        (TASK, 1, "acme", "internal", "production"): {tumbling(T0): 1},
        (TASK, 1, "newco", "general", "production"): {tumbling(T0): 1},
    }
    # A later batch adds to the same windows; a cohort move starts a new key.
    key = (TASK, 2, "acme", "internal", "production")
    attributor.process([record(T0 + 4, call_id="e", release=2)], now=T0 + 10)
    assert attributor.tenant_windows[key][tumbling(T0)].count == 3
    later = T0 + TENANT_BUCKET_SECONDS
    attributor.process([record(later, call_id="g", release=2)], now=later)
    assert {b: s.count for b, s in attributor.tenant_windows[key].items()} == {
        tumbling(T0): 3, tumbling(later): 1}
    control.app.move_tenant("acme", "closed_beta", ACTOR, REASON)
    control.sync()
    attributor.process([record(T0 + 3, call_id="f", release=2)], now=T0 + 10)
    assert attributor.tenant_windows[key][tumbling(T0)].count == 3
    assert attributor.tenant_windows[(TASK, 2, "acme", "closed_beta", "production")][
        tumbling(T0)].count == 1


def test_tenant_windows_do_not_share_stats_with_partials(control: Control) -> None:
    attributor = Attributor(control.index)
    [first] = attributor.process([record(T0 + 1, call_id="a")], now=T0 + 2)
    attributor.process([record(T0 + 2, call_id="b")], now=T0 + 3)
    assert first.folded()["1|production"][B0].count == 1
    assert first.folded()["1|production"][B0].latency.count == 1
    window = attributor.tenant_windows[(TASK, 1, "acme", "internal", "production")][
        tumbling(T0)]
    assert window.count == 2 and window.latency.count == 2


def test_expire_drops_tenant_windows_older_than_the_horizon(control: Control) -> None:
    assert T0 % TENANT_BUCKET_SECONDS == 0
    late = T0 + 2 * TENANT_BUCKET_SECONDS
    attributor = Attributor(control.index)
    attributor.process([record(T0, call_id="old", tenant="old"),
                        record(T0, call_id="mixed-1", tenant="mixed"),
                        record(late, call_id="mixed-2", tenant="mixed"),
                        record(late, call_id="new", tenant="new")], now=late)
    assert len(attributor.tenant_windows) == 3
    # A tumbling window is dropped once it ended TENANT_WINDOW_SECONDS ago.
    gone = T0 + TENANT_BUCKET_SECONDS + TENANT_WINDOW_SECONDS
    assert attributor.expire(gone - 0.001) == 3
    assert attributor.expire(gone) == 2
    tenants = {key[2]: sorted(buckets) for key, buckets in attributor.tenant_windows.items()}
    assert tenants == {"mixed": [tumbling(late)], "new": [tumbling(late)]}
    assert attributor.expire(late + TENANT_BUCKET_SECONDS + TENANT_WINDOW_SECONDS) == 0
    assert attributor.tenant_windows == {}


def test_cohort_totals_sum_tenant_windows_per_task_release_and_cohort() -> None:
    index = ControlIndex()
    index.cohorts.update({"a": "internal", "b": "internal", "c": "general"})
    attributor = Attributor(index)
    batch = [record(tenant=t, release=1, call_id=f"c{i}",
                    outcome="llm_error" if i % 2 else "ok")
             for i, t in enumerate(["a", "b", "c", "a"])]
    attributor.process(batch, now=T0 + 60)
    totals = attributor.cohort_totals()
    assert totals[(TASK, 1, "internal")]["count"] == 3
    assert totals[(TASK, 1, "internal")]["llm_error"] == 2
    assert totals[(TASK, 1, "general")] == {**dict.fromkeys(totals[(TASK, 1, "general")], 0),
                                            "count": 1}


def test_a_big_partial_is_sent_in_bounded_messages(control: Control) -> None:
    attributor = Attributor(control.index)
    batch = [record(T0 + i % 12, call_id=f"c{i}", release=1 + i % 2) for i in range(25)]
    [whole] = attributor.process(batch, now=T0 + 20)
    whole.violations = {2: 3}
    parts = whole.split(max_rows=4)
    assert len(parts) == 7
    assert all(sum(len(r) for b in p.rows.values() for r in b.values()) <= 4 for p in parts)
    assert sum(p.evaluations for p in parts) == 25
    assert [p.violations for p in parts] == [{2: 3}] + [{}] * 6
    assert [p.final for p in parts] == [False] * 6 + [True]
    assert Partial.decode(parts[0].encode()).final is False
    assert {p.watermark for p in parts} == {whole.watermark}
    merged: dict[tuple[str, int], int] = {}
    for part in parts:
        for key, count in counts(Partial.decode(part.encode())).items():
            merged[key] = merged.get(key, 0) + count
    assert merged == counts(whole)
    assert whole.split(max_rows=25) == [whole]
