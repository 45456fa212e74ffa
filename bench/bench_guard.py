"""Guard worker throughput vs raw aiokafka consume-and-decode of the same topic.

Run: .venv/bin/python -m bench.bench_guard [--n 300000] [--batch 100] [--baseline-src DIR]

Pre-produces N evaluations to a fresh topic (as CloudEvents batch records of --batch
evaluations each, the producer helper's format; --batch 1 sends one binary CloudEvent per
evaluation), then measures in the same run:

1. raw: a bare aiokafka consumer reading every record and decoding it with orjson;
2. raw + validate: the same, plus validation of every evaluation by the contract's decoder
   (pydantic), and by the worker's schema-compiled fast path (``ingest.decode(fast=True)``);
3. worker: one `relctl worker` process (Faust) doing decode, validation, attribution to the
   rollout arm, windowing and guard evaluation, timed from its first evaluation through stage
   1 to the moment stage 2 has counted the last one (Prometheus counters), so group join
   time is excluded;
4. the same worker with de-duplication off (RELCTL_BENCH_GUARD_DEDUP=0, for benchmarks only),
   reading the same topic in a fresh consumer group;
5. with --baseline-src DIR (a checkout of another commit, e.g. ``git archive main``): the
   worker of that code, same topic, fresh group: a before/after in one run.

Each rate is given per second of wall time and per second of CPU time of the process doing
the work (the bench process for raw, the worker process for workers): on a machine shared
with other work, wall-time rates move with the neighbours' load, CPU-time rates much less.
"""

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from relctl.adapters import ingest
from relctl.adapters.config import Settings
from relctl.adapters.kafka import ensure_topics, make_producer, topic_specs
from relctl.domain.evaluation import EvaluationRecord
from relctl.infra.bootstrap import bootstrap
from relctl.streams.app import DEDUP_ENV

from bench.common import services
from bench.harness import (
    ControlPlaneThread,
    WorkerProcess,
    evaluation,
    rollout_with_guard,
    rule,
)


async def produce(bootstrap_servers: str, topic: str, n: int, batch: int, task: str) -> None:
    producer = make_producer(bootstrap_servers)
    await producer.start()
    # Latencies vary (30,000 distinct values) and confidences take 50 values, like real ones.
    records = [EvaluationRecord.from_mapping(evaluation(
        task, 2 if i % 2 else 1, i, error=i % 100 == 0, latency_ms=300 + i * 7919 % 30000 / 10,
        confidence=round(0.5 + i * 31 % 50 / 100, 2))) for i in range(n)]
    futures = []
    if batch == 1:
        for record in records:
            key, value, headers = ingest.to_kafka(record)
            futures.append(await producer.send(topic, value=value, key=key, headers=headers))
    else:
        by_tenant: dict[str, list[EvaluationRecord]] = {}
        for record in records:
            by_tenant.setdefault(record.tenant, []).append(record)
        for group in by_tenant.values():
            for offset in range(0, len(group), batch):
                key, value, headers = ingest.batch_to_kafka(group[offset:offset + batch])
                futures.append(await producer.send(topic, value=value, key=key,
                                                   headers=headers))
    await asyncio.gather(*futures)
    await producer.stop()


@dataclass
class Rate:
    """Evaluations per second of wall time and per second of the worker's CPU time."""

    wall: float
    cpu: float

    def of(self, raw: "Rate") -> str:
        return f"{self.wall / raw.wall:6.1%} of raw (CPU time: {self.cpu / raw.cpu:6.1%})"


async def raw_consume(bootstrap_servers: str, topic: str, partitions: int, n: int,
                      validate: str = "") -> Rate:
    """``validate``: "" (orjson only), "contract" (pydantic) or "fast" (the worker's path)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    seen = 0
    started, cpu = time.perf_counter(), time.process_time()
    while seen < n:
        batch = await consumer.getmany(timeout_ms=500, max_records=5000)
        for records in batch.values():
            for record in records:
                if validate:
                    seen += len(ingest.decode(record.value, dict(record.headers),
                                              fast=validate == "fast").records)
                else:
                    data = orjson.loads(record.value)
                    seen += len(data) if isinstance(data, list) else 1
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await consumer.stop()
    return Rate(n / elapsed, n / cpu)


def source_view(src: Path, scratch: Path) -> Path:
    """A ``relctl`` package of links to ``src``'s layer folders (as .ci/typecheck builds),
    to put first on a worker's PYTHONPATH so it runs that code instead of this checkout's."""
    view = scratch / "view"
    (view / "relctl").mkdir(parents=True, exist_ok=True)
    for layer in ("domain", "application", "adapters", "streams", "projections", "infra",
                  "entrypoints"):
        link = view / "relctl" / layer
        if not link.exists():
            link.symlink_to((src / layer).resolve())
    return view


async def skip_earlier_partials(bootstrap_servers: str, group: str, topic: str,
                                partitions: int) -> None:
    """Start consumer group ``group`` at the end of the partials topic.

    Every worker of a run shares the partials topic (its name comes from the topic prefix),
    and a new group would read it from the beginning: each later worker's stage 2 would count
    the earlier workers' partials too (and its stage-2 counter reach N early)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    await consumer.commit({tp: await consumer.position(tp) for tp in tps})
    await consumer.stop()


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def worker_rate(runtime, n: int, log_dir: Path, count: int = 1,  # type: ignore[no-untyped-def]
                dedup: bool = True, source: Path | None = None) -> Rate:
    """Evaluations/s of ``count`` workers in one consumer group, from the first evaluation
    stage 1 processed until stage 2 counted the last (workers of code without the stage-2
    counter: until stage 1 processed the last)."""
    app_id = f"{runtime.settings.topic_prefix}-guard-{uuid.uuid4().hex[:6]}"
    settings = runtime.settings
    asyncio.run(skip_earlier_partials(settings.kafka_bootstrap or "", app_id,
                                      settings.topic("guard-partials"),
                                      settings.evaluation_partitions))
    workers = [WorkerProcess(runtime, log_dir, app_id=app_id) for _ in range(count)]
    for worker in workers:
        worker.env[DEDUP_ENV] = "1" if dedup else "0"
        if source is not None:
            worker.env["PYTHONPATH"] = str(source)
    for worker in workers:
        try:
            worker.start()
        except AssertionError:  # a loaded machine: its imports alone can take half a minute
            deadline = time.monotonic() + 180
            while not worker._serving():
                assert time.monotonic() < deadline, "worker did not start"
                time.sleep(0.5)
    processes = [psutil.Process(w.process.pid) for w in workers if w.process is not None]
    if os.environ.get("BENCH_PROFILE"):  # optional: sample the first worker with py-spy
        assert workers[0].process is not None
        subprocess.Popen([shutil.which("py-spy") or "py-spy", "record", "-p",
                          str(workers[0].process.pid), "-f", "raw", "-o",
                          os.environ["BENCH_PROFILE"], "-d", "30"])
    try:
        first = last = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            done = sum(w.metric("relctl_worker_evaluations_processed_total") or 0
                       for w in workers)
            counted = [w.metric("relctl_guard_evaluations_counted_total") for w in workers]
            finished = done if None in counted else sum(c or 0 for c in counted)
            now = time.perf_counter()
            if done and first is None:
                first = (now, done, sum(_cpu(p) for p in processes))
            if finished >= n:
                last = (now, finished, sum(_cpu(p) for p in processes))
                break
            # Each poll renders the worker's whole /metrics page (CPU the worker spends for
            # the benchmark): poll rarely until the end is near, then often, so the end is
            # still seen within 50 ms.
            time.sleep(0.05 if finished >= 0.8 * n or first is None else 0.5)
        assert first is not None, "worker processed nothing"
        assert last is not None, "worker did not finish"
        assert last[1] == n, f"stage 2 counted {last[1]} evaluations, not {n}"
        return Rate((last[1] - first[1]) / (last[0] - first[0]),
                    (last[1] - first[1]) / (last[2] - first[2]))
    finally:
        for worker in workers:
            worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--src", default="",
                        help="run the measured workers from this checkout instead of this one "
                             "(e.g. a `git archive` snapshot, so edits meanwhile do not leak in)")
    parser.add_argument("--baseline-src", default="",
                        help="a checkout of other code whose worker to measure in the same run")
    args = parser.parse_args()
    os.environ.setdefault("RELCTL_DATA_DIR", tempfile.mkdtemp())
    with services() as (db_url, kafka, scratch):
        settings = Settings(data_dir=scratch, database_url=db_url, kafka_bootstrap=kafka,
                            database_schema="bench_guard",
                            topic_prefix=f"bench{uuid.uuid4().hex[:6]}")
        runtime = bootstrap(settings)
        asyncio.run(ensure_topics(kafka or "", topic_specs(settings)))
        plane = ControlPlaneThread(runtime).start()
        rollout_with_guard(runtime, "bench", [rule(threshold=0.5, min_samples=100)])
        topic = settings.topic("evaluations")
        started = time.perf_counter()
        asyncio.run(produce(kafka or "", topic, args.n, args.batch, "bench"))
        print(f"produced {args.n} evaluations in {time.perf_counter() - started:.1f}s "
              f"({'batches of ' + str(args.batch) if args.batch > 1 else 'one per record'})")
        partitions = settings.evaluation_partitions
        raw = asyncio.run(raw_consume(kafka or "", topic, partitions, args.n))
        contract = asyncio.run(raw_consume(kafka or "", topic, partitions, args.n, "contract"))
        fast = asyncio.run(raw_consume(kafka or "", topic, partitions, args.n, "fast"))
        src = source_view(Path(args.src), Path(scratch) / "src") if args.src else None
        worker = worker_rate(runtime, args.n, Path(scratch), args.workers, source=src)
        plain = worker_rate(runtime, args.n, Path(scratch), args.workers, dedup=False,
                            source=src)
        baseline = None
        if args.baseline_src:
            view = source_view(Path(args.baseline_src), Path(scratch) / "baseline")
            baseline = worker_rate(runtime, args.n, Path(scratch), args.workers, source=view)
        plane.stop()
        runtime.close()
    print(f"raw aiokafka consume + orjson decode: {raw.wall:8.0f} evaluations/s "
          f"(per CPU second: {raw.cpu:8.0f})")
    for name, rate in (("raw + contract (pydantic) validation", contract),
                       ("raw + fast-path decode/validation", fast)):
        print(f"{name}: {rate.wall:8.0f}/s, {rate.of(raw)}")
    print(f"relctl worker x{args.workers}, de-dup on: {worker.wall:8.0f}/s "
          f"(per CPU second {worker.cpu:8.0f}), {worker.of(raw)}")
    print(f"  same, de-duplication off (benchmark only): {plain.wall:8.0f}/s "
          f"(per CPU second {plain.cpu:8.0f}), {plain.of(raw)}")
    if baseline is not None:
        print(f"  worker of {args.baseline_src}, de-dup on: {baseline.wall:8.0f}/s "
              f"(per CPU second {baseline.cpu:8.0f}), {baseline.of(raw)}")


if __name__ == "__main__":
    main()
