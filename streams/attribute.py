"""Stage 1: fold evaluations into per-batch partial aggregates, one per task.

Stage 1 deliberately does *not* decide which rollout arm an evaluation belongs to: an evaluation
can reach the worker before the control event that started its rollout does (the producer
resolved the candidate from PostgreSQL a moment before the relay published the start). Instead
it keeps stats per (release, produced arm) and time bucket; stage 2, keyed by task, maps
releases to the rollout's baseline and candidate when it evaluates, with the control state it
has at that moment, so a late control event changes nothing that was counted.
"""

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson
from relctl.domain.metrics import WindowStats
from relctl.streams.control_index import ControlIndex

BUCKET_SECONDS = 5.0
SHADOW_PAIR_CAPACITY = 100_000
# Per-tenant windows are for drill-down, not for guards: five-minute tumbling windows, the
# last three kept, cost a fraction of the guards' five-second buckets.
TENANT_BUCKET_SECONDS = 300.0
TENANT_WINDOW_SECONDS = 900.0
PAIRS = "pairs"
COHORT_MEASURES = ("count", "llm_error", "timeout", "transcription_error", "fallback",
                   "schema_invalid", "human_review")


def bucket_of(epoch: float, size: float = BUCKET_SECONDS) -> int:
    return int(epoch // size * size)


def task_scope(task: str) -> str:
    return f"task|{task}"


def arm_key(release: int, arm: str) -> str:
    """Stats key inside a task scope: ``<release>|<production|shadow|sandbox|pairs>``."""
    return f"{release}|{arm}"


@dataclass
class Partial:
    """Stats of one task from one batch: arm key -> bucket start -> WindowStats."""

    scope: str
    arms: dict[str, dict[int, WindowStats]] = field(default_factory=dict)
    watermark: float = 0.0
    evaluations: int = 0

    def stats(self, arm: str, bucket: int) -> WindowStats:
        buckets = self.arms.setdefault(arm, {})
        stats = buckets.get(bucket)
        if stats is None:
            stats = buckets[bucket] = WindowStats()
        return stats

    def encode(self) -> bytes:
        return orjson.dumps({
            "scope": self.scope, "watermark": self.watermark, "evaluations": self.evaluations,
            "arms": {arm: {str(b): s.to_json() for b, s in buckets.items()}
                     for arm, buckets in self.arms.items()},
        })

    @classmethod
    def decode(cls, raw: bytes) -> "Partial":
        data = orjson.loads(raw)
        partial = cls(scope=data["scope"], watermark=float(data["watermark"]),
                      evaluations=int(data.get("evaluations", 0)))
        for arm, buckets in data["arms"].items():
            partial.arms[arm] = {int(b): WindowStats.from_json(s) for b, s in buckets.items()}
        return partial


class Attributor:
    """Turns a batch of validated evaluations into one partial per task.

    It also keeps, in memory, windowed stats per (task, release, tenant, cohort, arm) for the
    tenants this worker owns, and pairs the production and shadow runs of the same call (same
    tenant, hence the same partition and worker).
    """

    def __init__(self, index: ControlIndex, bucket_seconds: float = BUCKET_SECONDS) -> None:
        self.index = index
        self.bucket_seconds = bucket_seconds
        self.shadow_pending: OrderedDict[tuple[str, str, str], tuple[str, int, float]] = \
            OrderedDict()
        self.tenant_windows: dict[tuple[str, int, str, str, str], dict[int, WindowStats]] = {}

    def process(self, records: list[Any], now: float | None = None) -> list[Partial]:
        """Each evaluation is folded once, into batch-local (task, release, tenant, arm,
        bucket) stats; the task partials and tenant windows are merges of those."""
        now = time.time() if now is None else now
        partials: dict[str, Partial] = {}
        local: dict[tuple[str, int, str, str, int], WindowStats] = {}
        latest: dict[str, float] = {}
        for record in records:
            occurred = min(record.occurred_at.timestamp(), now)
            bucket = bucket_of(occurred, self.bucket_seconds)
            key = (record.task, record.release, record.tenant, record.arm, bucket)
            stats = local.get(key)
            if stats is None:
                stats = local[key] = WindowStats()
            stats.add(record)
            if occurred > latest.get(record.task, 0.0):
                latest[record.task] = occurred
            if record.score is not None and record.arm != "sandbox":
                self._pair(record, bucket, partials)
        for (task, release, tenant, arm, bucket), stats in local.items():
            scope = task_scope(task)
            partial = partials.get(scope)
            if partial is None:
                partial = partials[scope] = Partial(scope)
            partial.stats(arm_key(release, arm), bucket).merge(stats)
            partial.evaluations += stats.count
            partial.watermark = max(partial.watermark, latest[task])
            cohort = self.index.cohorts.get(tenant, "general")
            windows = self.tenant_windows.setdefault((task, release, tenant, cohort, arm), {})
            tumbling = bucket_of(bucket, TENANT_BUCKET_SECONDS)
            if tumbling in windows:
                windows[tumbling].merge(stats)
            else:
                windows[tumbling] = stats
        return list(partials.values())

    def _pair(self, record: Any, bucket: int, partials: dict[str, Partial]) -> None:
        """Pair the production and shadow evaluations of one call; the score delta (shadow
        minus production) is kept under the shadow release's ``pairs`` arm."""
        key = (record.tenant, record.task, record.call_id)
        other = self.shadow_pending.pop(key, None)
        if other is None or other[0] == record.arm:
            self.shadow_pending[key] = (record.arm, record.release, float(record.score))
            while len(self.shadow_pending) > SHADOW_PAIR_CAPACITY:
                self.shadow_pending.popitem(last=False)
            return
        if record.arm == "shadow":
            shadow_release, delta = record.release, record.score - other[2]
        else:
            shadow_release, delta = other[1], other[2] - record.score
        scope = task_scope(record.task)
        partial = partials.get(scope) or partials.setdefault(scope, Partial(scope))
        partial.stats(arm_key(shadow_release, PAIRS), bucket).add_shadow_pair(delta)

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
        return len(self.tenant_windows)
