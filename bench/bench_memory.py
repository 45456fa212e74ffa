"""Worker memory as the number of active (release, tenant) windows grows.

Run: .venv/bin/python -m bench.bench_memory

Feeds the worker's own stage-1 and stage-2 components (the code the Faust agents call) with
evaluations spread over T tenants and R releases, each (release, tenant) getting one evaluation
a minute for 15 minutes (so every per-tenant window holds its steady-state three five-minute
buckets), and reports the Python heap they hold (tracemalloc) and the process RSS, per active
window. No broker is involved: the figure is the state a worker keeps, not Faust's buffers.

Each size is measured twice in the same run, with de-duplication on (the product) and off
(``Guard(dedup=False)``: no identities kept), so the difference is what de-duplication costs per
(release, tenant) window: the 64-bit identities in the stage-2 entries (and their in-memory
set), and stage 1's per-tumbling-window identity sets for the tenant windows.
"""

import gc
import resource
import tracemalloc
from datetime import UTC, datetime, timedelta

from relctl.domain.alerts import DEFAULT_RULES
from relctl.domain.evaluation import EvaluationRecord
from relctl.streams.attribute import Attributor
from relctl.streams.control_index import ControlIndex
from relctl.streams.guard import DictStore, Guard

from bench.harness import evaluation


def measure(tenants: int, releases: int, minutes: int = 15,
            dedup: bool = True) -> tuple[int, float, int]:
    gc.collect()
    tracemalloc.start()
    index = ControlIndex()
    attributor = Attributor(index)
    guard = Guard(index, DictStore(), DEFAULT_RULES, dedup=dedup)
    start = datetime.now(UTC) - timedelta(minutes=minutes)
    template = evaluation("mem", 1, 0)
    call = 0
    for step in range(minutes):
        at = (start + timedelta(minutes=step)).isoformat()
        batch = []
        for tenant in range(tenants):
            for release in range(1, releases + 1):
                call += 1
                batch.append(EvaluationRecord.from_mapping({
                    **template, "tenant": f"t{tenant}", "release": release,
                    "call_id": f"c{call}", "occurred_at": at, "latency_ms": 800 + call % 900}))
        for partial in attributor.process(batch):
            guard.handle(partial, datetime.now(UTC).timestamp())
        if not dedup:
            attributor.tenant_seen.clear()  # the stage-1 identities too
        del batch
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    windows = len(attributor.tenant_windows)
    return windows, current / 1024 / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    print(f"{'windows':>8} {'heap MiB':>9} {'KiB/window':>11} {'no-dedup KiB/window':>20} "
          f"{'dedup KiB/window':>17} {'max RSS MiB':>12}")
    for tenants, releases in ((100, 2), (500, 2), (1000, 2), (2500, 2), (5000, 2)):
        _, plain, _ = measure(tenants, releases, dedup=False)
        windows, heap, rss = measure(tenants, releases)
        per, per_plain = heap * 1024 / windows, plain * 1024 / windows
        print(f"{windows:8d} {heap:9.1f} {per:11.2f} {per_plain:20.2f} {per - per_plain:17.2f} "
              f"{rss / 1024:12.0f}")


if __name__ == "__main__":
    main()
