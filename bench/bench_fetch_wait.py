"""How the embedded broker answers waiting fetches, and what fetch waits cost: the facts behind
``adapters/fetch_wait.py``.

Run: .venv/bin/python -m bench.bench_fetch_wait [--samples 20]

On one embedded broker, in one run:
1. a record produced at a random moment while a consumer's fetch waits: time until the consumer
   has it, by fetch wait and by the number of partitions the fetch names;
2. one produce -> consume hop after an idle spell longer than the adaptive linger, for a
   consumer of 8 partitions with a fixed 10 ms wait (the baseline) and with adaptive waits
   (10 ms busy / N ms idle);
3. the broker's CPU while idle consumers poll it, by wait and partitions.
"""

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from pathlib import Path

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from relctl.adapters.fetch_wait import AdaptiveFetchWait
from relctl.adapters.kafka import TopicSpec, ensure_topics, make_producer
from relctl.infra.embedded import EmbeddedBroker

from bench.common import percentile


async def consumer_of(bootstrap: str, topic: str, partitions: int, wait_ms: int,
                      idle_ms: int | None = None) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=wait_ms,
                                auto_offset_reset="latest")
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    await consumer.seek_to_end()
    if idle_ms is not None:
        AdaptiveFetchWait(wait_ms, idle_ms).install(consumer)
    return consumer


def figures(values: list[float]) -> str:
    return (f"median {percentile(values, 50):7.1f} ms, p90 {percentile(values, 90):7.1f} ms, "
            f"max {max(values):7.1f} ms (n={len(values)})")


async def held(bootstrap: str, samples: int) -> None:
    print("1. data arriving while a fetch waits (time until the consumer has it):")
    producer = make_producer(bootstrap)
    await producer.start()
    for wait_ms in (100, 500, 2000):
        for partitions in (1, 4):
            topic = f"held-{uuid.uuid4().hex[:6]}"
            await ensure_topics(bootstrap, [TopicSpec(topic, partitions)])
            consumer = await consumer_of(bootstrap, topic, partitions, wait_ms)
            found = []
            for _ in range(samples):
                await asyncio.sleep(random.uniform(0, wait_ms / 1000) + 0.05)
                started = time.perf_counter()
                await producer.send_and_wait(topic, b"x", partition=random.randrange(partitions))
                await consumer.getone()
                found.append((time.perf_counter() - started) * 1000)
            await consumer.stop()
            print(f"   wait {wait_ms:5d} ms, {partitions} partition(s) per fetch: "
                  f"{figures(found)}")
    await producer.stop()


async def after_idle(bootstrap: str, samples: int) -> None:
    print("2. one hop after > 0.5 s idle, consumer of 8 partitions:")
    settings = {"fixed 10 ms (baseline)": None, "adaptive 10/50 ms": 50,
                "adaptive 10/100 ms": 100, "adaptive 10/200 ms": 200}
    topics = {name: f"idle-{uuid.uuid4().hex[:6]}" for name in settings}
    await ensure_topics(bootstrap, [TopicSpec(t, 8) for t in topics.values()])
    producer = make_producer(bootstrap)
    await producer.start()
    consumers = {name: await consumer_of(bootstrap, topics[name], 8, 10, idle)
                 for name, idle in settings.items()}
    found: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(samples):
        await asyncio.sleep(0.6 + random.random() * 0.3)
        for name, consumer in consumers.items():  # interleaved: load drift hits all alike
            started = time.perf_counter()
            await producer.send_and_wait(topics[name], b"x", partition=random.randrange(8))
            await consumer.getone()
            found[name].append((time.perf_counter() - started) * 1000)
    for name, consumer in consumers.items():
        await consumer.stop()
        print(f"   {name:24s}: {figures(found[name])}")
    await producer.stop()


async def idle_cost(bootstrap: str, broker_pid: int, seconds: float) -> None:
    print(f"3. broker CPU while 3 idle consumers poll it ({seconds:.0f} s each):")
    broker = psutil.Process(broker_pid)
    for wait_ms, partitions in ((10, 4), (50, 4), (100, 4), (500, 4), (1000, 1)):
        topic = f"cost-{uuid.uuid4().hex[:6]}"
        await ensure_topics(bootstrap, [TopicSpec(topic, partitions)])
        consumers = [await consumer_of(bootstrap, topic, partitions, wait_ms) for _ in range(3)]

        async def poll(consumer: AIOKafkaConsumer) -> None:
            while True:
                await consumer.getmany(timeout_ms=1000)

        tasks = [asyncio.create_task(poll(c)) for c in consumers]
        await asyncio.sleep(2)
        before, started = sum(broker.cpu_times()[:2]), time.monotonic()
        await asyncio.sleep(seconds)
        share = 100 * (sum(broker.cpu_times()[:2]) - before) / (time.monotonic() - started)
        for task in tasks:
            task.cancel()
        for consumer in consumers:
            await consumer.stop()
        print(f"   wait {wait_ms:5d} ms, {partitions} partition(s): broker {share:5.1f} % of a "
              "core")


async def main(samples: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="relctl-bench-fetch-") as scratch:
        broker = EmbeddedBroker(log_path=Path(scratch) / "broker.log")
        bootstrap = broker.start()
        try:
            assert broker.process is not None
            await held(bootstrap, samples)
            await after_idle(bootstrap, samples * 2)
            await idle_cost(bootstrap, broker.process.pid, seconds)
        finally:
            broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    asyncio.run(main(args.samples, args.seconds))
