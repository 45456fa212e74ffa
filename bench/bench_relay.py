"""Relay throughput: stored events -> broker, vs raw aiokafka produce of the same payloads.

Run: .venv/bin/python -m bench.bench_relay [--n 20000]

Stores N control events (tenant registrations, saved 100 aggregates per transaction), then
times the relay draining the notification log into `relctl.control` until every event is
acknowledged. The baseline, in the same run against the same broker, produces the identical
(key, value, headers) records with a bare aiokafka producer in the same batch pattern, into a
fresh topic with the same partition count.
"""

import argparse
import asyncio
import time
from dataclasses import replace

from relctl.adapters import cloudevents
from relctl.adapters.config import Settings
from relctl.adapters.kafka import TopicSpec, ensure_topics, make_producer
from relctl.domain.tenant import Tenant
from relctl.infra.bootstrap import bootstrap

from bench.common import services


async def relay_drain(runtime, total: int) -> float:  # type: ignore[no-untyped-def]
    relay = runtime.relay
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(relay.run(stop))
    while relay.published < total:  # noqa: ASYNC110 - polling the relay's own counter
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return elapsed


async def raw_produce(bootstrap_servers: str, records: list, batch: int) -> float:  # type: ignore[type-arg]
    await ensure_topics(bootstrap_servers, [TopicSpec("bench.raw", 4)])
    producer = make_producer(bootstrap_servers)
    await producer.start()
    started = time.perf_counter()
    for offset in range(0, len(records), batch):
        futures = [await producer.send("bench.raw", value=v, key=k, headers=h)
                   for k, v, h in records[offset:offset + batch]]
        await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    with services() as (db_url, kafka, scratch):
        settings = Settings(data_dir=scratch, database_url=db_url, kafka_bootstrap=kafka,
                            database_schema="bench_relay")
        runtime = bootstrap(replace(settings, relay_check_interval=3600))
        for offset in range(0, args.n, 100):
            runtime.app.save(*[Tenant.register(f"t{i}", "", "general", "bench", "bench load")
                               for i in range(offset, min(offset + 100, args.n))])
        notifications = runtime.app.recorder.select_notifications(start=1, limit=args.n)
        records = [cloudevents.to_kafka(runtime.app.mapper.to_domain_event(n), n.id)
                   for n in notifications]
        relay_seconds = asyncio.run(relay_drain(runtime, args.n))
        raw_seconds = asyncio.run(raw_produce(kafka or "", records, settings.relay_batch_size))
        runtime.close()
    relay_rate, raw_rate = args.n / relay_seconds, args.n / raw_seconds
    print(f"events: {args.n}, batch size {settings.relay_batch_size}")
    print(f"raw aiokafka produce (pre-encoded): {raw_rate:9.0f} events/s")
    print(f"relay store -> broker (acked):      {relay_rate:9.0f} events/s "
          f"({relay_rate / raw_rate:.0%} of raw)")


if __name__ == "__main__":
    main()
