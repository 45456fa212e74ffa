"""Stage 1: attribute evaluations to rollout arms and pre-aggregate them per batch."""

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

from relctl.domain.metrics import WindowStats
from relctl.projections.control_index import ControlIndex

BUCKET_SECONDS = 5.0
SHADOW_PAIR_CAPACITY = 100_000
TENANT_WINDOW_SECONDS = 900.0


def bucket_of(epoch: float, size: float = BUCKET_SECONDS) -> int:
    return int(epoch // size * size)


def release_scope(task: str, release: int) -> str:
    return f"release|{task}|{release}"


def rollout_scope(rollout_id: str) -> str:
    return f"rollout|{rollout_id}"


@dataclass
class Partial:
    """Stats of one scope from one batch: arm -> bucket start -> WindowStats."""

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
    """Turns a batch of validated evaluations into partial aggregates per scope.

    It also keeps, in memory, windowed stats per (task, release, tenant, cohort, arm) for the
    tenants this worker owns, and pairs the production and shadow runs of the same call.
    """

    def __init__(self, index: ControlIndex, bucket_seconds: float = BUCKET_SECONDS) -> None:
        self.index = index
        self.bucket_seconds = bucket_seconds
        self.shadow_pending: OrderedDict[tuple[str, str, str], tuple[str, float]] = OrderedDict()
        self.tenant_windows: dict[tuple[str, int, str, str, str], dict[int, WindowStats]] = {}

    def process(self, records: list[Any], now: float | None = None) -> list[Partial]:
        """Each evaluation is folded once, into its batch-local (tenant, arm, bucket) stats;
        scope partials and tenant windows are merges of those, so the per-evaluation cost does
        not grow with the number of scopes an evaluation counts towards."""
        now = time.time() if now is None else now
        partials: dict[str, Partial] = {}
        local: dict[tuple[Any, ...], tuple[WindowStats, float, list[str]]] = {}
        for record in records:
            occurred = min(record.occurred_at.timestamp(), now)
            bucket = bucket_of(occurred, self.bucket_seconds)
            attributed = self.index.arm(record.task, record.release, record.arm)
            arm = attributed[1] if attributed else record.arm
            key = (record.task, record.release, record.tenant, arm, bucket)
            entry = local.get(key)
            if entry is None:
                scopes = [release_scope(record.task, record.release)]
                if attributed:
                    scopes.append(rollout_scope(attributed[0].id))
                entry = local[key] = (WindowStats(), occurred, scopes)
            elif occurred > entry[1]:
                entry = local[key] = (entry[0], occurred, entry[2])
            entry[0].add(record)
            if attributed and record.score is not None:
                self._pair(record, attributed[0].id, arm, bucket, partials)
        for (task, release, tenant, arm, bucket), (stats, latest, scopes) in local.items():
            for scope in scopes:
                partial = partials.get(scope)
                if partial is None:
                    partial = partials[scope] = Partial(scope)
                partial.stats(arm, bucket).merge(stats)
                partial.evaluations += stats.count
                partial.watermark = max(partial.watermark, latest)
            cohort = self.index.cohorts.get(tenant, "general")
            windows = self.tenant_windows.setdefault((task, release, tenant, cohort, arm), {})
            if bucket in windows:
                windows[bucket].merge(stats)
            else:
                windows[bucket] = stats
        return list(partials.values())

    def _pair(self, record: Any, rollout_id: str, arm: str, bucket: int,
              partials: dict[str, Partial]) -> None:
        """Pair the production and shadow evaluations of one call (same tenant, so the same
        partition): the delta lands in the shadow arm's stats."""
        if arm not in ("shadow", "baseline"):
            return
        key = (record.tenant, record.task, record.call_id)
        other = self.shadow_pending.pop(key, None)
        if other is None or other[0] == arm:
            self.shadow_pending[key] = (arm, float(record.score))
            while len(self.shadow_pending) > SHADOW_PAIR_CAPACITY:
                self.shadow_pending.popitem(last=False)
            return
        shadow_score = record.score if arm == "shadow" else other[1]
        production_score = other[1] if arm == "shadow" else record.score
        scope = rollout_scope(rollout_id)
        partial = partials.get(scope) or partials.setdefault(scope, Partial(scope))
        partial.stats("shadow", bucket).add_shadow_pair(shadow_score - production_score)

    def expire(self, now: float) -> int:
        """Drop tenant windows older than TENANT_WINDOW_SECONDS; return how many remain."""
        horizon = now - TENANT_WINDOW_SECONDS
        for key in list(self.tenant_windows):
            windows = self.tenant_windows[key]
            for bucket in [b for b in windows if b < horizon]:
                del windows[bucket]
            if not windows:
                del self.tenant_windows[key]
        return len(self.tenant_windows)
