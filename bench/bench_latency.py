"""Breach-to-rollback latency, isolated and under load: from the evaluation that makes a guard
condition true to the moment `GET /v1/resolve` returns the baseline.

Run: .venv/bin/python -m bench.bench_latency [--trials 100] [--rate 5000]
     [--baseline-env KEY=VALUE ...] [--env KEY=VALUE ...]

Runs `relctl up` (embedded PostgreSQL and broker, one guard worker) as a subprocess. Each trial
creates a task with a running rollout (every tenant on the candidate) and a RollbackTrigger
rule `llm_error_rate > 0.5` with `min_samples` 20 and no for-duration; sends 19 failing
evaluations (the rule stays Inconclusive) and waits until stage 2 has counted them;
then sends the 20th and polls `/v1/resolve` until it returns the baseline. The clock starts
when the broker has acknowledged the 20th evaluation's produce request.

In one run:
1. isolated: the trials on an otherwise idle stack;
2. under load: the same trials while a separate load process pushes ``--rate`` valid
   evaluations/s (CloudEvents batches of ``--batch``, ``--tenants`` other tenants, one other
   task with its own running, guarded rollout) through the same worker; printed with the
   rate the worker really processed meanwhile, its CPU share, its consumer lag before and
   after, and how often it logged Faust's overload warnings;
3. the floor: produce -> consume of one record on the same broker.
With ``--baseline-env`` a second stack runs the same code with that environment (for example
``RELCTL_FETCH_IDLE_WAIT_MS=10``, the fixed 10 ms fetch wait of before); its isolated trials
are interleaved with the first stack's, so drifting machine load hits both alike.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer
from relctl.adapters import hop_trace
from relctl.adapters.ingest import BATCH, structured_event, to_kafka
from relctl.adapters.kafka import make_producer
from relctl.domain.evaluation import EvaluationRecord
from relctl.domain.release import prompt_hash
from relctl.infra.embedded import free_port, wait_for_port

from bench.common import percentile
from bench.harness import read_metric
from bench.hop_report import TrialMarks, report

SPEC: dict[str, Any] = {
    "prompt_template": "Score the call.", "model_provider": "openai", "model_name": "gpt-4o",
    "model_version": "gpt-4o-2024-08-06", "temperature": 0.0, "seed": 7,
    "output_schema": {"type": "object", "properties": {"score": {"type": "number"}}},
    "output_schema_version": "1",
}
TOPIC = "relctl.evaluations"
# A pause longer than the adaptive fetch waits' linger (adapters/fetch_wait.py), for --cold.
COLD_SECONDS = 1.5
# Faust's own warnings when a worker falls behind (the issue saw both in a burst).
OVERLOAD = ("Timer commit is overlapping", "producer buffer full")


def evaluation(task: str, release: int, call: int, *, tenant: str, error: bool = False,
               prompt: str = SPEC["prompt_template"]) -> dict[str, Any]:
    """An evaluation that honours its release's trace contract (releases made as below)."""
    return {
        "tenant": tenant, "task": task, "call_id": f"call-{call}", "release": release,
        "prompt_hash": prompt_hash(prompt), "model_provider": "openai",
        "model_version": "gpt-4o-2024-08-06", "temperature": 0.0, "seed": 7,
        "arm": "production", "outcome": "llm_error" if error else "ok", "latency_ms": 1200.0,
        "tokens": 900, "cost_usd": 0.01, "score": 80.0, "confidence": 0.9,
        "occurred_at": datetime.now(UTC).isoformat(),
    }


class Bench:
    def __init__(self, api: httpx.Client, bootstrap: str, metrics_port: int, name: str,
                 data_dir: Path) -> None:
        self.api = api
        self.bootstrap = bootstrap
        self.metrics_port = metrics_port
        self.name = name
        self.data_dir = data_dir
        self.cold = False
        self.marks: list[TrialMarks] = []  # each trial's own hops (read with --hops)

    def ok(self, response: httpx.Response) -> Any:
        assert response.status_code < 300, response.text
        return response.json()

    def setup_task(self, task: str, rule: dict[str, Any], steps: list[int]) -> str:
        """Releases 1 (default) and 2 of ``task`` and a started rollout of 2 with ``rule``."""
        api = self.api
        self.ok(api.post("/v1/releases", json={"task": task, "spec": SPEC, "reason": "v1 ok"}))
        self.ok(api.post(f"/v1/tasks/{task}/gate-waiver", json={"reason": "not about gates"}))
        self.ok(api.post(f"/v1/releases/{task}/1/promote", json={"stage": "Stable",
                                                                 "reason": "ok go"}))
        self.ok(api.post(f"/v1/tasks/{task}/default", json={"release": 1, "reason": "launch"}))
        self.ok(api.post("/v1/releases", json={"task": task, "reason": "v2 ok",
                                              "spec": {**SPEC, "prompt_template": task}}))
        self.ok(api.post(f"/v1/releases/{task}/2/promote", json={"stage": "Beta",
                                                                 "reason": "ok go"}))
        rollout = self.ok(api.post("/v1/rollouts", json={
            "task": task, "candidate": 2, "steps": steps, "guard_rules": [rule],
            "reason": "latency trial"}))["aggregate"]["id"]
        self.ok(api.post(f"/v1/rollouts/{rollout}/start", json={"reason": "go now"}))
        return str(rollout)

    def wait_running(self, rollout: str) -> None:
        deadline = time.monotonic() + 30
        while read_metric(self.metrics_port, "relctl_worker_rollout_state", rollout=rollout) != 1:
            assert time.monotonic() < deadline, "the worker never saw the rollout start"
            time.sleep(0.01)

    def processed(self) -> float:
        return read_metric(self.metrics_port, "relctl_worker_evaluations_processed_total") or 0

    async def trial(self, producer: Any, index: int) -> float:
        task, rule_name = f"lat{index}-{uuid.uuid4().hex[:4]}", f"rule{index}"
        rule = {"name": rule_name, "metric": "llm_error_rate", "comparator": ">",
                "threshold": 0.5, "min_samples": 20, "window_seconds": 60, "for_seconds": 0,
                "gate_class": "RollbackTrigger"}
        rollout = self.setup_task(task, rule, [100])
        self.wait_running(rollout)
        records = [EvaluationRecord.from_mapping(evaluation(
            task, 2, i, tenant="acme", error=True, prompt=task)) for i in range(20)]
        for record in records[:19]:
            key, value, headers = to_kafka(record)
            await producer.send_and_wait(TOPIC, value=value, key=key, headers=headers)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counted = read_metric(self.metrics_port, "relctl_guard_window_evaluations",
                                  task=task, release="2", arm="production") or 0
            state = read_metric(self.metrics_port, "relctl_guard_rule_outcome",
                                rollout=rollout, rule=rule_name)
            if counted >= 19 and state == 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"trial {index}: stage 2 never counted the first 19")
        if self.cold:  # every consumer back on its idle fetch wait
            await asyncio.sleep(COLD_SECONDS)
        key, value, headers = to_kafka(records[19])
        await producer.send_and_wait(TOPIC, value=value, key=key, headers=headers)
        started, produced = time.perf_counter(), time.time()
        async with httpx.AsyncClient(base_url=str(self.api.base_url),
                                     headers=dict(self.api.headers)) as client:
            while time.perf_counter() - started < 30:
                response = await client.get("/v1/resolve", params={"tenant": "acme",
                                                                   "task": task})
                if response.json()["release"] == 1:
                    took = time.perf_counter() - started
                    if index >= 0:
                        self.marks.append(TrialMarks(task, rollout, produced, time.time()))
                    return took
                await asyncio.sleep(0.002)
        outcome = read_metric(self.metrics_port, "relctl_guard_rule_outcome", rollout=rollout,
                              rule=rule_name)
        raise AssertionError(f"trial {index}: no rollback within 30 s (rule outcome {outcome})")


async def trials(benches: list["Bench"], count: int, label: str) -> list[list[float]]:
    """``count`` trials on each bench, interleaved (trial i on every stack before trial i+1),
    so a machine whose load drifts affects every stack alike."""
    producers = [make_producer(bench.bootstrap) for bench in benches]
    for producer in producers:
        await producer.start()
    try:
        for bench, producer in zip(benches, producers, strict=True):
            await bench.trial(producer, -1)  # warm-up: the pipeline end to end once
        found: list[list[float]] = [[] for _ in benches]
        for i in range(count):
            for n, (bench, producer) in enumerate(zip(benches, producers, strict=True)):
                found[n].append(await bench.trial(producer, i))
                print(f"  {label} {bench.name} trial {i}: {found[n][-1] * 1000:.1f} ms",
                      file=sys.stderr)
        return found
    finally:
        for producer in producers:
            await producer.stop()


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


# ---- the load process -----------------------------------------------------------------------

async def load(bootstrap: str, task: str, rate: float, batch: int, tenants: int) -> None:
    """Send ``rate`` valid evaluations/s of ``task`` (releases 1 and 2, unique call ids) as
    CloudEvents batches of ``batch``, round-robin over ``tenants`` tenants, until SIGTERM;
    prints how many were sent and over how long."""
    template = {1: structured_event(EvaluationRecord.from_mapping(
        evaluation(task, 1, 0, tenant="t"))),
        2: structured_event(EvaluationRecord.from_mapping(
            evaluation(task, 2, 0, tenant="t", prompt=task)))}
    producer = make_producer(bootstrap)
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    sent, call, started = 0, 0, time.monotonic()
    interval = batch / rate
    pending: set[asyncio.Future[Any]] = set()
    while not stop.is_set():
        tenant = f"load-{call // batch % tenants}"
        now = datetime.now(UTC).isoformat()
        events = []
        for _ in range(batch):
            call += 1
            base = template[1 + call % 2]
            arm = "production"
            events.append({**base, "id": f"{tenant}:call-{call}:{arm}", "subject": tenant,
                           "time": now, "data": {**base["data"], "tenant": tenant,
                                                 "call_id": f"call-{call}", "occurred_at": now}})
        future = await producer.send(TOPIC, value=orjson.dumps(events), key=tenant.encode(),
                                     headers=[("content-type", BATCH.encode())])
        pending.add(future)
        future.add_done_callback(pending.discard)
        sent += batch
        delay = started + sent / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(min(delay, interval))
    await producer.flush()
    await producer.stop()
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - started}), flush=True)


class LoadProcess:
    """The load generator as its own process (like a real producer, not on the bench's loop)."""

    def __init__(self, bootstrap: str, task: str, rate: float, batch: int,
                 tenants: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_latency", "--load-child", bootstrap, task,
             "--rate", str(rate), "--batch", str(batch), "--tenants", str(tenants)],
            stdout=subprocess.PIPE)

    def stop(self) -> dict[str, float]:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=60)
        return dict(json.loads(out.decode().strip().splitlines()[-1]))


# ---- the run --------------------------------------------------------------------------------

def line(name: str, values: list[float]) -> str:
    return (f"{name}: p50 {percentile(values, 50) * 1000:7.1f} ms, "
            f"p90 {percentile(values, 90) * 1000:7.1f} ms, "
            f"p99 {percentile(values, 99) * 1000:7.1f} ms, "
            f"max {max(values) * 1000:7.1f} ms  (n={len(values)})")


def overload_warnings(log: Path) -> dict[str, int]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return {needle: text.count(needle) for needle in OVERLOAD}


def worker_cpu(data_dir: Path) -> float:
    """CPU seconds (user + system) the guard worker used so far."""
    stack = json.loads((data_dir / "stack.json").read_text())
    [pid] = [c["pid"] for c in stack["children"] if c["role"] == "worker"]
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def lag(bench: "Bench") -> float:
    text = httpx.get(f"http://127.0.0.1:{bench.metrics_port}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("relctl_worker_consumer_lag{"))


class Stack:
    """`relctl up` (embedded PostgreSQL and broker, one worker) as a subprocess, with extra
    environment for the configuration under test."""

    def __init__(self, name: str, env: dict[str, str], hops: bool = False) -> None:
        self.name = name
        self.data_dir = Path(tempfile.mkdtemp(prefix="relctl-latency-"))
        port, self.metrics_port = free_port(), free_port()
        full = {k: v for k, v in os.environ.items()
                if k not in ("RELCTL_DATABASE_URL", "RELCTL_KAFKA_BOOTSTRAP", hop_trace.ENV)}
        full.update(env, RELCTL_WORKER_METRICS_PORT=str(self.metrics_port))
        if hops:
            full[hop_trace.ENV] = str(self.hops_file)
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relctl.entrypoints.cli", "up", "--data-dir",
             str(self.data_dir), "--api-port", str(port)], env=full,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def hops_file(self) -> Path:
        return self.data_dir / "hops.jsonl"

    def bench(self) -> "Bench":
        wait_for_port("127.0.0.1", self.port, timeout=120)
        wait_for_port("127.0.0.1", self.metrics_port, timeout=120)
        token = (self.data_dir / "admin-token").read_text().strip()
        bootstrap = json.loads((self.data_dir / "stack.json").read_text())["kafka_bootstrap"]
        api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}",
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
        return Bench(api, bootstrap, self.metrics_port, self.name, self.data_dir)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)
        if os.environ.get("RELCTL_BENCH_KEEP"):
            print(f"kept {self.data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def loaded(args: argparse.Namespace, bench: "Bench") -> tuple[list[float], str]:
    """Trials on one stack while the load process runs against it."""
    load_task = f"load-{uuid.uuid4().hex[:4]}"
    rule = {"name": "load-errors", "metric": "llm_error_rate", "comparator": ">",
            "threshold": 0.5, "min_samples": 20, "window_seconds": 60, "for_seconds": 0,
            "gate_class": "RollbackTrigger"}
    bench.wait_running(bench.setup_task(load_task, rule, [50, 100]))
    log = bench.data_dir / "worker.log"
    before = overload_warnings(log)
    generator = LoadProcess(bench.bootstrap, load_task, args.rate, args.batch, args.tenants)
    try:
        time.sleep(args.warm)  # let the worker reach its steady state
        counted, since, cpu = bench.processed(), time.monotonic(), worker_cpu(bench.data_dir)
        lag_before = lag(bench)
        [found] = asyncio.run(trials([bench], args.trials, "loaded"))
        elapsed = time.monotonic() - since
        worker_rate = (bench.processed() - counted) / elapsed
        cpu_share = 100 * (worker_cpu(bench.data_dir) - cpu) / elapsed
        lag_after = lag(bench)
    finally:
        sent = generator.stop()
    after = overload_warnings(log)
    note = (f"load on {bench.name}: generator sent {sent['sent'] / sent['seconds']:,.0f} "
            f"evaluations/s (asked {args.rate:,.0f}/s, {args.tenants} tenants, batches of "
            f"{args.batch}); the worker processed {worker_rate:,.0f}/s during the loaded trials "
            f"at {cpu_share:.0f} % of a core; its consumer lag went from {lag_before:,.0f} to "
            f"{lag_after:,.0f} Kafka records; Faust overload warnings: " + ", ".join(
                f"{k!r} x{after[k] - before[k]}" for k in OVERLOAD))
    return found, note


def hops_of(args: argparse.Namespace, bench: "Bench", label: str) -> list[str]:
    """With --hops: the per-hop table of the trials run since the last call."""
    marks, bench.marks = bench.marks, []
    if not args.hops:
        return []
    return report(f"  {label} {bench.name}", marks, bench.data_dir / "hops.jsonl")


def measure(args: argparse.Namespace, benches: list["Bench"]) -> list[str]:
    out = []
    if not args.skip_isolated:
        for bench, found in zip(benches, asyncio.run(trials(benches, args.trials, "isolated")),
                                strict=True):
            out.append(line(f"isolated   {bench.name:8s}: breach -> resolve returns baseline",
                            found))
            out += hops_of(args, bench, "isolated")
    if args.rate > 0:
        for bench in benches:
            found, note = loaded(args, bench)
            out.append(line(f"under load {bench.name:8s}: breach -> resolve returns baseline",
                            found))
            out.append("  " + note)
            out += hops_of(args, bench, "under load")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5000.0,
                        help="background evaluations/s for the loaded trials (0: none)")
    parser.add_argument("--batch", type=int, default=50, help="evaluations per Kafka record")
    parser.add_argument("--tenants", type=int, default=40)
    parser.add_argument("--warm", type=float, default=10.0,
                        help="seconds of load before the loaded trials")
    parser.add_argument("--skip-isolated", action="store_true")
    parser.add_argument("--cold", action="store_true",
                        help=f"pause {COLD_SECONDS} s before the breaching evaluation, so every "
                             "consumer is on its idle fetch wait (a first breach after a quiet "
                             "spell)")
    parser.add_argument("--baseline-env", action="append", default=[], metavar="KEY=VALUE",
                        help="also run a second stack with this environment (repeatable), "
                             "interleaving its isolated trials with the default stack's")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of the stack under test (repeatable)")
    parser.add_argument("--hops", action="store_true",
                        help="trace each hop of every breach (RELCTL_HOP_TRACE in the stack) "
                             "and print where the time goes")
    parser.add_argument("--load-child", nargs=2, metavar=("BOOTSTRAP", "TASK"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_child:
        asyncio.run(load(*args.load_child, args.rate, args.batch, args.tenants))
        return
    stacks = [Stack("now", dict(kv.split("=", 1) for kv in args.env), args.hops)]
    if args.baseline_env:
        stacks.append(Stack("baseline", dict(kv.split("=", 1) for kv in args.baseline_env),
                            args.hops))
    try:
        benches = [stack.bench() for stack in stacks]
        for bench in benches:
            bench.cold = args.cold
        results = measure(args, benches)
        hops = asyncio.run(hop_floor(benches[0].bootstrap))
    finally:
        for stack in stacks:
            stack.stop()
    if args.cold:
        print(f"cold trials: {COLD_SECONDS} s pause before the breaching evaluation")
    if args.env:
        print(f"stack under test ('now') with {' '.join(args.env)}")
    if args.baseline_env:
        print(f"baseline stack: the same code with {' '.join(args.baseline_env)}")
    for result in results:
        print(result)
    print(line("floor: produce -> consume, one hop                   ", hops))


if __name__ == "__main__":
    main()
