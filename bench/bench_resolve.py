"""GET /v1/resolve: answers per second and latency, from the resolution read model (now, with
``?at=``, and revalidated with If-None-Match) next to the old in-memory fold and a bare SELECT
of the same row, all in the same run against the same store.

Run: .venv/bin/python -m bench.bench_resolve [--events 1000000] [--tenants 10000]
     [--requests 2000] [--database-url URL]

Builds a store of N control events with bench_projections' generator (real aggregates, the
app's mapper), projects it (``ProjectorSet.catch_up``), then serves two APIs in this process
(uvicorn in threads, each with its own runtime): one with a projector keeping the in-memory copy
(``relctl up``'s wiring), one without (the fold). One client sends sequential requests for
random registered tenant x task pairs. Conditions to report: the client, both servers and the
projector share this process and its GIL; the machine's load.

It also measures the projection's extra lag: from a command's commit (the application call
returning) to the in-memory copy holding it, i.e. what a poll of /v1/resolve after an automatic
rollback waits beyond the fold, and the fold's own catch-up after the same command.
"""

import argparse
import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import uvicorn
from relctl.adapters.config import Settings
from relctl.entrypoints.api.app import create_api
from relctl.infra.bootstrap import Runtime, bootstrap
from relctl.infra.embedded import free_port
from relctl.infra.projector import start_projectors

from bench.bench_projections import TASKS, fill
from bench.common import percentile, services


@contextmanager
def serve(runtime: Runtime) -> Iterator[httpx.Client]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_api(runtime), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    token = runtime.tokens.create("bench", "admin", created_by="bench")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def measure(name: str, count: int, call: Callable[[int], Any], baseline: float | None = None
            ) -> float:
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        begin = time.perf_counter()
        call(i)
        latencies.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - started
    rate = count / elapsed
    versus = f" ({rate / baseline:.0%} of the bare SELECT)" if baseline else ""
    print(f"{name:<46} {rate:>9,.0f} /s{versus:<26} p50 {percentile(latencies, 50) * 1e3:6.2f} ms"
          f"  p99 {percentile(latencies, 99) * 1e3:6.2f} ms  (n={count})")
    return rate


def get(client: httpx.Client, params: dict[str, str], status: int = 200,
        headers: dict[str, str] | None = None) -> httpx.Response:
    response = client.get("/v1/resolve", params=params, headers=headers)
    assert response.status_code == status, response.text
    return response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--task-every", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--fold-at-requests", type=int, default=20,
                        help="the fold refolds the whole log per ?at= request: keep this small")
    parser.add_argument("--lag-trials", type=int, default=100)
    parser.add_argument("--database-url", default=None,
                        help="an existing PostgreSQL (default: a private embedded one)")
    args = parser.parse_args()
    if args.database_url:
        run(args, args.database_url)
    else:
        with services(broker=False) as (url, _, _):
            run(args, url)


def run(args: argparse.Namespace, url: str) -> None:  # noqa: PLR0915 - one linear script
    schema = f"bench_resolve_{int(time.time())}"
    settings = Settings(database_url=url, database_schema=schema)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    projected, folded = bootstrap(settings), bootstrap(settings)
    projectors = None
    try:
        started = time.perf_counter()
        first = datetime.now(UTC)
        stored = fill(projected.app, args.events, args.tenants, args.task_every)
        last = datetime.now(UTC)
        print(f"store: {stored} events in {time.perf_counter() - started:.1f} s "
              f"({args.tenants} tenants, {len(TASKS)} tasks)")
        started = time.perf_counter()
        projectors = start_projectors(projected.app, settings, idle_wait=0.2,
                                      listener=projected.state.projected())
        current = projected.state.current
        assert current is not None
        head = int(projected.app.recorder.max_notification_id() or 0)
        while not current.wait_for(head, 5.0):
            pass
        print(f"projected (in-memory copy loaded) in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        folded.state.catch_up()
        print(f"fold caught up (every event in memory) in {time.perf_counter() - started:.1f} s")

        rng = random.Random(7)
        pairs = [{"tenant": f"t{rng.randrange(args.tenants):05d}", "task": rng.choice(TASKS)}
                 for _ in range(args.requests)]
        span = (last - first).total_seconds()
        # The later half of the store's history: every tenant and default exists by then.
        instants = [(first + timedelta(seconds=(0.5 + rng.random() / 2) * span)).isoformat()
                    for _ in range(args.requests)]
        with psycopg.connect(url, options=f"-c search_path={schema}") as conn, \
                serve(projected) as new, serve(folded) as old:
            select = ("SELECT resolution, etag FROM relctl_rm_resolution WHERE tenant = %s "
                      "AND task = %s AND valid_from <= %s AND (valid_to IS NULL OR valid_to > %s)")

            def bare(i: int) -> None:
                now = datetime.now(UTC)
                conn.execute(select, (pairs[i]["tenant"], pairs[i]["task"], now, now)).fetchone()

            def bare_at(i: int) -> None:
                at = datetime.fromisoformat(instants[i])
                conn.execute(select, (pairs[i]["tenant"], pairs[i]["task"], at, at)).fetchone()

            for client in (new, old):  # warm up: connections, token cache
                for i in range(20):
                    get(client, pairs[i])
            etags = {i: get(new, pairs[i]).headers["etag"] for i in range(args.requests)}
            base = measure("bare SELECT of the row (now)", args.requests, bare)
            measure("/v1/resolve from the read model (now)", args.requests,
                    lambda i: get(new, pairs[i]), base)
            measure("  with If-None-Match (304)", args.requests,
                    lambda i: get(new, pairs[i], 304, {"If-None-Match": etags[i]}), base)
            base_at = measure("bare SELECT of the row (?at=)", args.requests, bare_at)
            measure("/v1/resolve from the read model (?at=)", args.requests,
                    lambda i: get(new, {**pairs[i], "at": instants[i]}), base_at)
            measure("/v1/resolve from the fold (now)", args.requests,
                    lambda i: get(old, pairs[i]), base)
            measure("  with If-None-Match (304)", args.requests,
                    lambda i: get(old, pairs[i], 304, {"If-None-Match": etags[i]}), base)
            measure("/v1/resolve from the fold (?at=)", min(args.fold_at_requests, args.requests),
                    lambda i: get(old, {**pairs[i], "at": instants[i]}), base_at)
            same = sum(get(new, pairs[i]).json() == get(old, pairs[i]).json()
                       for i in range(min(200, args.requests)))
            print(f"same answer from both paths: {same} of {min(200, args.requests)}")

        lags, folds = [], []
        for n in range(args.lag_trials):
            tenant = pairs[n]["tenant"]
            flags = projected.app.tenant(tenant).flags
            projected.app.flip_flag(tenant, "enable_blueprints", not flags["enable_blueprints"],
                                    actor="bench", reason="lag trial")
            committed = time.perf_counter()
            head = int(projected.app.recorder.max_notification_id() or 0)
            assert current.wait_for(head, 10.0)
            lags.append(time.perf_counter() - committed)
            begin = time.perf_counter()
            folded.state.catch_up()
            folds.append(time.perf_counter() - begin)
        print(f"command commit -> in-memory copy has it ({args.lag_trials} flag flips): "
              f"p50 {percentile(lags, 50) * 1e3:.2f} ms, p99 {percentile(lags, 99) * 1e3:.2f} ms"
              f"; the fold's catch-up after the same command: p50 "
              f"{percentile(folds, 50) * 1e3:.2f} ms, p99 {percentile(folds, 99) * 1e3:.2f} ms")
    finally:
        if projectors is not None:
            projectors.stop()
        projected.close()
        folded.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
