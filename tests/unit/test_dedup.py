"""Evidence identity and the stage-2 ledger: each evaluation counted once, whatever arrives."""

from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relctl.domain.dedup import Evidence, call_key, evidence_key, pair_key
from relctl.domain.evaluation import EvaluationRecord
from relctl.domain.ledger import Ledger
from relctl.domain.metrics import WindowStats

from tests.unit.evaluation_support import evaluation

BUCKET = 5.0
SCOPE = "task|csat"
T0 = 1_800_000_000


class Store(dict[str, bytes]):
    """A dict with the EntryStore interface (what a Faust table gives the worker)."""

    def set(self, key: str, value: bytes) -> None:
        self[key] = value

    def delete(self, key: str) -> None:
        self.pop(key, None)

    def keys(self, prefix: str = "") -> Iterable[str]:  # type: ignore[override]
        return [key for key in dict(self) if key.startswith(prefix)]


def row(call: int, *, arm: str = "production", release: int = 1, tenant: str = "acme",
        **changes: Any) -> Evidence:
    data = evaluation(call_id=f"call-{call}", arm=arm, release=release, tenant=tenant,
                      **changes)
    return Evidence.of(EvaluationRecord.from_mapping(data))


def cells(rows: Iterable[tuple[str, int, Evidence]]) -> dict[str, dict[int, list[Evidence]]]:
    """(arm key, bucket, row) triples as the partial's cells."""
    result: dict[str, dict[int, list[Evidence]]] = {}
    for arm, bucket, item in rows:
        result.setdefault(arm, {}).setdefault(bucket, []).append(item)
    return result


def fingerprint(ledger: Ledger) -> dict[tuple[str, int], dict[str, Any]]:
    """Everything a guard reads from the ledger, comparable with ==."""
    return {(arm, bucket): _comparable(stats) for arm, buckets in ledger.buckets.items()
            for bucket, stats in buckets.items() if stats.count or stats.shadow_pairs}


def _comparable(stats: WindowStats) -> dict[str, Any]:
    data = stats.to_json()
    for name in ("latency", "queue_wait", "confidence"):
        sketch = getattr(stats, name)
        data[name] = (sketch.count, round(sketch.get_quantile_value(0.5) or 0, 6))
    for name in ("cost", "tokens", "confidence_sum", "score_sum", "shadow_delta_sum"):
        data[name] = round(data[name], 9)
    return data


def test_identity_covers_tenant_task_call_arm_and_release() -> None:
    base = evidence_key("acme", "csat", "c1", "production", 1)
    assert base == evidence_key("acme", "csat", "c1", "production", 1)
    others = {evidence_key("beta", "csat", "c1", "production", 1),
              evidence_key("acme", "qa", "c1", "production", 1),
              evidence_key("acme", "csat", "c2", "production", 1),
              evidence_key("acme", "csat", "c1", "shadow", 1),
              evidence_key("acme", "csat", "c1", "production", 2)}
    assert base not in others and len(others) == 5
    assert -(2**63) <= base < 2**63
    assert call_key("acme", "csat", "c1") != call_key("acme", "csat", "c2")
    assert pair_key(1, 2) != pair_key(1, 3)


def test_a_row_round_trips_and_folds_like_its_record() -> None:
    record = EvaluationRecord.from_mapping(evaluation(
        outcome="timeout", fallback_used=True, schema_valid=False, repaired=True,
        human_review_requested=True, queue_depth=12, human_score=80.0,
        human_categories={"greeting": "pass"}, critical_detections=["threat"],
        human_critical=[]))
    evidence = Evidence.of(record)
    again = Evidence.decode("production", evidence.encode())
    assert again == evidence
    direct, via_row = WindowStats(), WindowStats()
    direct.add(record)
    via_row.add(again)
    assert _comparable(direct) == _comparable(via_row)


def test_only_scored_production_and_shadow_runs_carry_a_call() -> None:
    assert row(1).call is not None
    assert row(1, arm="shadow").call is not None
    assert row(1, arm="sandbox").call is None
    assert row(1, score=None).call is None


def test_a_record_sent_three_times_is_counted_once_and_the_copies_are_reported() -> None:
    ledger = Ledger(SCOPE, Store(), BUCKET)
    rows = [("1|production", T0, row(i)) for i in range(10)]
    first = ledger.apply(cells(rows), horizon=0)
    second = ledger.apply(cells(rows * 2), horizon=0)
    assert (first.counted, first.duplicates) == (10, 0)
    assert (second.counted, second.duplicates) == (0, 20)
    assert ledger.buckets["1|production"][T0].count == 10


def test_duplicates_inside_one_partial_are_caught() -> None:
    ledger = Ledger(SCOPE, Store(), BUCKET)
    applied = ledger.apply(cells([("1|production", T0, row(1))] * 3), horizon=0)
    assert (applied.counted, applied.duplicates) == (1, 2)


def test_a_copy_stamped_with_another_time_is_still_a_duplicate() -> None:
    ledger = Ledger(SCOPE, Store(), BUCKET)
    ledger.apply(cells([("1|production", T0, row(1))]), horizon=0)
    later = ledger.apply(cells([("1|production", T0 + 60, row(1))]), horizon=0)
    assert later.duplicates == 1
    assert T0 + 60 not in ledger.buckets["1|production"]


def test_the_same_call_on_another_arm_or_release_is_another_evaluation() -> None:
    ledger = Ledger(SCOPE, Store(), BUCKET)
    applied = ledger.apply(cells([("1|production", T0, row(1)),
                                  ("2|shadow", T0, row(1, arm="shadow", release=2)),
                                  ("2|production", T0, row(1, release=2))]), horizon=0)
    assert (applied.counted, applied.duplicates) == (3, 0)


def test_state_survives_a_restart_duplicates_included() -> None:
    store = Store()
    ledger = Ledger(SCOPE, store, BUCKET)
    ledger.apply(cells([("1|production", T0, row(i)) for i in range(5)]), horizon=0)
    restarted = Ledger(SCOPE, store, BUCKET)
    restarted.load()
    assert fingerprint(restarted) == fingerprint(ledger)
    again = restarted.apply(cells([("1|production", T0, row(i)) for i in range(7)]), horizon=0)
    assert (again.counted, again.duplicates) == (2, 5)


def test_entries_are_merged_as_they_accumulate_and_reload_to_the_same_state() -> None:
    store = Store()
    ledger = Ledger(SCOPE, store, BUCKET)
    for i in range(200):
        ledger.apply(cells([("1|production", T0, row(i))]), horizon=0)
    assert ledger.entry_count() < 20, "single-row entries were merged"
    assert len(store) == ledger.entry_count()
    restarted = Ledger(SCOPE, store, BUCKET)
    restarted.load()
    assert restarted.buckets["1|production"][T0].count == 200
    assert restarted.identities == 200


class CountingStore(Store):
    """A Store that counts the entries read back."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)


def test_merging_recent_entries_reads_nothing_back_and_gives_the_state_of_a_reload() -> None:
    store = CountingStore()
    ledger = Ledger(SCOPE, store, BUCKET)
    for i in range(0, 400, 4):
        ledger.apply(cells([("1|production", T0 + BUCKET * (i % 3), row(j))
                            for j in range(i, i + 4)] +
                           [("2|shadow", T0, row(i, arm="shadow", release=2))]), horizon=0)
    assert ledger.entry_count() < 60, "entries were merged"
    assert store.reads == 0
    restarted = Ledger(SCOPE, store, BUCKET)
    restarted.load()
    assert fingerprint(restarted) == fingerprint(ledger)
    assert restarted.pending() == ledger.pending()
    # After a reload, merges read the entries they merge back from the store.
    before = store.reads
    for i in range(400, 480):
        restarted.apply(cells([("1|production", T0, row(i))]), horizon=0)
    assert store.reads > before
    reference = Ledger(SCOPE, Store(), BUCKET)
    for i in range(0, 400, 4):
        reference.apply(cells([("1|production", T0 + BUCKET * (i % 3), row(j))
                               for j in range(i, i + 4)] +
                              [("2|shadow", T0, row(i, arm="shadow", release=2))]), horizon=0)
    for i in range(400, 480):
        reference.apply(cells([("1|production", T0, row(i))]), horizon=0)
    assert fingerprint(restarted) == fingerprint(reference)


def test_a_crash_at_any_store_write_neither_loses_nor_double_counts() -> None:
    """Record every write the ledger makes while folding partials (merges included); for every
    prefix of them (a crash after that write), reload and redeliver every partial: the state
    is the unique set's."""
    partials = [cells([("1|production", T0, row(i)) for i in range(j, j + 2)] +
                      [("2|shadow", T0, row(i, arm="shadow", release=2))
                       for i in range(j, j + 2)])
                for j in range(0, 24, 2)]
    reference = Ledger(SCOPE, Store(), BUCKET)
    for partial in partials:
        reference.apply(partial, horizon=0)
    log = Recording()
    recorded = Ledger(SCOPE, log, BUCKET)
    for partial in partials:
        recorded.apply(partial, horizon=0)
    assert any(op == "delete" for op, _, _ in log.ops), "merges happened"
    for crash in range(len(log.ops) + 1):
        store = Store()
        for op, key, value in log.ops[:crash]:
            if op == "set":
                store.set(key, value)
            else:
                store.delete(key)
        ledger = Ledger(SCOPE, store, BUCKET)
        ledger.load()
        for partial in partials:
            ledger.apply(partial, horizon=0)
        assert _without_pairs(fingerprint(ledger)) == _without_pairs(fingerprint(reference))
        assert ledger.identities == reference.identities, f"crash after write {crash}"
        assert ledger.buckets["1|production"][T0].count == 24


class Recording(Store):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, str, bytes | None]] = []

    def set(self, key: str, value: bytes) -> None:
        self.ops.append(("set", key, value))
        super().set(key, value)

    def delete(self, key: str) -> None:
        self.ops.append(("delete", key, None))
        super().delete(key)


def test_old_buckets_are_not_counted_and_expire_with_their_identities() -> None:
    store = Store()
    ledger = Ledger(SCOPE, store, BUCKET)
    late = ledger.apply(cells([("1|production", T0 - 100, row(1))]), horizon=T0 - 50)
    assert (late.counted, late.expired) == (0, 1)
    ledger.apply(cells([("1|production", T0, row(2))]), horizon=0)
    ledger.expire(T0 + BUCKET)
    assert not any(ledger.buckets.values())
    assert ledger.identities == 0
    assert not store


def test_shadow_pairs_are_made_once_and_survive_a_restart() -> None:
    store = Store()
    ledger = Ledger(SCOPE, store, BUCKET)
    production = [("1|production", T0, row(i, score=80.0)) for i in range(4)]
    shadow = [("2|shadow", T0, row(i, arm="shadow", release=2, score=70.0)) for i in range(4)]
    ledger.apply(cells(production), horizon=0)
    assert ledger.pending_pairs == 4
    restarted = Ledger(SCOPE, store, BUCKET)
    restarted.load()
    assert restarted.pending_pairs == 4, "the waiting halves were recovered"
    applied = restarted.apply(cells(shadow + production), horizon=0)
    assert (applied.pairs, applied.duplicates) == (4, 4)
    pairs = restarted.buckets["2|pairs"][T0]
    assert (pairs.shadow_pairs, pairs.shadow_delta_sum) == (4, -40.0)
    again = Ledger(SCOPE, store, BUCKET)
    again.load()
    assert again.pending_pairs == 0
    assert again.apply(cells(shadow), horizon=0).pairs == 0


def test_dedup_off_counts_every_copy() -> None:
    ledger = Ledger(SCOPE, Store(), BUCKET, dedup=False)
    applied = ledger.apply(cells([("1|production", T0, row(1))] * 3), horizon=0)
    assert applied.counted == 3 and ledger.identities == 0


# ---- any interleaving of duplicates, redeliveries and crashes ------------------------------

# A call has one production run (release 1), may have a shadow run (release 2) and a sandbox run.
ARMS = ("1|production", "2|shadow", "3|sandbox")
unique_rows = st.lists(st.tuples(st.sampled_from(ARMS), st.integers(0, 3), st.integers(0, 30),
                                 st.sampled_from(["ok", "llm_error"]),
                                 st.floats(0, 100).map(lambda s: round(s, 2))),
                       min_size=1, max_size=40,
                       unique_by=lambda item: (item[0], item[2]))


def _rows(spec: list[tuple[str, int, int, str, float]]) -> list[tuple[str, int, Evidence]]:
    result = []
    for arm, bucket, call, outcome, score in spec:
        release, _, produced = arm.partition("|")
        result.append((arm, T0 + bucket * int(BUCKET),
                       row(call, arm=produced, release=int(release), outcome=outcome,
                           score=score)))
    return result


@settings(max_examples=60, deadline=None)
@given(spec=unique_rows, data=st.data())
def test_any_interleaving_of_copies_and_crashes_leaves_the_unique_stats(
    spec: list[tuple[str, int, int, str, float]], data: st.DataObject,
) -> None:
    """Deliveries are the unique rows, each sent 1-3 times, in any order and any batching;
    after any delivery the worker may crash (state reloaded from the store). The final stats,
    pairs included, equal those of folding each unique row once, in order."""
    unique = _rows(spec)
    reference = Ledger(SCOPE, Store(), BUCKET)
    reference.apply(cells(unique), horizon=0)
    copies = [item for item in unique for _ in range(data.draw(st.integers(1, 3)))]
    order = data.draw(st.permutations(copies))
    store = Store()
    ledger = Ledger(SCOPE, store, BUCKET)
    position = 0
    while position < len(order):
        size = data.draw(st.integers(1, 6))
        ledger.apply(cells(order[position:position + size]), horizon=0)
        position += size
        if data.draw(st.booleans()):
            ledger = Ledger(SCOPE, store, BUCKET)
            ledger.load()
    assert _without_pairs(fingerprint(ledger)) == _without_pairs(fingerprint(reference))
    assert _pair_totals(ledger) == _pair_totals(reference)
    assert ledger.identities == reference.identities


def _without_pairs(fp: dict[tuple[str, int], dict[str, Any]]) -> dict[tuple[str, int], Any]:
    return {key: value for key, value in fp.items() if not key[0].endswith("|pairs")}


def _pair_totals(ledger: Ledger) -> dict[str, tuple[int, float]]:
    """Pairs are counted in the bucket of whichever half arrives second, so their bucket
    depends on the order; their number and delta sum per release do not."""
    return {arm: (sum(s.shadow_pairs for s in buckets.values()),
                  round(sum(s.shadow_delta_sum for s in buckets.values()), 6))
            for arm, buckets in ledger.buckets.items() if arm.endswith("|pairs")}


@pytest.mark.parametrize("times", [1, 3])
def test_replaying_every_partial_changes_nothing(times: int) -> None:
    store = Store()
    ledger = Ledger(SCOPE, store, BUCKET)
    partials = [cells([("1|production", T0, row(i)) for i in range(j, j + 5)])
                for j in range(0, 50, 5)]
    for partial in partials:
        ledger.apply(partial, horizon=0)
    expected = fingerprint(ledger)
    for _ in range(times):
        for partial in partials:
            assert ledger.apply(partial, horizon=0).counted == 0
    assert fingerprint(ledger) == expected


def test_entries_stay_small_however_big_the_bucket() -> None:
    from relctl.domain.ledger import FANOUT, MERGE_BELOW_ROWS

    store = Store()
    ledger = Ledger(SCOPE, store, BUCKET)
    for start in range(0, 6000, 100):
        ledger.apply(cells([("1|production", T0, row(i, score=50.0))
                            for i in range(start, start + 100)]), horizon=0)
    assert ledger.buckets["1|production"][T0].count == 6000
    assert max(len(value) for value in store.values()) < 400_000
    assert ledger.entry_count() <= 6000 // MERGE_BELOW_ROWS + FANOUT * 4
