"""Shared set-up for benchmarks: the same embedded services the product uses."""

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from relctl.infra.embedded import EmbeddedBroker, EmbeddedPostgres


@contextlib.contextmanager
def services(broker: bool = True) -> Iterator[tuple[str, str | None, Path]]:
    """(database url, broker bootstrap, scratch dir), all torn down afterwards."""
    with tempfile.TemporaryDirectory(prefix="relctl-bench-") as scratch:
        root = Path(scratch)
        postgres = EmbeddedPostgres(root / "pg")
        kafka = EmbeddedBroker(log_path=root / "broker.log") if broker else None
        try:
            url = postgres.start()
            bootstrap = kafka.start() if kafka else None
            yield url, bootstrap, root
        finally:
            if kafka:
                kafka.stop()
            postgres.stop()


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(latencies: list[float]) -> str:
    return (f"p50 {percentile(latencies, 50) * 1000:.2f} ms, "
            f"p99 {percentile(latencies, 99) * 1000:.2f} ms, "
            f"mean {statistics.fmean(latencies) * 1000:.2f} ms")


def wait_until(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
