"""Stage 1: fold evaluations into per-batch partial aggregates, one per task.

Stage 1 ships one compact evidence row per evaluation (its identity hash and what the window
statistics read), not pre-folded statistics: stage 2 counts each identity once, and only rows
can be filtered one by one (see :mod:`relctl.domain.ledger` for why the de-duplication state
lives at stage 2, and :mod:`relctl.domain.dedup` for the identity). Shadow pairs are made at
stage 2 too, where their waiting halves are part of the changelogged state.

Stage 1 deliberately does *not* decide which rollout arm an evaluation belongs to: an evaluation
can reach the worker before the control event that started its rollout does (the producer
resolved the candidate from PostgreSQL a moment before the relay published the start). Instead
it keeps stats per (release, produced arm) and time bucket; stage 2, keyed by task, maps
releases to the rollout's baseline and candidate when it evaluates, with the control state it
has at that moment, so a late control event changes nothing that was counted.
"""

import time
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import orjson
from relctl.domain.dedup import Evidence
from relctl.domain.ledger import PAIRS
from relctl.domain.metrics import WindowStats
from relctl.streams.control_index import ControlIndex

BUCKET_SECONDS = 5.0
# Rows per partial message: a row is ~100 bytes on the wire, so a partial stays far below a
# broker's default 1 MiB message limit however big stage 1's batch was.
MAX_PARTIAL_ROWS = 2000
# Per-tenant windows are for drill-down, not for guards: five-minute tumbling windows, the
# last three kept, cost a fraction of the guards' five-second buckets.
TENANT_BUCKET_SECONDS = 300.0
TENANT_WINDOW_SECONDS = 900.0
COHORT_MEASURES = ("count", "llm_error", "timeout", "transcription_error", "fallback",
                   "schema_invalid", "human_review")


def bucket_of(epoch: float, size: float = BUCKET_SECONDS) -> int:
    return int(epoch // size * size)


def task_scope(task: str) -> str:
    return f"task|{task}"


__all__ = ["BUCKET_SECONDS", "MAX_PARTIAL_ROWS", "PAIRS", "Attributor", "Partial", "arm_key",
           "bucket_of", "task_scope"]


def arm_key(release: int, arm: str) -> str:
    """Stats key inside a task scope: ``<release>|<production|shadow|sandbox|pairs>``."""
    return f"{release}|{arm}"


@dataclass
class Partial:
    """What one batch holds for one task.

    ``rows``: arm key -> bucket start -> evidence rows, one per evaluation (what stage 1
    sends; stage 2 counts each identity once). ``arms``: arm key -> bucket start -> pre-folded
    WindowStats, counted as they are, without identities (tests and tools that build
    windows directly). ``violations``: release -> records refused for breaking the release's
    trace contract (stage 2 raises the alert)."""

    scope: str
    arms: dict[str, dict[int, WindowStats]] = field(default_factory=dict)
    watermark: float = 0.0
    evaluations: int = 0
    rows: dict[str, dict[int, list[Evidence]]] = field(default_factory=dict)
    violations: dict[int, int] = field(default_factory=dict)
    # False on all but the last message of a split partial: stage 2 judges once per batch.
    final: bool = True

    def stats(self, arm: str, bucket: int) -> WindowStats:
        buckets = self.arms.setdefault(arm, {})
        stats = buckets.get(bucket)
        if stats is None:
            stats = buckets[bucket] = WindowStats()
        return stats

    def add(self, arm: str, bucket: int, row: Evidence) -> None:
        self.rows.setdefault(arm, {}).setdefault(bucket, []).append(row)

    def folded(self) -> dict[str, dict[int, WindowStats]]:
        """Rows and pre-folded stats as statistics per (arm, bucket), duplicates included."""
        result: dict[str, dict[int, WindowStats]] = {
            arm: {b: WindowStats().merge(s) for b, s in buckets.items()}
            for arm, buckets in self.arms.items()}
        for arm, buckets in self.rows.items():
            for bucket, rows in buckets.items():
                stats = result.setdefault(arm, {}).setdefault(bucket, WindowStats())
                for row in rows:
                    stats.add(row)
        return result

    def split(self, max_rows: int = MAX_PARTIAL_ROWS) -> list["Partial"]:
        """This partial as messages of at most ``max_rows`` rows each (the first carries the
        pre-folded stats and the violations; each carries the watermark; only the last is
        ``final``, so the guard judges the batch once, after all of it is counted)."""
        total = sum(len(rows) for buckets in self.rows.values() for rows in buckets.values())
        if total <= max_rows:
            return [self]
        parts = [Partial(self.scope, arms=self.arms, watermark=self.watermark,
                         violations=self.violations)]
        room = max_rows
        for arm, buckets in self.rows.items():
            for bucket, rows in buckets.items():
                start = 0
                while start < len(rows):
                    if room == 0:
                        parts[-1].final = False
                        parts.append(Partial(self.scope, watermark=self.watermark))
                        room = max_rows
                    chunk = rows[start:start + room]
                    parts[-1].rows.setdefault(arm, {}).setdefault(bucket, []).extend(chunk)
                    parts[-1].evaluations += len(chunk)
                    start += len(chunk)
                    room -= len(chunk)
        return parts

    def encode(self) -> bytes:
        return orjson.dumps({
            "scope": self.scope, "watermark": self.watermark, "evaluations": self.evaluations,
            "arms": {arm: {str(b): s.to_json() for b, s in buckets.items()}
                     for arm, buckets in self.arms.items()},
            "columns": {arm: {str(b): _columns(rows) for b, rows in buckets.items()}
                        for arm, buckets in self.rows.items()},
            "violations": {str(release): n for release, n in self.violations.items()},
            "final": self.final,
        })

    @classmethod
    def decode(cls, raw: bytes) -> "Partial":
        data = orjson.loads(raw)
        partial = cls(scope=data["scope"], watermark=float(data["watermark"]),
                      evaluations=int(data.get("evaluations", 0)))
        for arm, buckets in data["arms"].items():
            partial.arms[arm] = {int(b): WindowStats.from_json(s) for b, s in buckets.items()}
        for arm, buckets in data.get("columns", {}).items():
            name = arm.partition("|")[2]
            partial.rows[arm] = {int(b): _rows(name, columns) for b, columns in buckets.items()}
        for arm, buckets in data.get("rows", {}).items():  # the row-wise form of earlier workers
            name = arm.partition("|")[2]
            partial.rows[arm] = {int(b): [Evidence.decode(name, row) for row in rows]
                                 for b, rows in buckets.items()}
        partial.violations = {int(r): int(n) for r, n in data.get("violations", {}).items()}
        partial.final = bool(data.get("final", True))
        return partial


_ARM = Evidence._fields.index("arm")
_WIDTH = len(Evidence._fields)


def _columns(rows: list[Evidence]) -> list[tuple[Any, ...]]:
    """A cell's rows on the wire: one JSON array per field (without ``arm``, which the cell
    names), which encodes and decodes several times faster than one array per row."""
    columns = list(zip(*rows, strict=True))
    del columns[_ARM]
    return columns


def _rows(arm: str, columns: list[list[Any]]) -> list[Evidence]:
    if len(columns) != _WIDTH - 1 or len({len(column) for column in columns}) > 1:
        raise ValueError(f"evidence columns: expected {_WIDTH - 1} of equal length")
    make = Evidence._make
    return [make(values) for values in zip(*columns[:_ARM], repeat(arm, len(columns[0])),
                                           *columns[_ARM:], strict=True)]


class Attributor:
    """Turns a batch of validated evaluations into one partial per task.

    It also keeps, in memory, windowed stats per (task, release, tenant, cohort, arm) for the
    tenants this worker owns (drill-down, not guards), counting each identity once per
    tumbling window: those windows and the identities they hold live and die together.
    """

    def __init__(self, index: ControlIndex, bucket_seconds: float = BUCKET_SECONDS) -> None:
        self.index = index
        self.bucket_seconds = bucket_seconds
        self.tenant_windows: dict[tuple[str, int, str, str, str], dict[int, WindowStats]] = {}
        self.tenant_seen: dict[int, set[int]] = {}

    def process(self, records: list[Any], now: float | None = None) -> list[Partial]:
        """One evidence row per evaluation into its task's partial; each evaluation not yet
        in this worker's tenant windows is folded once into batch-local (task, release,
        tenant, arm, tumbling window) rows, which are folded into the tenant windows."""
        now = time.time() if now is None else now
        size = self.bucket_seconds
        partials: dict[str, Partial] = {}
        cells: dict[tuple[str, int, str, int], list[Evidence]] = {}
        local: dict[tuple[str, int, str, str, int], list[Evidence]] = {}
        seen_by_bucket: dict[int, set[int]] = {}
        for record in records:
            occurred = min(record.occurred_at.timestamp(), now)
            bucket = int(occurred // size * size)  # bucket_of, inlined: once per evaluation
            task, release, arm = record.task, record.release, record.arm
            partial = partials.get(task)
            if partial is None:
                partial = partials[task] = Partial(task_scope(task))
            row = Evidence.of(record)
            rows = cells.get((task, release, arm, bucket))
            if rows is None:
                rows = cells[(task, release, arm, bucket)] = partial.rows.setdefault(
                    arm_key(release, arm), {}).setdefault(bucket, [])
            rows.append(row)
            partial.evaluations += 1
            partial.watermark = max(partial.watermark, occurred)
            seen = seen_by_bucket.get(bucket)
            if seen is None:
                seen = seen_by_bucket[bucket] = self.tenant_seen.setdefault(
                    bucket_of(bucket, TENANT_BUCKET_SECONDS), set())
            if row.key in seen:
                continue
            seen.add(row.key)
            tumbling = bucket_of(bucket, TENANT_BUCKET_SECONDS)
            window = local.get((task, release, record.tenant, arm, tumbling))
            if window is None:
                local[(task, release, record.tenant, arm, tumbling)] = [row]
            else:
                window.append(row)
        for (task, release, tenant, arm, tumbling), rows in local.items():
            cohort = self.index.cohorts.get(tenant, "general")
            windows = self.tenant_windows.setdefault((task, release, tenant, cohort, arm), {})
            stats = windows.get(tumbling)
            if stats is None:
                stats = windows[tumbling] = WindowStats()
            stats.add_many(rows)
        return list(partials.values())

    def cohort_totals(self) -> dict[tuple[str, int, str], dict[str, int]]:
        """Counts per (task, release, cohort) over the tenant windows this worker holds: what
        a dashboard sums across workers (rates are ratios of these sums)."""
        totals: dict[tuple[str, int, str], dict[str, int]] = {}
        for (task, release, _tenant, cohort, _arm), windows in self.tenant_windows.items():
            entry = totals.setdefault((task, release, cohort), dict.fromkeys(COHORT_MEASURES, 0))
            for stats in windows.values():
                for measure in COHORT_MEASURES:
                    entry[measure] += int(getattr(stats, measure))
        return totals

    def expire(self, now: float) -> int:
        """Drop tenant windows older than TENANT_WINDOW_SECONDS; return how many remain."""
        horizon = now - TENANT_WINDOW_SECONDS
        for key in list(self.tenant_windows):
            windows = self.tenant_windows[key]
            for bucket in [b for b in windows if b + TENANT_BUCKET_SECONDS <= horizon]:
                del windows[bucket]
            if not windows:
                del self.tenant_windows[key]
        for tumbling in [b for b in self.tenant_seen if b + TENANT_BUCKET_SECONDS <= horizon]:
            del self.tenant_seen[tumbling]
        return len(self.tenant_windows)
