"""Commands per second through the HTTP API (event stored) vs raw eventsourcing saves.

Run: .venv/bin/python -m bench.bench_commands [--n 1500] [--clients 4]

Starts an embedded PostgreSQL, runs `relctl up` against it as a separate process (API +
relay + embedded broker), and drives it with httpx clients. The baseline, measured in the same
run on the same PostgreSQL, is the eventsourcing library alone: create-and-save of a minimal
aggregate, and load-change-save, single-threaded, no HTTP.
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from relctl.infra.embedded import free_port, wait_for_port

from bench.common import services, summary


class Counter(Aggregate):
    @event("Created")
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @event("Incremented")
    def increment(self, by: int) -> None:
        self.count += by


def raw_eventsourcing(url: str, n: int) -> tuple[float, float]:
    from relctl.adapters.config import Settings

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench_raw")
    env = Settings(database_url=url, database_schema="bench_raw").eventsourcing_env()
    app = Application(env=env)
    started = time.perf_counter()
    ids = []
    for i in range(n):
        counter = Counter(name=f"c{i}")
        app.save(counter)
        ids.append(counter.id)
    creates = n / (time.perf_counter() - started)
    started = time.perf_counter()
    for aggregate_id in ids:
        counter = app.repository.get(aggregate_id)
        counter.increment(by=1)
        app.save(counter)
    updates = n / (time.perf_counter() - started)
    app.close()
    return creates, updates


def drive(
    url: str, token: str, n: int, clients: int, kind: str, prefix: str,
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        mine = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          timeout=30) as client:
            for i in range(offset, n, clients):
                started = time.perf_counter()
                if kind == "create":
                    response = client.post("/v1/tenants", json={
                        "key": f"{prefix}{i}", "reason": "benchmark onboarding"})
                else:
                    response = client.post(f"/v1/tenants/{prefix}{i}/flags/enable_blueprints",
                                           json={"enabled": True, "reason": "benchmark flip"})
                mine.append(time.perf_counter() - started)
                assert response.status_code in (200, 201), response.text
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return n / (time.perf_counter() - started), latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1,
                        help="guard workers `relctl up` runs beside the API (they share the CPU)")
    args = parser.parse_args()
    with services(broker=False) as (db_url, _, scratch):
        creates, updates = raw_eventsourcing(db_url, args.n)
        port = free_port()
        env = {**os.environ, "RELCTL_DATABASE_URL": db_url, "RELCTL_DATABASE_SCHEMA": "bench_api"}
        env.pop("RELCTL_KAFKA_BOOTSTRAP", None)
        data_dir = Path(scratch) / "data"
        process = subprocess.Popen(
            [sys.executable, "-m", "relctl.entrypoints.cli", "up", "--data-dir", str(data_dir),
             "--api-port", str(port), "--workers", str(args.workers)], env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            wait_for_port("127.0.0.1", port, timeout=60)
            token = (data_dir / "admin-token").read_text().strip()
            url = f"http://127.0.0.1:{port}"
            print(f"raw eventsourcing, 1 thread, no HTTP: {creates:8.0f} creates/s, "
                  f"{updates:8.0f} load-change-save/s")
            for clients in (1, args.clients):
                prefix = f"t{clients}-"
                rate, lat = drive(url, token, args.n, clients, "create", prefix)
                print(f"API create tenant, {clients} client(s): {rate:8.0f} commands/s "
                      f"({rate / creates:.0%} of raw creates); {summary(lat)}")
                rate, lat = drive(url, token, args.n, clients, "update", prefix)
                print(f"API flip flag,     {clients} client(s): {rate:8.0f} commands/s "
                      f"({rate / updates:.0%} of raw load-change-save); {summary(lat)}")
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
