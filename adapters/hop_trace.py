"""Per-hop timestamps of a guard decision, for ``bench/bench_latency.py --hops`` only.

With ``RELCTL_HOP_TRACE=<file>`` in its environment, each process of the stack appends one
JSON line per :class:`~relctl.domain.hops.Hop` it passes (``{"hop", "key", "t"}``, ``t`` in
epoch seconds: every process of a ``relctl up`` shares the machine's clock), so the benchmark
can say where the time between a breach and the rollback goes. Off (the default) it costs one
attribute test per call. The file is opened in append mode per line: lines of different
processes do not interleave (each is one small ``write``).
"""

import os
import time

import orjson
from relctl.domain.hops import Hop

ENV = "RELCTL_HOP_TRACE"
_path = os.environ.get(ENV) or None


def enabled() -> bool:
    return _path is not None


def mark(hop: Hop, key: str, at: float | None = None) -> None:
    """Record that ``key`` (a task or a rollout id) passed ``hop`` at ``at`` (default: now)."""
    if _path is None:
        return
    line = orjson.dumps({"hop": hop.value, "key": key, "t": time.time() if at is None else at})
    fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line + b"\n")
    finally:
        os.close(fd)
