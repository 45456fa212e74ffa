"""A control plane (relay + command consumer) in a thread and guard workers as subprocesses.

They live in bench.harness (benchmarks must not import tests/); re-exported here for the tests.
"""

import asyncio
from typing import Any

from relctl.adapters.producer import EvaluationProducer

from bench.harness import (
    PROMPTS,
    ControlPlaneThread,
    WorkerProcess,
    evaluation,
    read_metric,
    rollout_with_guard,
    rule,
)

# Re-exported: the integration tests import them from here.
__all__ = ["PROMPTS", "ControlPlaneThread", "WorkerProcess", "evaluation", "produce",
           "read_metric", "rollout_with_guard", "rule"]


def produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    async def send() -> None:
        async with EvaluationProducer(bootstrap, topic=topic) as producer:
            await producer.send_batch(records)
            await producer.flush()
    asyncio.run(send())
