"""A backlog's batches are written on the writer thread while the next is folded: the rows
must equal an in-line build, and a batch whose positions moved must write nothing."""

import random
from concurrent.futures import Future
from typing import Any

import psycopg
import pytest
from relctl.infra.bootstrap import Runtime
from relctl.projections import runner
from relctl.projections.runner import ProjectorSet
from relctl.projections.views import TRACKING
from relctl.projections.writer import Batch, BatchWriter, RecordedWrites, StaleBatch

from tests.integration.read_support import random_commands, seed_tasks

pytestmark = pytest.mark.integration


class CountingWriter(BatchWriter):
    """The real writer, counting the batches it was given."""

    submitted = 0

    def submit(self, batch: Batch) -> "Future[None]":
        CountingWriter.submitted += 1
        return super().submit(batch)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> type[CountingWriter]:
    CountingWriter.submitted = 0
    monkeypatch.setattr(runner, "BatchWriter", CountingWriter)
    return CountingWriter


def _projectors(runtime: Runtime, suffix: str, batch: int) -> ProjectorSet:
    settings = runtime.settings
    assert settings.database_url
    return ProjectorSet(runtime.app, settings.database_url,
                        f"{settings.database_schema}_{suffix}", batch_size=batch)


def test_overlapped_batches_build_the_same_rows_as_one_batch_in_line(
        runtime: Runtime, counting: type[CountingWriter]) -> None:
    seed_tasks(runtime.app)
    random_commands(runtime.app, random.Random(11), 150)
    head = runtime.app.recorder.max_notification_id()
    with _projectors(runtime, "inline", 10**6) as inline:
        assert inline.catch_up() == head
        assert counting.submitted == 0  # one batch: nothing to overlap
        expected = inline.content_hash()
    # 9: each batch sent in one pipeline; 70: larger than a pipeline's batch, sent in line.
    for batch in (9, 70):
        counting.submitted = 0
        with _projectors(runtime, f"overlapped{batch}", batch) as overlapped:
            assert overlapped.catch_up() == head
            assert counting.submitted == -(-head // batch) - 1  # all but the first batch
            assert overlapped.content_hash() == expected
            assert set(overlapped.positions().values()) == {head}


def test_overlapped_catch_up_honours_its_limit(
        runtime: Runtime, counting: type[CountingWriter]) -> None:
    seed_tasks(runtime.app)
    random_commands(runtime.app, random.Random(5), 60)
    with _projectors(runtime, "limited", 7) as projectors:
        assert projectors.catch_up(limit=40) == 40
        assert counting.submitted > 0
        assert set(projectors.positions().values()) == {40}


def _tracking(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(conn.execute(f"SELECT name, position FROM {TRACKING}").fetchall())


def test_a_batch_whose_positions_moved_writes_nothing(runtime: Runtime) -> None:
    seed_tasks(runtime.app, ("csat",))
    with _projectors(runtime, "stale", 1000) as projectors:
        projectors.catch_up()
        assert projectors.conn is not None
        before = _tracking(projectors.conn)
        audit_rows = projectors.conn.execute("SELECT count(*) FROM relctl_rm_audit").fetchone()
        writes = RecordedWrites()
        writes.execute("DELETE FROM relctl_rm_audit")
        moved = {name: position - 1 for name, position in before.items()}
        writer = BatchWriter(projectors.conn)
        try:
            with pytest.raises(StaleBatch):
                writer.submit(Batch(writes, moved, list(moved), 10**6)).result()
        finally:
            writer.close()
        assert _tracking(projectors.conn) == before
        assert projectors.conn.execute(
            "SELECT count(*) FROM relctl_rm_audit").fetchone() == audit_rows
