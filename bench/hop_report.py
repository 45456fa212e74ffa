"""Where one breach's time goes: per-hop figures for ``bench_latency --hops``.

The stack writes one JSON line per hop it passes (``relctl.adapters.hop_trace``); the benchmark
adds the first (the broker acknowledged the breaching evaluation) and the last (``/v1/resolve``
returned the baseline). Stage-1 hops and the read model are keyed by task and each trial's
breach is the task's last record, so the last mark counts; stage-2 and command hops are keyed by
rollout and the guard may re-send a decision, so the first mark counts.
"""

from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import orjson
from relctl.domain.hops import Hop

from bench.common import percentile

BY_TASK = {Hop.PRODUCED, Hop.STAGE1_BATCH, Hop.PARTIAL_SENT, Hop.READ_MODEL, Hop.RESOLVED}


@dataclass(frozen=True)
class TrialMarks:
    """What the benchmark itself knows of one trial."""

    task: str
    rollout: str
    produced: float
    resolved: float


def read_marks(path: Path) -> dict[tuple[str, str], list[float]]:
    marks: dict[tuple[str, str], list[float]] = defaultdict(list)
    if path.exists():
        for line in path.read_bytes().splitlines():
            entry = orjson.loads(line)
            marks[(entry["hop"], entry["key"])].append(float(entry["t"]))
    return marks


def hop_times(trial: TrialMarks, marks: dict[tuple[str, str], list[float]]
              ) -> dict[Hop, float]:
    """Each hop's instant for one trial (hops that left no mark are missing)."""
    found: dict[Hop, float] = {Hop.PRODUCED: trial.produced, Hop.RESOLVED: trial.resolved}
    for hop in Hop:
        if hop in found:
            continue
        key = trial.task if hop in BY_TASK else trial.rollout
        times = marks.get((hop.value, key))
        if times:
            found[hop] = max(times) if hop in BY_TASK else min(times)
    return found


def report(label: str, trials: list[TrialMarks], path: Path) -> list[str]:
    """Lines of a table: per hop, the time since the previous hop that left a mark (p50 /
    p90 / p99 / max over the trials, and how many trials it was seen in). A hop's instant is
    when its process noticed it: a busy event loop notices an acknowledgement late, so a hop
    can show a negative time."""
    marks = read_marks(path)
    deltas: dict[Hop, list[float]] = defaultdict(list)
    for trial in trials:
        times = hop_times(trial, marks)
        seen = [hop for hop in Hop if hop in times]
        for before, hop in pairwise(seen):
            deltas[hop].append(times[hop] - times[before])
    out = [f"{label}: per hop, ms since the previous hop ({len(trials)} trials)",
           f"    {'hop':18s} {'p50':>8s} {'p90':>8s} {'p99':>8s} {'max':>8s} {'n':>4s}"]
    for hop in list(Hop)[1:]:
        values = deltas[hop]
        if not values:
            out.append(f"    {hop.value:18s} (no marks)")
            continue
        out.append(f"    {hop.value:18s} " + " ".join(
            f"{percentile(values, pct) * 1000:8.1f}" for pct in (50, 90, 99)) +
            f" {max(values) * 1000:8.1f} {len(values):4d}")
    return out
