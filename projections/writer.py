"""Writes a folded batch while the next one is folded: PostgreSQL ingests batch N on one core
while Python folds batch N+1 on the other.

A view's ``flush`` writes into a ``RecordedWrites`` (the cursor calls it makes, kept as they
are); the ``BatchWriter`` thread then replays them into one transaction that also moves the
views' tracking positions, exactly as the runner does for a batch written in line. The
transaction first locks the tracking rows and checks they are still where this runner left
them: if another runner moved or dropped them, nothing is written and the caller forgets its
fold (``StaleBatch``). So a batch and its positions still commit together or not at all.
"""

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import pq
from relctl.projections.views import TRACKING


def lock_positions(cur: psycopg.Cursor[Any], names: Sequence[str]) -> dict[str, int]:
    """The tracked positions of the views ``names``, locked until the transaction ends: a
    second runner waits here, then finds the batch already projected."""
    cur.execute(f"SELECT name, position FROM {TRACKING} "  # noqa: S608
                "WHERE name = ANY(%s) FOR UPDATE", (list(names),))
    return {name: int(position) for name, position in cur.fetchall()}


def advance_positions(cur: psycopg.Cursor[Any], last: int, names: Sequence[str]) -> None:
    """Move the views ``names`` to ``last``, in the transaction that wrote their batch."""
    cur.execute(f"UPDATE {TRACKING} SET position = %s "  # noqa: S608
                "WHERE name = ANY(%s)", (last, list(names)))


class StaleBatch(Exception):  # noqa: N818 - a condition the runner handles, not an error
    """The tracking rows moved since this runner read them: the batch was not written."""


class _Info:
    def __init__(self, pipelined: bool) -> None:
        self.pipeline_status = pq.PipelineStatus.ON if pipelined else pq.PipelineStatus.OFF


class _Connection:
    def __init__(self, pipelined: bool) -> None:
        self.info = _Info(pipelined)


class _Copy:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.rows: list[tuple[Any, ...]] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def write_row(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)


@dataclass
class RecordedWrites:
    """The write calls of a view's ``flush``, to be made later on a real cursor.

    It offers what flushes use (``execute``, ``executemany``, ``copy``) and tells them
    whether the replay will run in a pipeline (where COPY is not possible), as a real cursor
    does. Flushes only write, so nothing is read back."""

    pipelined: bool = False
    calls: list[tuple[str, Any, Any]] = field(default_factory=list)

    @property
    def connection(self) -> _Connection:
        return _Connection(self.pipelined)

    def execute(self, query: Any, params: Any = None) -> None:
        self.calls.append(("execute", query, params))

    def executemany(self, query: Any, params: Any) -> None:
        self.calls.append(("executemany", query, list(params)))

    @contextmanager
    def copy(self, statement: Any) -> Iterator[_Copy]:
        recorded = _Copy()
        yield recorded
        self.calls.append(("copy", statement, recorded))

    def replay(self, cur: psycopg.Cursor[Any]) -> None:
        for kind, query, params in self.calls:
            if kind == "execute":
                cur.execute(query, params)
            elif kind == "executemany":
                cur.executemany(query, params)
            else:
                with cur.copy(query) as copy:
                    for chunk in params.chunks:
                        copy.write(chunk)
                    for row in params.rows:
                        copy.write_row(row)


@dataclass
class Batch:
    """One folded batch, ready to commit: its writes, and where it moves which views."""

    writes: RecordedWrites
    expected: dict[str, int]  # every view's tracked position when the batch was folded
    advance: list[str]  # the views the batch moves to ``last`` (those it was behind)
    last: int


class BatchWriter:
    """One thread that commits batches, one at a time and in order, on the given connection.

    The runner must not use the connection while a batch is in flight (``submit`` until its
    future is done)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projector-writer")

    def submit(self, batch: Batch) -> "Future[None]":
        return self.pool.submit(self._commit, batch)

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def _commit(self, batch: Batch) -> None:
        if not batch.advance:
            return
        with self.conn.transaction(), self.conn.cursor() as cur:
            if lock_positions(cur, list(batch.expected)) != batch.expected:
                raise StaleBatch(f"tracking positions moved (expected {batch.expected})")
            with self.conn.pipeline() if batch.writes.pipelined else nullcontext():
                batch.writes.replay(cur)
                advance_positions(cur, batch.last, batch.advance)
