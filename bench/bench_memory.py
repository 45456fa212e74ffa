"""Worker memory as the number of active (release, tenant) windows grows.

Run: .venv/bin/python -m bench.bench_memory

Feeds the worker's own stage-1 and stage-2 components (the code the Faust agents call) with
evaluations spread over T tenants and R releases, each (release, tenant) getting one evaluation
a minute for 15 minutes (so every per-tenant window holds its steady-state three five-minute
buckets), and reports the Python heap they hold (tracemalloc) and the process RSS, per active
window. No broker is involved: the figure is the state a worker keeps, not Faust's buffers.
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

from tests.integration.guard_helpers import evaluation


def measure(tenants: int, releases: int, minutes: int = 15) -> tuple[int, float, int]:
    gc.collect()
    tracemalloc.start()
    index = ControlIndex()
    attributor = Attributor(index)
    guard = Guard(index, DictStore(), DEFAULT_RULES)
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
        del batch
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    windows = len(attributor.tenant_windows)
    return windows, current / 1024 / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    print(f"{'windows':>8} {'heap MiB':>9} {'KiB/window':>11} {'max RSS MiB':>12}")
    for tenants, releases in ((100, 2), (500, 2), (1000, 2), (2500, 2), (5000, 2)):
        windows, heap, rss = measure(tenants, releases)
        print(f"{windows:8d} {heap:9.1f} {heap * 1024 / windows:11.2f} {rss / 1024:12.0f}")


if __name__ == "__main__":
    main()
