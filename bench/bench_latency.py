"""Breach-to-rollback latency: from the evaluation that makes a guard condition true to the
moment `GET /v1/resolve` returns the baseline.

Run: .venv/bin/python -m bench.bench_latency [--trials 50]

Runs `relctl up` (embedded PostgreSQL and broker, one guard worker) as a subprocess. Each trial
creates a task with a running rollout (every tenant on the candidate) and a RollbackTrigger
rule `llm_error_rate > 0.5` with `min_samples` 20 and no for-duration; sends 19 failing
evaluations (the rule stays Inconclusive) and waits until the worker reports them processed;
then sends the 20th and polls `/v1/resolve` until it returns the baseline. The clock starts
when the broker has acknowledged the 20th evaluation's produce request.
The floor is measured in the same run: produce -> consume of one record on the same broker.
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from relctl.adapters.ingest import to_kafka
from relctl.adapters.kafka import make_producer
from relctl.domain.evaluation import EvaluationRecord
from relctl.domain.release import prompt_hash
from relctl.infra.embedded import free_port, wait_for_port

from bench.common import percentile
from tests.integration.guard_helpers import SPEC, evaluation, read_metric


class Bench:
    def __init__(self, api: httpx.Client, bootstrap: str, metrics_port: int) -> None:
        self.api = api
        self.bootstrap = bootstrap
        self.metrics_port = metrics_port

    def ok(self, response: httpx.Response) -> Any:
        assert response.status_code < 300, response.text
        return response.json()

    def setup_trial(self, task: str, rule_name: str) -> str:
        api = self.api
        self.ok(api.post("/v1/releases", json={"task": task, "spec": SPEC, "reason": "v1 ok"}))
        self.ok(api.post(f"/v1/releases/{task}/1/promote", json={"stage": "Stable",
                                                                 "reason": "ok go"}))
        self.ok(api.post(f"/v1/tasks/{task}/default", json={"release": 1, "reason": "launch"}))
        self.ok(api.post("/v1/releases", json={"task": task, "reason": "v2 ok",
                                              "spec": {**SPEC, "prompt_template": task}}))
        self.ok(api.post(f"/v1/releases/{task}/2/promote", json={"stage": "Beta",
                                                                 "reason": "ok go"}))
        rule = {"name": rule_name, "metric": "llm_error_rate", "comparator": ">",
                "threshold": 0.5, "min_samples": 20, "window_seconds": 60, "for_seconds": 0,
                "gate_class": "RollbackTrigger"}
        rollout = self.ok(api.post("/v1/rollouts", json={
            "task": task, "candidate": 2, "steps": [100], "guard_rules": [rule],
            "reason": "latency trial"}))["aggregate"]["id"]
        self.ok(api.post(f"/v1/rollouts/{rollout}/start", json={"reason": "go now"}))
        return str(rollout)

    async def trial(self, producer: Any, index: int) -> float:
        task, rule_name = f"lat{index}-{uuid.uuid4().hex[:4]}", f"rule{index}"
        rollout = self.setup_trial(task, rule_name)
        deadline = time.monotonic() + 30
        while read_metric(self.metrics_port, "relctl_worker_rollout_state", rollout=rollout) != 1:
            assert time.monotonic() < deadline, "the worker never saw the rollout start"
            await asyncio.sleep(0.01)
        records = [EvaluationRecord.from_mapping(evaluation(
            task, 2, i, tenant="acme", error=True, prompt_hash=prompt_hash(task)))
            for i in range(20)]
        processed = read_metric(self.metrics_port, "relctl_worker_evaluations_processed_total") or 0
        for record in records[:19]:
            key, value, headers = to_kafka(record)
            await producer.send_and_wait("relctl.evaluations", value=value, key=key,
                                         headers=headers)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = read_metric(self.metrics_port, "relctl_worker_evaluations_processed_total") or 0
            state = read_metric(self.metrics_port, "relctl_guard_rule_outcome",
                           rollout=rollout, rule=rule_name)
            if done >= processed + 19 and state == 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("worker never saw the first 19 evaluations")
        key, value, headers = to_kafka(records[19])
        await producer.send_and_wait("relctl.evaluations", value=value, key=key,
                                     headers=headers)
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=str(self.api.base_url),
                                     headers=dict(self.api.headers)) as client:
            while time.perf_counter() - started < 30:
                response = await client.get("/v1/resolve", params={"tenant": "acme",
                                                                   "task": task})
                if response.json()["release"] == 1:
                    return time.perf_counter() - started
                await asyncio.sleep(0.002)
        done = read_metric(self.metrics_port, "relctl_worker_evaluations_processed_total")
        outcome = read_metric(self.metrics_port, "relctl_guard_rule_outcome", rollout=rollout,
                         rule=rule_name)
        raise AssertionError(f"trial {index}: no rollback within 30 s (worker processed "
                             f"{done} evaluations, expected {processed + 20}; rule outcome "
                             f"{outcome})")


async def hop_floor(bootstrap: str, samples: int = 200) -> list[float]:
    """Produce one record and time until a consumer already waiting on the topic gets it."""
    topic = f"bench-hop-{uuid.uuid4().hex[:6]}"
    producer = make_producer(bootstrap)
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="latest",
                                fetch_max_wait_ms=50)
    await consumer.start()
    await consumer.seek_to_end()
    hops = []
    for _ in range(samples):
        started = time.perf_counter()
        await producer.send_and_wait(topic, b"x")
        await consumer.getone()
        hops.append(time.perf_counter() - started)
    await consumer.stop()
    await producer.stop()
    return hops


async def run(bench: Bench, trials: int) -> list[float]:
    producer = make_producer(bench.bootstrap)
    await producer.start()
    try:
        await bench.trial(producer, -1)  # warm-up: the pipeline end to end once
        return [await bench.trial(producer, i) for i in range(trials)]
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="relctl-latency-"))
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("RELCTL_DATABASE_URL", "RELCTL_KAFKA_BOOTSTRAP")}
    env["RELCTL_WORKER_METRICS_PORT"] = str(metrics_port)
    process = subprocess.Popen(
        [sys.executable, "-m", "relctl.entrypoints.cli", "up", "--data-dir", str(data_dir),
         "--api-port", str(port)], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        wait_for_port("127.0.0.1", metrics_port, timeout=60)
        token = (data_dir / "admin-token").read_text().strip()
        bootstrap = json.loads((data_dir / "stack.json").read_text())["kafka_bootstrap"]
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
        latencies = asyncio.run(run(Bench(api, bootstrap, metrics_port), args.trials))
        hops = asyncio.run(hop_floor(bootstrap))
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)

    def line(name: str, values: list[float]) -> str:
        return (f"{name}: p50 {percentile(values, 50) * 1000:7.1f} ms, "
                f"p90 {percentile(values, 90) * 1000:7.1f} ms, "
                f"p99 {percentile(values, 99) * 1000:7.1f} ms, "
                f"max {max(values) * 1000:7.1f} ms  (n={len(values)})")

    print(line("breach -> /v1/resolve returns baseline", latencies))
    print(line("floor: produce -> consume, one hop    ", hops))


if __name__ == "__main__":
    main()
