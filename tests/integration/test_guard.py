"""The live guard against the real broker and PostgreSQL: evaluations in, decisions out."""

import asyncio
import time
from datetime import UTC, datetime
from uuid import UUID

import orjson
import pytest
from relctl.adapters.kafka import make_producer
from relctl.domain.release import prompt_hash
from relctl.infra.bootstrap import Runtime

from tests.conftest import wait_until
from tests.integration.guard_helpers import (
    PROMPTS,
    WorkerProcess,
    evaluation,
    produce,
    rollout_with_guard,
    rule,
)
from tests.integration.kafka_helpers import read_topic

pytestmark = pytest.mark.integration


def events_of(runtime: Runtime, rollout: str) -> list[str]:
    return [type(e).__qualname__ for e in runtime.app.history(UUID(rollout))]


def decision_ids(runtime: Runtime) -> int:
    """How many distinct decisions the guard published on relctl.commands."""
    settings = runtime.settings
    records = read_topic(settings.kafka_bootstrap or "", settings.topic("commands"),
                         settings.command_partitions, 1, timeout=3, raw=True)
    return len({r["ce_id"] for r in records})


def state_of(runtime: Runtime, rollout: str) -> str:
    return str(runtime.app.rollout(UUID(rollout)).state)


def test_breaking_guard_rolls_back_and_resolve_returns_the_baseline(
    runtime: Runtime, worker: WorkerProcess,
) -> None:
    # min_samples = the candidate's 100 evaluations: the decision waits for all of them, so its
    # evidence is exact (20 %) wherever the worker's batch boundaries fall.
    rollout = rollout_with_guard(runtime, "csat", [rule(threshold=0.05, min_samples=100)])
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
    assert evidence["rule"] == "errors" and evidence["samples"] == 100
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
    # min_samples = all 80: the alert waits for every evaluation, wherever batches split them.
    rollout = rollout_with_guard(runtime, "sig", [rule(name="latency", metric="latency_p95_ms",
                                                       threshold=1000, min_samples=80,
                                                       gate_class="Signal")])
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
        name="drift", metric="score_delta_shadow", comparator="<", threshold=-5, min_samples=40,
        gate_class="Signal")], shadow=True)  # all 40 pairs: exact evidence however batched
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


# ---- each evaluation counted once ----------------------------------------------------------

def window_count(worker: WorkerProcess, task: str, release: int) -> float | None:
    return worker.metric("relctl_guard_window_evaluations", task=task, release=str(release),
                         arm="production")


@pytest.mark.parametrize("delivery", ["once", "three-times", "sigkill-then-resent"])
def test_the_same_stream_gives_the_same_counts_and_verdicts_however_delivered(
    runtime: Runtime, worker: WorkerProcess, delivery: str,
) -> None:
    """The issue's false rollback: 120 unique failing calls against min_samples 200. Counted
    once they are Inconclusive, whether sent once, three times (byte-identical retries), or
    with the worker SIGKILLed mid-stream and the producer re-sending everything."""
    task = f"dup-{delivery.split('-', maxsplit=1)[0]}"
    rollout = rollout_with_guard(runtime, task, [rule(threshold=0.05, min_samples=200)])
    worker.start()
    settings = runtime.settings
    bootstrap, topic = settings.kafka_bootstrap or "", settings.topic("evaluations")
    stream = [evaluation(task, 2, i, error=True) for i in range(120)]
    sends = {"once": 1, "three-times": 3, "sigkill-then-resent": 1}[delivery]
    for _ in range(sends):
        produce(bootstrap, topic, stream)
    if delivery == "sigkill-then-resent":
        wait_until(lambda: (worker.metric("relctl_worker_evaluations_processed_total") or 0)
                   > 0, timeout=60, what="the worker processing the first copy")
        worker.kill()
        worker.start()
        produce(bootstrap, topic, stream)
        deliveries = 240
    else:
        deliveries = 120 * sends
    # A restarted worker rejoins its group and recovers its table first: give it longer.
    wait_until(lambda: window_count(worker, task, 2) == 120,
               timeout=120 if delivery == "sigkill-then-resent" else 60,
               what="120 evaluations in the candidate's window")
    if delivery != "sigkill-then-resent":
        wait_until(lambda: (worker.metric("relctl_guard_duplicates_total") or 0)
                   == deliveries - 120, timeout=30, what="the copies counted as duplicates")
    wait_until(lambda: worker.metric("relctl_guard_rule_outcome", rollout=rollout,
                                     rule="errors") == 0, timeout=30, what="Inconclusive")
    assert window_count(worker, task, 2) == 120
    assert state_of(runtime, rollout) == "Running"
    assert events_of(runtime, rollout) == ["Rollout.Planned", "Rollout.Started"]
    assert not worker.metric("relctl_guard_decisions_total", action="rollback")


def test_records_that_contradict_their_release_or_the_clock_go_to_the_dlq_as_received(
    runtime: Runtime, worker: WorkerProcess,
) -> None:
    """The issue's record (release 2 with release 1's prompt hash, another provider and
    model, temperature 1.7, seed 999) and records dated 2020 and 2030: none is evidence, each
    is dead-lettered with its reason and its bytes as received, and the trace-contract
    violation raises the release's alert."""
    rollout = rollout_with_guard(runtime, "trace", [rule(threshold=0.05, min_samples=10)])
    worker.start()
    settings = runtime.settings
    bootstrap = settings.kafka_bootstrap or ""
    liar = evaluation("trace", 2, 1, prompt_hash=prompt_hash(PROMPTS[1]),
                      model_provider="anthropic", model_version="claude-3-5-sonnet-20241022",
                      temperature=1.7, seed=999)
    old = evaluation("trace", 2, 2, occurred_at="2020-01-01T00:00:00+00:00")
    future = evaluation("trace", 2, 3, occurred_at="2030-01-01T00:00:00+00:00")
    # Sent as received by a producer that writes its own JSON (spacing and key order its own).
    sent = [orjson.dumps(item, option=orjson.OPT_INDENT_2) for item in (liar, old, future)]

    async def send() -> None:
        producer = make_producer(bootstrap)
        await producer.start()
        for value in sent:
            await producer.send_and_wait(settings.topic("evaluations"), value=value,
                                         key=b"tenant-1")
        await producer.stop()

    asyncio.run(send())
    produce(bootstrap, settings.topic("evaluations"),
            [evaluation("trace", 2, 100 + i) for i in range(20)])
    dead = read_topic(bootstrap, settings.topic("dlq"), 1, 3, raw=True)
    by_kind = {d["relctl_dlq_kind"]: d for d in dead}
    assert set(by_kind) == {"trace_contract", "stale", "future"}
    assert {d["_value"] for d in dead} == set(sent), "the bytes as received"
    reason = by_kind["trace_contract"]["relctl_dlq_reason"]
    for part in ("prompt_hash", "model_provider", "model_version", "temperature 1.7",
                 "seed 999"):
        assert part in reason
    assert "allowed clock skew" in by_kind["future"]["relctl_dlq_reason"]
    alerts = wait_until(lambda: [a for a in read_topic(
        bootstrap, settings.topic("alerts"), 1, 1, timeout=2)
        if a["data"].get("rule") == "trace-contract"], timeout=60, what="trace alert")
    assert alerts[0]["data"]["release"] == 2 and alerts[0]["type"] == "io.relctl.alert.fired.v1"
    wait_until(lambda: window_count(worker, "trace", 2) == 20, timeout=60,
               what="only the honest records counted")
    assert worker.metric("relctl_guard_trace_violations_total", task="trace", release="2",
                         field="seed") == 1
    assert state_of(runtime, rollout) == "Running"
