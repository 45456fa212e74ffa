"""The hops of one guard decision, in path order (breach -> resolve shows the rollback).

Named once here so the worker, the control plane and ``bench/bench_latency.py --hops`` agree
on what each timestamp means; see :mod:`relctl.adapters.hop_trace`.
"""

from enum import StrEnum


class Hop(StrEnum):
    """Where one breach is at a given instant. Keyed by task up to ``PARTIAL_SENT``, by rollout
    from ``STAGE2_RECEIVED`` to ``COMMAND_EXECUTED``, by task again for ``READ_MODEL``."""

    PRODUCED = "produced"  # the broker acknowledged the breaching evaluation (the benchmark)
    STAGE1_BATCH = "stage1_batch"  # stage 1's take_events handed over the batch holding it
    PARTIAL_SENT = "partial_sent"  # stage 1 handed the task's partial to the producer
    STAGE2_RECEIVED = "stage2_received"  # stage 2 got the partial that led to the decision
    DECIDED = "decided"  # stage 2 judged it (table written, decision made)
    DECISION_SENT = "decision_sent"  # the command handed to the worker's producer
    DECISION_ACKED = "decision_acked"  # the broker acknowledged the command
    COMMAND_CONSUMED = "command_consumed"  # the control plane's command consumer fetched it
    COMMAND_EXECUTED = "command_executed"  # the rollback event is committed to PostgreSQL
    READ_MODEL = "read_model"  # the resolution read model's in-memory copy has it
    RESOLVED = "resolved"  # /v1/resolve returned the baseline (the benchmark)
