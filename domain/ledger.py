"""The guard's evidence for one scope: window statistics and the identities they count, together.

Why the de-duplication state lives here, beside the statistics it guards
------------------------------------------------------------------------
Delivery is at least once on every hop and the broker offers no transactions (Tansu has no
idempotent producer), so each place that could remember "already counted" must be checked
against every crash point:

- Stage 1 (tenant-keyed evaluations) sends partials and only later commits its input offsets;
  Faust flushes its producer before it commits (``Consumer._commit_offsets``), so after a crash
  the records since the last commit are processed and sent *again*, never lost. A de-dup set
  kept at stage 1 would have to be written with the partial atomically, and it cannot be:
  written first, a crash before the partial is flushed loses the evaluations (the replay finds
  them "seen"); written after, a crash in between counts them twice.
- Stage 2 (task-keyed partials) writes to a changelogged table and commits its input later, so
  after a crash it sees the same partials (and stage 1's re-sent ones) again.

So the set lives in stage 2's table, *in the same entry as the statistics it guards*: one entry
per (partial, time bucket) holds, per arm, the statistics of the rows it folded and the 64-bit
identities of exactly those rows, and the shadow-pair halves it saw. One table entry is one
changelog record, so the statistics and their identities cannot diverge: after any crash, an
evaluation is in the recovered state with its identity or not at all, and its redelivery is
then skipped or counted, exactly once. Stage 1 ships one row per evaluation (not a pre-folded
aggregate) because only rows can be filtered one by one.

Entries are written once and never updated, so a write costs the size of the partial, not of
the bucket. Small entries of one bucket are merged into bigger ones as they accumulate (four
of one size class into one of the next, so each identity is rewritten a few times at most,
and no entry grows past ~4,000 rows, i.e. ~250 kB, whatever the traffic): the merged entry
is written under the key of the smallest of them, then the others are deleted.
Entries therefore form a laminar family (any two are disjoint, or one contains the other), and
each is named by its smallest identity; loading takes entries largest first and skips one whose
name is already a loaded identity, which is exactly an entry left behind by a merge that a crash
interrupted.

Shadow pairs: the production and shadow runs of one call are scored by different releases of
the same task, so both reach the same stage-2 scope; a half waiting for its other half is part
of the entry that counted it, so it survives restarts and rebalances like the statistics do.
"""

from __future__ import annotations

import base64
import random
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson
from relctl.domain.dedup import Evidence, pair_key
from relctl.domain.metrics import WindowStats

PAIRS = "pairs"
FANOUT = 4
# Entries this big are not merged further, so none exceeds FANOUT times this many rows (about
# 60 bytes each: an identity and, for scored runs, a pairing half), far below a broker's 1 MiB.
MERGE_BELOW_ROWS = 1024
# Small entries of this many of the newest buckets are also kept in memory as built, so merging
# them reads no entry back from the store (parsing their sketches was most of a merge's cost);
# older buckets rarely get a new entry, and their merges read the store as after a restart.
RECENT_BUCKETS = 3
_MASK = (1 << 64) - 1


class EntryStore(Protocol):
    """The key-value table the entries live in (a changelogged Faust table in the worker)."""

    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes) -> None: ...
    def delete(self, key: str) -> None: ...
    def keys(self, prefix: str) -> Iterable[str]: ...


class Half(NamedTuple):
    arm: str
    release: int
    score: float
    bucket: int


@dataclass
class Applied:
    """What one partial did: rows counted, duplicates skipped, pairs made, rows too old."""

    counted: int = 0
    duplicates: int = 0
    pairs: int = 0
    expired: int = 0


@dataclass
class _Draft:
    """One entry being built: per arm the stats and identities of the rows it counts."""

    stats: dict[str, WindowStats] = field(default_factory=dict)
    keys: dict[str, list[int]] = field(default_factory=dict)
    halves: list[list[Any]] = field(default_factory=list)
    rows: int = 0

    def cell(self, arm: str) -> tuple[WindowStats, list[int]]:
        stats = self.stats.get(arm)
        if stats is None:
            stats = self.stats[arm] = WindowStats()
            self.keys[arm] = []
        return stats, self.keys[arm]


def _level(rows: int) -> int:
    return rows.bit_length() // 2


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _pack(keys: Sequence[int]) -> str:
    return base64.b64encode(array("q", keys).tobytes()).decode()


def _unpack(text: str) -> array[int]:
    keys = array("q")
    keys.frombytes(base64.b64decode(text))
    return keys


class Ledger:
    """Buckets of window statistics of one scope, each evaluation counted once.

    ``buckets`` maps an arm key (``<release>|<arm>``) to bucket start to merged WindowStats;
    it is what guards and alerts read. ``dedup=False`` skips the identity check and keeps no
    identities (for the throughput benchmark only: a crash can then double-count)."""

    def __init__(self, scope: str, store: EntryStore, bucket_seconds: float,
                 dedup: bool = True) -> None:
        self.scope = scope
        self.store = store
        self.bucket_seconds = bucket_seconds
        self.dedup = dedup
        self.buckets: dict[str, dict[int, WindowStats]] = {}
        self._keys: set[int] = set()
        self._bucket_keys: dict[int, array[int]] = {}
        self._entries: dict[int, dict[int, int]] = {}  # bucket -> entry name -> rows
        self._pending: dict[int, Half] = {}
        self._bucket_calls: dict[int, list[int]] = {}
        # bucket -> entry name -> the entry as written (small entries of recent buckets only)
        self._recent: dict[int, dict[int, _Draft]] = {}

    # ---- reading the store ----------------------------------------------------------------

    def _name(self, bucket: int, ref: int) -> str:
        return f"{self.scope}|e|{bucket}|{ref & _MASK:016x}"

    def load(self) -> None:
        """Rebuild from the store (after a restart or rebalance), skipping merged-away entries."""
        prefix = f"{self.scope}|e|"
        found = []
        for name in list(self.store.keys(prefix)):
            raw = self.store.get(name)
            if raw:
                found.append((name, orjson.loads(raw)))
        found.sort(key=lambda item: -int(item[1]["n"]))
        halves: list[tuple[int, list[Any]]] = []
        for name, data in found:
            ref = _signed(int(name.rsplit("|", 1)[1], 16))
            if self.dedup and ref in self._keys:
                self.store.delete(name)  # contained in a bigger entry a merge wrote
                continue
            bucket = int(data["b"])
            for arm, cell in data["a"].items():
                self._merge_stats(arm, bucket, WindowStats.from_json(cell["s"]))
                keys = _unpack(cell["k"])
                self._keys.update(keys)
                self._bucket_keys.setdefault(bucket, array("q")).extend(keys)
            halves += [(bucket, half) for half in data["h"]]
            self._entries.setdefault(bucket, {})[ref] = int(data["n"])
        self._restore_pending(halves)

    def _restore_pending(self, halves: list[tuple[int, list[Any]]]) -> None:
        """A call is still waiting when only one arm of it was seen."""
        by_call: dict[int, list[Half]] = {}
        for bucket, (call, arm, release, score) in halves:
            by_call.setdefault(int(call), []).append(Half(arm, int(release), score, bucket))
            self._bucket_calls.setdefault(bucket, []).append(int(call))
        for call, seen in by_call.items():
            if len({half.arm for half in seen}) == 1:
                self._pending[call] = max(seen, key=lambda half: half.bucket)

    def _merge_stats(self, arm: str, bucket: int, stats: WindowStats, *,
                     own: bool = True) -> None:
        """Fold ``stats`` into the bucket; ``own=False``: the caller keeps ``stats`` (a new
        bucket then starts from a copy, so the two never share a sketch)."""
        buckets = self.buckets.setdefault(arm, {})
        mine = buckets.get(bucket)
        if mine is None:
            buckets[bucket] = stats if own else WindowStats().merge(stats)
        else:
            mine.merge(stats)

    # ---- counting -------------------------------------------------------------------------

    def apply(self, cells: Mapping[str, Mapping[int, Sequence[Evidence]]],
              horizon: float) -> Applied:
        """Count the rows not seen before (arm key -> bucket -> rows); buckets that end at or
        before ``horizon`` are too old to matter and are not counted."""
        result = Applied()
        drafts: dict[int, _Draft] = {}
        # Earlier buckets first: within one partial, the later run of a call completes its pair.
        ordered = sorted((bucket, arm, rows) for arm, buckets in cells.items()
                         for bucket, rows in buckets.items())
        for bucket, arm, rows in ordered:
            if bucket + self.bucket_seconds <= horizon:
                result.expired += len(rows)
                continue
            release = int(arm.partition("|")[0])
            draft = drafts.get(bucket)
            if draft is None:
                draft = drafts[bucket] = _Draft()
            stats, keys = draft.cell(arm)
            if self._all_new(rows):
                self._count_all(rows, release, bucket, (stats, keys), draft, result)
                continue
            for row in rows:
                if self.dedup:
                    if row.key in self._keys:
                        result.duplicates += 1
                        continue
                    self._keys.add(row.key)
                    keys.append(row.key)
                stats.add(row)
                draft.rows += 1
                result.counted += 1
                if row.call is not None and row.score is not None:
                    self._pair(row, release, bucket, draft, result)
        for bucket, draft in drafts.items():
            if draft.rows:
                self._write(bucket, draft)
        return result

    def _all_new(self, rows: Sequence[Evidence]) -> bool:
        """No identity of ``rows`` is counted yet, nor repeated among them: the usual case,
        which can be folded column by column (without de-duplication, trivially true)."""
        if not self.dedup:
            return True
        identities = [row.key for row in rows]
        return self._keys.isdisjoint(identities) and len(set(identities)) == len(identities)

    def _count_all(self, rows: Sequence[Evidence], release: int, bucket: int,
                   cell: tuple[WindowStats, list[int]], draft: _Draft, result: Applied) -> None:
        """Count every one of ``rows`` (:meth:`_all_new` said none is counted yet): exactly
        what counting them one by one does, with the statistics folded in one pass."""
        stats, keys = cell
        if self.dedup:
            identities = [row.key for row in rows]
            self._keys.update(identities)
            keys.extend(identities)
        stats.add_many(rows)
        draft.rows += len(rows)
        result.counted += len(rows)
        for row in rows:
            if row.call is not None and row.score is not None:
                self._pair(row, release, bucket, draft, result)

    def add_folded(self, cells: Mapping[str, Mapping[int, WindowStats]], horizon: float) -> None:
        """Count pre-folded statistics as they are (no identities, so no de-duplication):
        for windows built directly, e.g. by tests and tools, never for producer input."""
        drafts: dict[int, _Draft] = {}
        for arm, buckets in cells.items():
            for bucket, stats in buckets.items():
                if bucket + self.bucket_seconds > horizon:
                    draft = drafts.setdefault(bucket, _Draft())
                    draft.cell(arm)[0].merge(stats)
                    draft.rows += stats.count + stats.shadow_pairs
        for bucket, draft in drafts.items():
            self._write(bucket, draft)

    def _pair(self, row: Evidence, release: int, bucket: int, draft: _Draft,
              result: Applied) -> None:
        """Pair a call's production and shadow runs; the delta (shadow minus production) is
        counted under the shadow release's ``pairs`` arm, in the bucket of the later half."""
        assert row.call is not None
        assert row.score is not None
        draft.halves.append([row.call, row.arm, release, row.score])
        self._bucket_calls.setdefault(bucket, []).append(row.call)
        other = self._pending.get(row.call)
        if other is None or other.arm == row.arm:
            self._pending[row.call] = tuple.__new__(Half, (row.arm, release, row.score, bucket))
            return
        del self._pending[row.call]
        if row.arm == "shadow":
            shadow_release, delta = release, row.score - other.score
        else:
            shadow_release, delta = other.release, other.score - row.score
        stats, keys = draft.cell(f"{shadow_release}|{PAIRS}")
        if self.dedup:
            key = pair_key(row.call, shadow_release)
            if key in self._keys:
                return
            self._keys.add(key)
            keys.append(key)
        stats.add_shadow_pair(delta)
        draft.rows += 1
        result.pairs += 1

    # ---- writing the store ----------------------------------------------------------------

    @staticmethod
    def _encode(bucket: int, draft: _Draft) -> bytes:
        return orjson.dumps({
            "b": bucket, "n": draft.rows, "h": draft.halves,
            "a": {arm: {"s": stats.to_json(), "k": _pack(draft.keys[arm])}
                  for arm, stats in draft.stats.items()},
        })

    def _write(self, bucket: int, draft: _Draft) -> None:
        identities = [key for keys in draft.keys.values() for key in keys]
        ref = min(identities) if identities else random.getrandbits(64) - (1 << 63)
        self.store.set(self._name(bucket, ref), self._encode(bucket, draft))
        for arm, stats in draft.stats.items():
            self._merge_stats(arm, bucket, stats, own=False)
            if identities:
                self._bucket_keys.setdefault(bucket, array("q")).extend(draft.keys[arm])
        entries = self._entries.setdefault(bucket, {})
        entries[ref] = draft.rows
        self._remember(bucket, ref, draft)
        self._compact(bucket, entries)

    def _remember(self, bucket: int, ref: int, draft: _Draft) -> None:
        """Keep a small entry of a recent bucket as built (see RECENT_BUCKETS)."""
        if draft.rows >= MERGE_BELOW_ROWS:
            return
        recent = self._recent.get(bucket)
        if recent is None:
            if self._recent and bucket < min(self._recent):
                return  # older than every bucket kept: not worth keeping
            recent = self._recent[bucket] = {}
            while len(self._recent) > RECENT_BUCKETS:
                del self._recent[min(self._recent)]
        recent[ref] = draft

    def _entry(self, bucket: int, ref: int) -> _Draft | None:
        """A stored entry as a draft: from memory if it is recent, else read back."""
        recent = self._recent.get(bucket)
        draft = recent.pop(ref, None) if recent is not None else None
        if draft is not None:
            return draft
        raw = self.store.get(self._name(bucket, ref))
        if not raw:
            return None
        data = orjson.loads(raw)
        draft = _Draft(rows=int(data["n"]), halves=data["h"])
        for arm, cell in data["a"].items():
            draft.stats[arm] = WindowStats.from_json(cell["s"])
            draft.keys[arm] = list(_unpack(cell["k"]))
        return draft

    def _compact(self, bucket: int, entries: dict[int, int]) -> None:
        """Merge FANOUT entries of one size class into one entry of the next."""
        while True:
            levels: dict[int, list[int]] = {}
            for ref, rows in entries.items():
                if self.dedup and ref not in self._keys:
                    continue  # pre-folded stats: no identity names what a merge absorbed
                if rows >= MERGE_BELOW_ROWS:
                    continue  # big enough: merging it would only rewrite it again
                levels.setdefault(_level(rows), []).append(ref)
            full = next((refs for refs in levels.values() if len(refs) >= FANOUT), None)
            if full is None:
                return
            merged = _Draft()
            for ref in full:
                entry = self._entry(bucket, ref)
                if entry is None:
                    continue
                merged.rows += entry.rows
                merged.halves += entry.halves
                for arm, stats in entry.stats.items():
                    mine, keys = merged.cell(arm)
                    mine.merge(stats)
                    keys.extend(entry.keys[arm])
            target = min(full)
            self.store.set(self._name(bucket, target), self._encode(bucket, merged))
            for ref in full:
                if ref != target:
                    self.store.delete(self._name(bucket, ref))
                    del entries[ref]
            entries[target] = merged.rows
            self._remember(bucket, target, merged)

    def expire(self, horizon: float) -> None:
        """Forget buckets that end at or before ``horizon``: stats, identities and halves."""
        for bucket in [b for b in self._entries if b + self.bucket_seconds <= horizon]:
            for ref in self._entries.pop(bucket):
                self.store.delete(self._name(bucket, ref))
            self._recent.pop(bucket, None)
            keys = self._bucket_keys.pop(bucket, None)
            if keys is not None:
                self._keys.difference_update(keys)
            for call in self._bucket_calls.pop(bucket, []):
                half = self._pending.get(call)
                if half is not None and half.bucket == bucket:
                    del self._pending[call]
        for buckets in self.buckets.values():
            for bucket in [b for b in buckets if b + self.bucket_seconds <= horizon]:
                del buckets[bucket]

    # ---- introspection --------------------------------------------------------------------

    @property
    def identities(self) -> int:
        return len(self._keys)

    @property
    def pending_pairs(self) -> int:
        return len(self._pending)

    def pending(self) -> dict[int, tuple[str, int, float]]:
        """Halves waiting for their other half: call -> (arm, release, score)."""
        return {call: (h.arm, h.release, h.score) for call, h in self._pending.items()}

    def entry_count(self) -> int:
        return sum(len(entries) for entries in self._entries.values())
