"""The topics a guard worker reads and writes, declared on its Faust app."""

from dataclasses import dataclass
from typing import Any

from relctl.adapters.config import Settings


@dataclass(frozen=True)
class WorkerTopics:
    evaluations: Any  # producers' evaluations (stage 1 reads)
    partials: Any  # stage-1 partial aggregates keyed by task scope (stage 2 reads)
    commands: Any  # automatic decisions (the control plane consumes)
    alerts: Any
    dlq: Any
    verdicts: Any  # a rule's verdict changed (the control plane keeps the latest per rule)


def worker_topics(app: Any, settings: Settings) -> WorkerTopics:
    """Declare the worker's topics (raw bytes; the topics themselves are created up front)."""

    def topic(name: str, count: int) -> Any:
        return app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                         partitions=count, internal=False)

    partitions = settings.evaluation_partitions
    return WorkerTopics(
        evaluations=topic("evaluations", partitions),
        partials=topic("guard-partials", partitions),
        commands=topic("commands", settings.command_partitions),
        alerts=topic("alerts", 1),
        dlq=topic("dlq", 1),
        verdicts=topic("verdicts", settings.control_partitions),
    )

