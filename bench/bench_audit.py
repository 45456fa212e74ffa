"""Audit trail: verify and export rates over a large trail, next to a raw SELECT of the same
rows in the same run.

Run: .venv/bin/python -m bench.bench_audit [--rows 1000000] [--database-url URL]

The trail is written by the production audit view (``projections.views.AuditTrail``: its
``handle`` builds each row's canonical content and chains its hash, its ``flush`` COPYs the
batch) from synthetic stored events of the shapes the store holds (a tenant's flag flip or
override, a release stage change, a rollout step; actor, role, reason, before/after, evidence).
Generating them through real aggregates would take the rebuild's time (see
bench_projections), and verify/export read only the table.

Then, against the same table:
- raw: ``SELECT * FROM relctl_rm_audit`` in the pages the verifier uses (10,000 rows, keyset
  on ``seq``), rows fetched and dropped - the baseline;
- verify: ``queries.verify_audit`` (the same pages, plus JSON parsing, re-hashing and the
  column checks); it must answer ok;
- export: ``queries.export_audit`` as JSON Lines and as CSV into a byte-counting sink.
"""

import argparse
import io
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from relctl.adapters.postgres import Database
from relctl.domain.read_models import AuditFormat, ProjectionName
from relctl.projections import queries
from relctl.projections.runner import TRACKING
from relctl.projections.views import AuditTrail, Fold, Step

from bench.common import services

START = datetime(2026, 1, 1, tzinfo=UTC)
SHAPES: tuple[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any] | None], ...] = (
    ("Tenant.FlagFlipped", "tenant", {"flags": {"enable_blueprints": False}},
     {"flags": {"enable_blueprints": True}}, None),
    ("Tenant.OverrideSet", "tenant", {"overrides": {}},
     {"overrides": {"csat": {"base_release": 1, "values": {"prompt": {
         "value": "Score politeness first.", "by": "ops@example.com",
         "reason": "customer asked"}}}}}, None),
    ("Release.StageChanged", "release", {"stage": "Beta"}, {"stage": "Stable"}, None),
    ("Rollout.StepAdvanced", "rollout", {"step_index": 0, "current_step": 10},
     {"step_index": 1, "current_step": 50}, None),
    ("Rollout.Paused", "rollout", {"state": "Running"}, {"state": "Paused"},
     {"rule": "errors", "decision_id": "r:errors:1", "value": 0.07, "threshold": 0.05}),
)


class Sink(io.TextIOBase):
    """Counts what is written; keeps nothing."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return len(text)


def _step(n: int) -> Step:
    name, kind, before, after, evidence = SHAPES[n % len(SHAPES)]
    raw = {"actor": "ops@example.com" if n % 7 else "relctl-guard",
           "role": "operator" if n % 7 else "service",
           "reason": f"benchmark change {n}", "task": "csat" if n % 2 else "qa",
           "evidence": evidence}
    return Step(position=n, at=START + timedelta(milliseconds=n), topic=f"bench:{name}",
                name=name, event=None, aggregate_id=f"00000000-0000-0000-0000-{n % 5000:012d}",
                aggregate_version=n // 5000 + 1, kind=kind, aggregate=None, before=before,
                after=after, raw=raw)


def fill(url: str, schema: str, rows: int, batch: int = 10_000) -> float:
    view, fold = AuditTrail(), Fold()
    started = time.perf_counter()
    with psycopg.connect(url, options=f"-c search_path={schema}") as conn:
        for statement in view.ddl:
            conn.execute(statement)  # type: ignore[arg-type]
        conn.execute(f"CREATE TABLE {TRACKING} (name text PRIMARY KEY, position bigint NOT NULL)")
        for first in range(1, rows + 1, batch):
            for n in range(first, min(first + batch, rows + 1)):
                view.handle(_step(n), fold)
            with conn.cursor() as cur:
                view.flush(cur, fold)
            conn.commit()
        conn.execute(f"INSERT INTO {TRACKING} VALUES (%s, %s)",  # noqa: S608
                     (ProjectionName.AUDIT.value, rows))
        conn.commit()
    return time.perf_counter() - started


def raw_read(db: Database) -> tuple[int, float]:
    started, last, count = time.perf_counter(), 0, 0
    while True:
        page = db.execute("SELECT * FROM relctl_rm_audit WHERE seq > %s ORDER BY seq LIMIT %s",
                          (last, queries.PAGE))
        count += len(page)
        if len(page) < queries.PAGE:
            return count, time.perf_counter() - started
        last = page[-1]["seq"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None,
                        help="an existing PostgreSQL (default: a private embedded one)")
    args = parser.parse_args()
    if args.database_url:
        run(args.rows, args.database_url)
    else:
        with services(broker=False) as (url, _, _):
            run(args.rows, url)


def run(rows: int, url: str) -> None:
    schema = f"bench_audit_{int(time.time())}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    db = Database(url, schema)
    db.open()
    try:
        took = fill(url, schema, rows)
        print(f"trail: {rows} rows written by the audit view in {took:.1f} s "
              f"({rows / took:,.0f} rows/s)")
        count, raw = raw_read(db)
        raw_rate = count / raw
        print(f"raw SELECT (pages of {queries.PAGE}): {count} rows in {raw:.2f} s = "
              f"{raw_rate:,.0f} rows/s")
        started = time.perf_counter()
        verdict = queries.verify_audit(db)
        took = time.perf_counter() - started
        if not verdict.ok or verdict.rows != rows:
            raise SystemExit(f"the trail does not verify: {verdict}")
        print(f"verify: {verdict.rows} rows in {took:.2f} s = {rows / took:,.0f} rows/s = "
              f"{rows / took / raw_rate:.0%} of the raw read rate (ok: {verdict.ok})")
        for fmt in (AuditFormat.JSONL, AuditFormat.CSV):
            sink = Sink()
            started = time.perf_counter()
            written = queries.export_audit(db, sink, fmt)
            took = time.perf_counter() - started
            print(f"export {fmt.value}: {written} rows ({sink.chars / 1e6:.0f} M characters) "
                  f"in {took:.2f} s = {written / took:,.0f} rows/s = "
                  f"{written / took / raw_rate:.0%} of the raw read rate")
    finally:
        db.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
