"""Guard worker throughput vs raw aiokafka consume-and-decode of the same topic.

Run: .venv/bin/python -m bench.bench_guard [--n 200000] [--batch 100]

Pre-produces N evaluations to a fresh topic (as CloudEvents batch records of --batch
evaluations each, the producer helper's format; --batch 1 sends one binary CloudEvent per
evaluation), then measures in the same run:

1. raw: a bare aiokafka consumer reading every record and decoding it with orjson;
2. raw + validate: the same, plus pydantic validation of every evaluation (relctl's decoder);
3. worker: one `relctl worker` process (Faust) doing decode, validation, attribution to the
   rollout arm, windowing and guard evaluation, timed from its first processed evaluation to
   its last (read from its Prometheus counter), so group join time is excluded;
4. the same worker with de-duplication off (RELCTL_BENCH_GUARD_DEDUP=0, for benchmarks only),
   reading the same topic in a fresh consumer group.
"""

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from relctl.adapters import ingest
from relctl.adapters.config import Settings
from relctl.adapters.kafka import ensure_topics, make_producer, topic_specs
from relctl.domain.evaluation import EvaluationRecord
from relctl.infra.bootstrap import bootstrap
from relctl.streams.app import DEDUP_ENV

from bench.common import services
from tests.integration.guard_helpers import (
    ControlPlaneThread,
    WorkerProcess,
    evaluation,
    rollout_with_guard,
    rule,
)


async def produce(bootstrap_servers: str, topic: str, n: int, batch: int, task: str) -> None:
    producer = make_producer(bootstrap_servers)
    await producer.start()
    records = [EvaluationRecord.from_mapping(evaluation(task, 2 if i % 2 else 1, i,
                                                          error=i % 100 == 0))
               for i in range(n)]
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


async def raw_consume(bootstrap_servers: str, topic: str, partitions: int, n: int,
                      validate: bool) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    seen = 0
    started = time.perf_counter()
    while seen < n:
        batch = await consumer.getmany(timeout_ms=500, max_records=5000)
        for records in batch.values():
            for record in records:
                if validate:
                    seen += len(ingest.decode(record.value, dict(record.headers)).records)
                else:
                    data = orjson.loads(record.value)
                    seen += len(data) if isinstance(data, list) else 1
    elapsed = time.perf_counter() - started
    await consumer.stop()
    return elapsed


def worker_rate(runtime, n: int, log_dir: Path, count: int = 1,  # type: ignore[no-untyped-def]
                dedup: bool = True) -> float:
    """Evaluations/s of ``count`` workers in one consumer group, first to last processed."""
    app_id = f"{runtime.settings.topic_prefix}-guard-{uuid.uuid4().hex[:6]}"
    workers = [WorkerProcess(runtime, log_dir, app_id=app_id) for _ in range(count)]
    for worker in workers:
        worker.env[DEDUP_ENV] = "1" if dedup else "0"
    for worker in workers:
        worker.start()
    if os.environ.get("BENCH_PROFILE"):  # optional: sample the first worker with py-spy
        assert workers[0].process is not None
        subprocess.Popen([shutil.which("py-spy") or "py-spy", "record", "-p",
                          str(workers[0].process.pid), "-f", "raw", "-o",
                          os.environ["BENCH_PROFILE"], "-d", "30"])
    try:
        first = last = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = sum(w.metric("relctl_worker_evaluations_processed_total") or 0
                       for w in workers)
            now = time.perf_counter()
            if done and first is None:
                first = (now, done)
            if done >= n:
                last = (now, done)
                break
            time.sleep(0.1)
        assert first is not None, "worker processed nothing"
        assert last is not None, "worker did not finish"
        return (last[1] - first[1]) / (last[0] - first[0])
    finally:
        for worker in workers:
            worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
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
        raw = args.n / asyncio.run(raw_consume(kafka or "", topic, partitions, args.n, False))
        validated = args.n / asyncio.run(raw_consume(kafka or "", topic, partitions, args.n,
                                                     True))
        worker = worker_rate(runtime, args.n, Path(scratch), args.workers)
        plain = worker_rate(runtime, args.n, Path(scratch), args.workers, dedup=False)
        plane.stop()
        runtime.close()
    print(f"raw aiokafka consume + orjson decode: {raw:10.0f} evaluations/s")
    print(f"raw + relctl decode/validate:         {validated:10.0f} evaluations/s "
          f"({validated / raw:.0%} of raw)")
    print(f"relctl worker x{args.workers} (attribute, window, guard): {worker:6.0f} "
          f"evaluations/s ({worker / raw:.1%} of raw, {worker / validated:.0%} of raw + "
          "validate)")
    print(f"  same, de-duplication off (benchmark only): {plain:6.0f} evaluations/s "
          f"({plain / raw:.1%} of raw; de-dup costs {1 - worker / plain:.0%})")


if __name__ == "__main__":
    main()
