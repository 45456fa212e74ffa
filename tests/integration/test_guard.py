"""The live guard against the real broker and PostgreSQL: evaluations in, decisions out."""

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import orjson
import pytest
from relctl.adapters.kafka import make_producer
from relctl.infra.bootstrap import Runtime

from tests.conftest import wait_until
from tests.integration.guard_helpers import (
    ControlPlaneThread,
    WorkerProcess,
    evaluation,
    produce,
    rollout_with_guard,
    rule,
)
from tests.integration.kafka_helpers import read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def plane(runtime: Runtime) -> Iterator[ControlPlaneThread]:
    control = ControlPlaneThread(runtime).start()
    yield control
    control.stop()


@pytest.fixture
def worker(runtime: Runtime, tmp_path: Path, plane: ControlPlaneThread) -> Iterator[WorkerProcess]:
    process = WorkerProcess(runtime, tmp_path)
    yield process
    process.stop()


def events_of(runtime: Runtime, rollout: str) -> list[str]:
    return [type(e).__qualname__ for e in runtime.app.history(UUID(rollout))]


def decision_ids(runtime: Runtime) -> int:
    """How many distinct decisions the guard published on relctl.commands."""
    settings = runtime.settings
    records = read_topic(settings.kafka_bootstrap or "", settings.topic("commands"),
                         settings.control_partitions, 1, timeout=3, raw=True)
    return len({r["ce_id"] for r in records})


def state_of(runtime: Runtime, rollout: str) -> str:
    return str(runtime.app.rollout(UUID(rollout)).state)


def test_breaking_guard_rolls_back_and_resolve_returns_the_baseline(
    runtime: Runtime, worker: WorkerProcess,
) -> None:
    rollout = rollout_with_guard(runtime, "csat", [rule(threshold=0.05)])
    worker.start()
    bootstrap, topic = runtime.settings.kafka_bootstrap or "", runtime.settings.topic("evaluations")
    records = [evaluation("csat", 2, i, error=i % 5 == 0) for i in range(100)]
    records += [evaluation("csat", 1, i) for i in range(100, 200)]
    produce(bootstrap, topic, records)
    wait_until(lambda: state_of(runtime, rollout) == "RolledBack", timeout=60,
               what="automatic rollback")
    history = runtime.app.history(UUID(rollout))
    rolled_back = [e for e in history if type(e).__qualname__ == "Rollout.RolledBack"]
    assert len(rolled_back) == 1
    assert rolled_back[0].actor == "relctl-guard"
    evidence = rolled_back[0].evidence
    assert evidence["rule"] == "errors" and evidence["samples"] >= 50
    assert evidence["value"] == pytest.approx(0.2)
    for tenant in (f"tenant-{i}" for i in range(11)):
        assert runtime.state.resolve(tenant, "csat").release == 1
    alerts = read_topic(bootstrap, runtime.settings.topic("alerts"), 1, 1)
    assert any(a["type"] == "io.relctl.alert.decision.v1" for a in alerts)
    # More bad evaluations after the decision change nothing: one breach, one event.
    produce(bootstrap, topic, [evaluation("csat", 2, i, error=True) for i in range(300, 400)])
    wait_until(lambda: (worker.metric("relctl_worker_evaluations_processed_total") or 0) >= 300,
               what="late evaluations processed")
    assert events_of(runtime, rollout).count("Rollout.RolledBack") == 1
    assert decision_ids(runtime) == 1, "the guard itself decided once, not just the store"
    assert worker.metric("relctl_guard_decisions_total", action="rollback") == 1


@pytest.mark.parametrize(("error_every", "count", "expected"), [
    (50, 200, 1),    # 2% errors: below the 5% threshold -> Passed
    (2, 20, 0),      # 50% errors but 20 samples of 50 needed -> Inconclusive
])
def test_near_misses_change_nothing(
    runtime: Runtime, worker: WorkerProcess, error_every: int, count: int, expected: int,
) -> None:
    rollout = rollout_with_guard(runtime, "qa", [rule(threshold=0.05, min_samples=50)])
    worker.start()
    produce(runtime.settings.kafka_bootstrap or "", runtime.settings.topic("evaluations"),
            [evaluation("qa", 2, i, error=i % error_every == 0) for i in range(count)])
    wait_until(lambda: worker.metric("relctl_guard_rule_outcome", rollout=rollout,
                                     rule="errors") == expected and
               (worker.metric("relctl_worker_evaluations_processed_total") or 0) >= count,
               timeout=60, what=f"guard outcome {expected}")
    assert state_of(runtime, rollout) == "Running"
    assert events_of(runtime, rollout) == ["Rollout.Planned", "Rollout.Started"]
    assert not worker.metric("relctl_guard_decisions_total", action="rollback")


def test_signal_rule_only_alerts(runtime: Runtime, worker: WorkerProcess) -> None:
    rollout = rollout_with_guard(runtime, "sig", [rule(name="latency", metric="latency_p95_ms",
                                                       threshold=1000, gate_class="Signal")])
    worker.start()
    produce(runtime.settings.kafka_bootstrap or "", runtime.settings.topic("evaluations"),
            [evaluation("sig", 2, i) for i in range(80)])
    alerts = wait_until(lambda: [a for a in read_topic(
        runtime.settings.kafka_bootstrap or "", runtime.settings.topic("alerts"), 1, 1,
        timeout=2) if a["type"] == "io.relctl.alert.fired.v1"], timeout=60, what="signal alert")
    data = alerts[0]["data"]
    assert data["rule"] == "guard:latency" and data["evidence"]["value"] > 1000
    assert data["evidence"]["samples"] == 80
    assert state_of(runtime, rollout) == "Running"


def test_malformed_and_hostile_input_goes_to_the_dlq_while_good_input_flows(
    runtime: Runtime, worker: WorkerProcess,
) -> None:
    rollout = rollout_with_guard(runtime, "dlq", [rule(threshold=0.05)])
    worker.start()
    settings = runtime.settings
    bad = [b"{not json", b'{"tenant": "acme", "task": 3}', b"\x00\xff" * 10,
           b"[" + b"1," * 200_000 + b"1]",
           orjson.dumps(evaluation("dlq", 9, 1))]

    async def send_bad() -> None:
        producer = make_producer(settings.kafka_bootstrap or "")
        await producer.start()
        for value in bad:
            await producer.send_and_wait(settings.topic("evaluations"), value=value, key=b"x")
        await producer.stop()

    asyncio.run(send_bad())
    produce(settings.kafka_bootstrap or "", settings.topic("evaluations"),
            [evaluation("dlq", 2, i, error=True) for i in range(60)])
    wait_until(lambda: state_of(runtime, rollout) == "RolledBack", timeout=60,
               what="good input still processed")
    dead = read_topic(settings.kafka_bootstrap or "", settings.topic("dlq"), 1, len(bad),
                      raw=True)
    reasons = [d.get("relctl_dlq_reason", "") for d in dead]
    assert len(dead) == len(bad)
    assert {d["_value"] for d in dead if "JSON" in d["relctl_dlq_reason"]} >= {b"{not json"}
    assert all(reasons), "every dead letter says why"
    assert any("unknown release" in r for r in reasons)
    assert any("JSON" in r for r in reasons)
    assert worker.process is not None and worker.process.poll() is None


def test_worker_killed_mid_breach_decides_exactly_once_after_restart(
    runtime: Runtime, worker: WorkerProcess,
) -> None:
    rollout = rollout_with_guard(runtime, "kill", [rule(threshold=0.05, for_seconds=4)])
    worker.start()
    settings = runtime.settings
    produce(settings.kafka_bootstrap or "", settings.topic("evaluations"),
            [evaluation("kill", 2, i, error=True) for i in range(60)])
    wait_until(lambda: worker.metric("relctl_guard_rule_outcome", rollout=rollout,
                                     rule="errors") == 2, timeout=60, what="breach pending")
    worker.kill()
    killed_at = datetime.now(UTC)
    assert state_of(runtime, rollout) == "Running"
    worker.start()
    for batch in range(30):  # keep the bad traffic flowing, as production would
        produce(settings.kafka_bootstrap or "", settings.topic("evaluations"),
                [evaluation("kill", 2, 1000 + batch * 10 + i, error=True) for i in range(10)])
        if state_of(runtime, rollout) == "RolledBack":
            break
        time.sleep(0.5)  # pacing the producer, not waiting for an outcome
    wait_until(lambda: state_of(runtime, rollout) == "RolledBack", timeout=60,
               what="decision after restart")
    assert events_of(runtime, rollout).count("Rollout.RolledBack") == 1
    assert decision_ids(runtime) == 1, "re-sends after the restart carry the same decision id"
    evidence = runtime.app.history(UUID(rollout))[-1].evidence
    breach_since = datetime.fromisoformat(evidence["breach_since"])
    assert breach_since < killed_at, "the breach observed before the kill was recovered"


def test_shadow_mode_pairs_both_arms_of_the_same_call(
    runtime: Runtime, worker: WorkerProcess,
) -> None:
    rollout = rollout_with_guard(runtime, "shadow", [rule(
        name="drift", metric="score_delta_shadow", comparator="<", threshold=-5, min_samples=30,
        gate_class="Signal")], shadow=True)
    worker.start()
    records = []
    for i in range(40):
        tenant = f"t{i % 5}"
        records.append(evaluation("shadow", 1, i, tenant=tenant, score=80.0))
        records.append(evaluation("shadow", 2, i, tenant=tenant, arm="shadow", score=70.0))
    produce(runtime.settings.kafka_bootstrap or "", runtime.settings.topic("evaluations"),
            records)
    alerts = wait_until(lambda: [a for a in read_topic(
        runtime.settings.kafka_bootstrap or "", runtime.settings.topic("alerts"), 1, 1,
        timeout=2) if a["type"] == "io.relctl.alert.fired.v1"], timeout=60, what="drift alert")
    evidence = alerts[0]["data"]["evidence"]
    assert evidence["value"] == pytest.approx(-10.0)
    assert evidence["samples"] == 40, "each call's two arms were paired exactly once"
    assert runtime.state.resolve("t1", "shadow").release == 1, "shadow never serves scores"
    assert state_of(runtime, rollout) == "Running"
