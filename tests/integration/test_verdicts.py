"""Guard verdicts end to end: a real worker publishes each change of a rule's verdict on
relctl.verdicts, the control plane's consumer keeps the latest per rule in PostgreSQL (with its
Kafka offsets in the same transaction), and a for-duration completes without traffic."""

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import pytest
from relctl.adapters.cloudevents import verdict_record
from relctl.adapters.kafka import ensure_topics, make_producer, topic_specs
from relctl.adapters.verdicts import VerdictBoard, VerdictConsumer, VerdictRecord
from relctl.domain.verdicts import RuleVerdict
from relctl.infra.bootstrap import Runtime

from tests.conftest import wait_until
from tests.integration.conftest import Server
from tests.integration.guard_helpers import (
    ControlPlaneThread,
    WorkerProcess,
    evaluation,
    produce,
    rollout_with_guard,
    rule,
)

pytestmark = pytest.mark.integration


class VerdictThread:
    """The control plane's verdict consumer (as `relctl up` runs it), on a loop in a thread."""

    def __init__(self, runtime: Runtime) -> None:
        self.board = VerdictBoard(runtime.db)
        self.consumer = VerdictConsumer(self.board, runtime.settings)
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop.run_until_complete(self.consumer.run(self.stop_event))
        self.loop.close()

    def start(self) -> "VerdictThread":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(20)
        assert not self.thread.is_alive()


@pytest.fixture
def verdicts(runtime: Runtime, plane: ControlPlaneThread) -> Iterator[VerdictThread]:
    consumer = VerdictThread(runtime).start()
    yield consumer
    consumer.stop()


def latest(board: VerdictBoard, rollout: str) -> RuleVerdict | None:
    found = board.latest(rollout)
    return found[0] if found else None


def test_inconclusive_then_pending_then_failed_without_traffic_after_the_breach(
    runtime: Runtime, verdicts: VerdictThread, worker: WorkerProcess,
) -> None:
    rollout = rollout_with_guard(runtime, "verd", [rule(threshold=0.05, min_samples=50,
                                                         for_seconds=5)])
    worker.start()
    bootstrap, topic = runtime.settings.kafka_bootstrap or "", runtime.settings.topic("evaluations")
    board = verdicts.board
    produce(bootstrap, topic, [evaluation("verd", 2, i, error=True) for i in range(20)])
    few = wait_until(lambda: (v := latest(board, rollout)) is not None
                     and v.outcome == "Inconclusive" and v.samples >= 15 and v,
                     timeout=60, what="Inconclusive with the samples seen")
    # Published on change: within 10 % of min_samples (5) of the 20 the worker has.
    assert (few.samples <= 20, few.min_samples, few.value) == (True, 50, 1.0)
    assert few.message.endswith("50 needed")
    produce(bootstrap, topic, [evaluation("verd", 2, i, error=True) for i in range(20, 60)])
    pending = wait_until(lambda: (v := latest(board, rollout)) is not None
                         and v.outcome == "Pending" and v, timeout=60, what="Pending")
    assert pending.breach_since is not None and pending.decides_at is not None
    breach = datetime.fromisoformat(pending.breach_since)
    assert datetime.fromisoformat(pending.decides_at) == breach + timedelta(seconds=5)
    assert pending.time_left_seconds is not None and 0 <= pending.time_left_seconds <= 5
    assert pending.candidate.samples >= 50 and pending.baseline.samples == 0
    # No more traffic: the guard's timer completes the for-duration and decides.
    failed = wait_until(lambda: (v := latest(board, rollout)) is not None
                        and v.outcome == "Failed" and v, timeout=60, what="Failed")
    assert failed.breach_since == pending.breach_since
    wait_until(lambda: str(runtime.app.rollout(UUID(rollout)).state) == "RolledBack",
               timeout=60, what="rollback without traffic")
    assert worker.metric("relctl_worker_evaluations_processed_total") == 60
    history = runtime.app.history(UUID(rollout))
    assert history[-1].reason.startswith(
        "automatic: Rolled back because guard rule errors failed: llm_error_rate was 1, above "
        "the threshold 0.05, over 60 samples in the last 2 min, breached for ")
    assert verdicts.board.changes(rollout)["errors"] >= 3


def _verdict(rollout: str, rule_name: str, at: datetime, samples: int) -> dict[str, Any]:
    return RuleVerdict(
        rollout_id=rollout, rule=rule_name, metric="llm_error_rate", comparator=">",
        threshold=0.05, gate_class="RollbackTrigger", outcome="Inconclusive", value=0.5,
        samples=samples, min_samples=50, window_seconds=120.0, for_seconds=0.0,
        candidate={"value": 0.5, "samples": samples}, baseline={"value": None, "samples": 0},
        breach_since=None, at=at.isoformat()).model_dump(mode="json")


def test_the_verdict_consumer_survives_a_restart_without_losing_or_doubling(
    runtime: Runtime,
) -> None:
    settings = runtime.settings
    bootstrap, topic = settings.kafka_bootstrap or "", settings.topic("verdicts")
    asyncio.run(ensure_topics(bootstrap, topic_specs(settings)))
    rollouts = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(3)]
    start = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    ends: dict[int, int] = {}

    async def send(first: int, count: int, malformed: bool = False) -> None:
        producer = make_producer(bootstrap)
        await producer.start()
        try:
            for n in range(first, first + count):
                key, value, headers = verdict_record(_verdict(
                    rollouts[n % 3], "errors", start + timedelta(seconds=n), n))
                meta = await producer.send_and_wait(topic, key=key, value=value,
                                                    headers=headers)
                ends[meta.partition] = meta.offset + 1
            if malformed:
                meta = await producer.send_and_wait(topic, key=b"x", value=b"{not a verdict")
                ends[meta.partition] = meta.offset + 1
        finally:
            await producer.stop()

    consumer = VerdictThread(runtime).start()
    board = consumer.board
    asyncio.run(send(0, 25, malformed=True))
    wait_until(lambda: sum(sum(board.changes(r).values()) for r in rollouts) >= 1,
               timeout=30, what="first verdicts applied")
    consumer.stop()  # possibly in the middle of the stream
    asyncio.run(send(25, 26))
    restarted = VerdictThread(runtime).start()
    try:
        wait_until(lambda: board.positions(topic) == ends, timeout=30,
                   what="the consumer at the end of every partition")
    finally:
        restarted.stop()
    assert {r: board.changes(r) for r in rollouts} == {
        rollouts[0]: {"errors": 17}, rollouts[1]: {"errors": 17}, rollouts[2]: {"errors": 17}}
    for i, rollout in enumerate(rollouts):
        last = max(n for n in range(51) if n % 3 == i)
        assert [(v.samples, v.at) for v in board.latest(rollout)] == [
            (last, (start + timedelta(seconds=last)).isoformat())]


def test_the_rollout_read_shows_each_rules_latest_verdict(runtime: Runtime) -> None:
    """GET /v1/rollouts/{id} carries what the verdict table holds: the newest per rule."""
    rollout = rollout_with_guard(runtime, "shown", [rule(threshold=0.05, min_samples=50)])
    board = VerdictBoard(runtime.db)
    now = datetime.now(UTC)
    board.apply("verdicts", [
        VerdictRecord(0, 0, orjson.dumps(_verdict(rollout, "errors", now, 10))),
        VerdictRecord(0, 1, orjson.dumps(_verdict(rollout, "errors", now + timedelta(seconds=1),
                                                  30)))])
    server = Server(runtime)
    server.start()
    try:
        with server.client() as api:
            body = api.get(f"/v1/rollouts/{rollout}").json()
    finally:
        server.stop()
    assert body["state"] == "Running"
    assert [(v["rule"], v["outcome"], v["samples"]) for v in body["verdicts"]] == [
        ("errors", "Inconclusive", 30)]
