"""Rebuild throughput of every read model, next to the raw notification-log read rate.

Run: .venv/bin/python -m bench.bench_projections [--events 1000000] [--database-url URL]
     [--schema NAME]  (keep the store in NAME and reuse it on the next run)

Generates a store of N control events quickly: real aggregates (tenants, tasks, releases,
rollouts) decide through their command methods, and the resulting events are encoded by the
application's mapper and inserted in bulk through the eventsourcing recorder (10,000 per
insert). The mix: ``--tenants`` registered tenants on two tasks with three releases each, then
tenant commands (flag flips, cohort moves, overrides set and cleared, pins), plus a rollout
or a default change every ``--task-every`` events (each of those re-resolves every tenant).

Then, in the same run and against the same database:
- raw: read the whole notification log in batches of the projector's batch size
  (``select_notifications``, no decoding) - the baseline;
- decode: the same read plus the mapper's decoding into domain events;
- rebuild: drop every read model and rebuild them all from the store (``ProjectorSet.rebuild``),
  then compare the content hashes with a second rebuild.
"""

import argparse
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from relctl.application.service import ControlPlane
from relctl.domain.release import Release, ReleaseSpec
from relctl.domain.rollout import Rollout
from relctl.domain.task import Task
from relctl.domain.tenant import FLAGS, Tenant
from relctl.projections.runner import BATCH, ProjectorSet

from bench.common import services

WHO = {"actor": "bench@example.com", "reason": "benchmark history"}
SPEC = {
    "prompt_template": "Score the call.", "model_provider": "openai", "model_name": "gpt-4o",
    "model_version": "gpt-4o-2024-08-06", "temperature": 0.0, "seed": 7,
    "output_schema": {"type": "object", "properties": {"score": {"type": "number"}}},
    "output_schema_version": "1",
}
TASKS = ("csat", "qa")


def _setup_events(tenants: int) -> tuple[list[Any], dict[str, Task], list[Tenant]]:
    out: list[Any] = []
    tasks = {}
    for key in TASKS:
        task = Task.open(key, **WHO)
        for number in (1, 2, 3):
            task.admit_release(number, **WHO)
            release = Release.draft(key, number, ReleaseSpec.from_dict({**SPEC, "seed": number}),
                                    **WHO)
            release.promote("Stable", **WHO)
            out += release.collect_events()
        task.set_default(1, **WHO)
        out += task.collect_events()
        tasks[key] = task
    people = []
    for n in range(tenants):
        tenant = Tenant.register(f"t{n:05d}", f"Tenant {n}", "general", **WHO)
        out += tenant.collect_events()
        people.append(tenant)
    return out, tasks, people


def _tenant_command(tenant: Tenant, rng: random.Random) -> None:
    choice = rng.randrange(6)
    task = rng.choice(TASKS)
    if choice <= 1:
        flag = rng.choice(FLAGS)
        tenant.flip_flag(flag, not tenant.flags[flag], **WHO)
    elif choice == 2:
        tenant.move_to_cohort(rng.choice([c for c in ("internal", "closed_beta", "open_beta",
                                                      "general") if c != tenant.cohort]), **WHO)
    elif choice == 3:
        tenant.set_override(task, "prompt", f"text {rng.random():.6f}", 1, **WHO)
    elif choice == 4 and "prompt" in tenant.overrides.get(task, {}).get("values", {}):
        tenant.clear_override(task, "prompt", **WHO)
    else:
        tenant.pin(task, rng.choice([1, 2, 3]), rng.choice([1, 30]), datetime.now(UTC), **WHO)


def _task_command(tasks: dict[str, Task], rollouts: dict[str, Rollout], rng: random.Random
                  ) -> list[Any]:
    key = rng.choice(TASKS)
    task = tasks[key]
    rollout = rollouts.get(key)
    if rollout is None:
        rollout = Rollout.plan(key, task.default_release or 1, 3 if task.default_release != 3
                               else 2, [10, 50, 100], None, False, **WHO)
        task.open_rollout(rollout.id, **WHO)
        rollout.start(**WHO)
        rollouts[key] = rollout
    elif rollout.step_index + 1 < len(rollout.steps):
        rollout.advance(**WHO)
    else:
        rollout.complete(**WHO)
        task.close_rollout(rollout.id, "Completed", rollout.candidate, **WHO)
        del rollouts[key]
    return [*rollout.collect_events(), *task.collect_events()]


def generate(total: int, tenants: int, task_every: int, seed: int = 1) -> Iterator[list[Any]]:
    """Yield chunks of domain events, in the order (and with the timestamps) they happened."""
    rng = random.Random(seed)
    first, tasks, people = _setup_events(tenants)
    yield first
    produced, chunk = len(first), []
    rollouts: dict[str, Rollout] = {}
    while produced < total:
        if task_every and produced % task_every == 0:
            events = _task_command(tasks, rollouts, rng)
        else:
            tenant = rng.choice(people)
            _tenant_command(tenant, rng)
            events = tenant.collect_events()
        chunk += events
        produced += len(events)
        if len(chunk) >= 10_000:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def fill(app: ControlPlane, total: int, tenants: int, task_every: int) -> int:
    stored = 0
    for chunk in generate(total, tenants, task_every):
        app.recorder.insert_events([app.mapper.to_stored_event(e) for e in chunk])
        stored += len(chunk)
    return stored


def read_rate(app: ControlPlane, decode: bool) -> tuple[int, float]:
    started, position, count = time.perf_counter(), 0, 0
    while True:
        batch = app.recorder.select_notifications(start=position + 1, limit=BATCH)
        if decode:
            for notification in batch:
                app.mapper.to_domain_event(notification)
        count += len(batch)
        if len(batch) < BATCH:
            return count, time.perf_counter() - started
        position = batch[-1].id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--task-every", type=int, default=20_000,
                        help="one rollout step or default change every N events (0: never)")
    parser.add_argument("--database-url", default=None,
                        help="an existing PostgreSQL (default: a private embedded one)")
    parser.add_argument("--schema", default=None,
                        help="keep the store in this schema (with --database-url): a later run "
                             "with the same schema reuses it instead of generating it again")
    args = parser.parse_args()
    if args.database_url:
        run(args, args.database_url)
    else:
        with services(broker=False) as (url, _, _):
            run(args, url)


def run(args: argparse.Namespace, url: str) -> None:
    from relctl.adapters.config import Settings

    schema = args.schema or f"bench_projections_{int(time.time())}"
    settings = Settings(database_url=url, database_schema=schema)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    app = ControlPlane(env=settings.eventsourcing_env())
    try:
        kept = app.recorder.max_notification_id() or 0
        if kept:
            print(f"store: {kept} events kept in schema {schema} (not generated again)")
        else:
            started = time.perf_counter()
            stored = fill(app, args.events, args.tenants, args.task_every)
            print(f"store: {stored} events generated and inserted in "
                  f"{time.perf_counter() - started:.1f} s ({args.tenants} tenants, "
                  f"{len(TASKS)} tasks, a task-level command every {args.task_every} events)")
        count, raw = read_rate(app, decode=False)
        print(f"raw notification-log read: {count} events in {raw:.2f} s = "
              f"{count / raw:,.0f} events/s", flush=True)
        count, decoded = read_rate(app, decode=True)
        print(f"read + decode to domain events: {count / decoded:,.0f} events/s")
        with ProjectorSet(app, url, schema) as projectors:
            started, cpu = time.perf_counter(), time.process_time()
            projectors.rebuild()
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            rate = count / elapsed
            print(f"rebuild of all read models: {count} events in {elapsed:.1f} s = "
                  f"{rate:,.0f} events/s = {rate / (count / raw):.0%} of the raw read rate "
                  f"(this process used {cpu:.1f} s of CPU: {count / cpu:,.0f} events per "
                  "CPU-second, PostgreSQL's own work not included)", flush=True)
            rows = {table: projectors._read().execute(
                f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]  # noqa: S608
                for view in projectors.views for table in view.tables}
            print("rows: " + ", ".join(f"{t} {n}" for t, n in rows.items()))
            first = projectors.content_hash()
            projectors.rebuild()
            print(f"second rebuild identical (content hash): {projectors.content_hash() == first}")
    finally:
        app.close()
        if not args.schema:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
