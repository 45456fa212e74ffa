"""Runs the read models over the notification log, exactly once per event per view.

Each batch of notifications is applied in one PostgreSQL transaction that also moves the
views' tracking positions; the tracking rows are locked (``FOR UPDATE``) first, so a second
runner waits and then finds the events already projected. A crash anywhere loses only the
uncommitted batch, and a restarted runner resumes from the committed positions. Between
batches the runner sleeps on the event store's LISTEN/NOTIFY channel, so new events are
projected as soon as they are committed.

Views read the control aggregates as of each event (a fold kept in memory). The fold is not
persisted: a runner rebuilds it by reading the log from the start without writing, which is
the same pure code as the live path (and costs a read of the log on every start).
"""

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any

import psycopg
from eventsourcing.persistence import Notification, OperationalError
from eventsourcing.utils import TopicError
from psycopg import sql
from relctl.application.service import ControlPlane
from relctl.domain.base import ControlAggregate
from relctl.domain.errors import UnavailableError
from relctl.domain.read_models import ProjectionName, ReplayReport
from relctl.projections.views import (
    TRACKING,
    Fold,
    ResolutionListener,
    Step,
    View,
    all_views,
    content_hash_sql,
    snapshot,
)
from relctl.projections.writer import (
    Batch,
    BatchWriter,
    RecordedWrites,
    StaleBatch,
    advance_positions,
    lock_positions,
)

logger = logging.getLogger(__name__)

BATCH = 20_000
PIPELINE_MAX = 64
PROBE = 1000
_MISSING: Any = object()


def _snapshot(aggregate: Any) -> dict[str, Any] | None:
    if not isinstance(aggregate, ControlAggregate):
        return None
    try:
        summary = aggregate.summary()
    except NotImplementedError:
        return None
    return snapshot(summary)


@contextmanager
def _collector_paused(pause: bool) -> Iterator[None]:
    """No cyclic garbage collection while a big batch is folded.

    The fold keeps every control aggregate and the batch's intervals alive: each automatic
    collection walks them all again, which cost about a fifth of a rebuild's CPU time. The
    batch creates almost no cycles (reference counting frees its garbage); the collector runs
    again as usual once the batch is applied."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class ProjectorSet:
    """The read models of one relctl schema, and the loop that keeps them current."""

    def __init__(self, app: ControlPlane, database_url: str, schema: str,
                 views: Sequence[View] | None = None, batch_size: int = BATCH,
                 listener: ResolutionListener | None = None) -> None:
        self.app = app
        self.url = database_url
        self.schema = schema
        self.views = list(views) if views is not None else all_views(listener)
        self.batch_size = batch_size
        self.conn: psycopg.Connection[Any] | None = None
        # Reads of positions and hashes use their own connection: the runner's one may be in
        # the middle of a batch's transaction, whose uncommitted positions must not be seen.
        self.reader: psycopg.Connection[Any] | None = None
        self._lock = threading.RLock()
        self._forget()

    # ---- connection and tables ------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, options=f"-c search_path={self.schema}",
                               connect_timeout=5)

    def open(self) -> "ProjectorSet":
        self.conn = self._connect()
        self.conn.autocommit = True
        self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
            sql.Identifier(self.schema)))
        self.setup()
        return self

    def close(self) -> None:
        for conn in (self.conn, self.reader):
            if conn is not None:
                conn.close()
        self.conn = self.reader = None

    def __enter__(self) -> "ProjectorSet":
        return self.open()

    def __exit__(self, *_: object) -> None:
        self.close()

    def _db(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            self.open()
        assert self.conn is not None
        return self.conn

    def _read(self) -> psycopg.Connection[Any]:
        if self.reader is None or self.reader.closed:
            self.reader = self._connect()
            self.reader.autocommit = True
        return self.reader

    def setup(self) -> None:
        conn = self._db()
        with conn.transaction():
            # One creator at a time: concurrent CREATE TABLE IF NOT EXISTS can still collide.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.rm'))")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {TRACKING} ("
                         " name text PRIMARY KEY, position bigint NOT NULL)")
            for view in self.views:
                for statement in view.ddl:
                    conn.execute(statement)  # type: ignore[arg-type]
                conn.execute(f"INSERT INTO {TRACKING} VALUES (%s, 0) "  # noqa: S608
                             "ON CONFLICT (name) DO NOTHING", (view.name.value,))

    def _forget(self) -> None:
        """Drop the in-memory fold: the next batch rebuilds it from the log's start."""
        self.fold = Fold()
        self.folded = 0
        # Each aggregate's snapshot after the last event (by its id's integer): the next
        # event's "before".
        self.snapshots: dict[int, dict[str, Any] | None] = {}
        self._loaded = False
        # The positions this runner last committed (or loaded at): a view found elsewhere
        # was advanced by another runner, and reloads what it keeps from its tables.
        self._committed: dict[ProjectionName, int] = {}
        for view in self.views:
            view.reset()

    # ---- positions ------------------------------------------------------------------------

    def positions(self) -> dict[ProjectionName, int]:
        rows = self._read().execute(f"SELECT name, position FROM {TRACKING}").fetchall()  # noqa: S608
        known = {view.name.value for view in self.views}
        return {ProjectionName(name): int(pos) for name, pos in rows if name in known}

    def position(self) -> int:
        """The position every view has reached (the slowest one)."""
        return min(self.positions().values(), default=0)

    def head(self) -> int:
        return int(self.app.recorder.max_notification_id() or 0)

    # ---- the loop -------------------------------------------------------------------------

    def catch_up(self, limit: int | None = None) -> int:
        """Project every event committed so far (or ``limit`` events); return how many."""
        done = 0
        with ExitStack() as paused:
            while limit is None or done < limit:
                size = self.batch_size if limit is None else min(self.batch_size, limit - done)
                if done == 0:
                    # A first batch no larger than needed to tell a backlog: it is written in
                    # line, while every later one is written beside the next one's fold.
                    size = min(size, PROBE)
                count = self.step(size)
                done += count
                if count == 0:
                    break
                if count > PIPELINE_MAX and done == count:
                    # A backlog (a rebuild, a restart's refold): the collector stays paused
                    # until it is read, not only during each batch (see _collector_paused).
                    paused.enter_context(_collector_paused(True))
                if count == size and (limit is None or done < limit):
                    # A full batch: more are waiting. Fold each next one while the one before
                    # is written; then go on in line (which also picks up a stale fold).
                    done += self._overlapped(None if limit is None else limit - done)
        return done

    def _overlapped(self, limit: int | None) -> int:
        """Project batches while the previous one commits on the writer thread: PostgreSQL's
        ingest of batch N runs beside the fold of batch N+1. Each batch is still one
        transaction with its positions (see ``projections.writer``). Returns how many events
        were committed; stops early, having forgotten its fold, if another runner moved the
        positions (the next ``step`` refolds)."""
        done = taken = 0
        with self._lock:
            positions = [self._committed.get(v.name, -1) for v in self.views]
            writer = BatchWriter(self._db())
            inflight: tuple[Future[None], list[View], int, int] | None = None
            try:
                while limit is None or taken < limit:
                    size = self.batch_size if limit is None else min(self.batch_size,
                                                                     limit - taken)
                    notifications = self.app.recorder.select_notifications(
                        start=self.folded + 1, limit=size)
                    if not notifications:
                        break
                    taken += len(notifications)
                    with _collector_paused(len(notifications) > PIPELINE_MAX):
                        self._apply(notifications, positions)
                    last = notifications[-1].id
                    if inflight is not None:
                        done += self._landed(*inflight)
                        inflight = None
                    behind = [v for v, p in zip(self.views, positions, strict=True) if p < last]
                    writes = RecordedWrites(pipelined=len(notifications) <= PIPELINE_MAX)
                    for view in behind:
                        view.flush(writes, self.fold)  # type: ignore[arg-type]
                    expected = {v.name.value: p for v, p in zip(self.views, positions,
                                                                 strict=True)}
                    inflight = (writer.submit(Batch(writes, expected,
                                                    [v.name.value for v in behind], last)),
                                behind, last, len(notifications))
                    self.folded = last
                    positions = [max(p, last) for p in positions]
                if inflight is not None:
                    done += self._landed(*inflight)
            except StaleBatch:
                self._forget()
            except BaseException:
                self._forget()
                raise
            finally:
                writer.close()
        return done

    def _landed(self, future: "Future[None]", behind: list[View], last: int, count: int) -> int:
        """Wait for a batch written on the writer thread; tell its views it committed."""
        future.result()
        for view in behind:
            view.committed(last)
            self._committed[view.name] = last
        return count

    def step(self, limit: int, stop: int | None = None) -> int:
        """Read one batch (up to notification id ``stop``, if given) and apply it; every write
        and the positions commit together."""
        with self._lock:
            notifications = self.app.recorder.select_notifications(
                start=self.folded + 1, limit=limit, stop=stop)
            if not notifications:
                return 0
            conn = self._db()
            stale = False
            try:
                with conn.transaction(), conn.cursor() as cur:
                    tracked = lock_positions(cur, [v.name.value for v in self.views])
                    positions = [tracked.get(v.name.value, -1) for v in self.views]
                    # A view behind our fold was dropped (rebuilt) by someone else: our memory
                    # is of no use to it, so start again from the log's first event.
                    stale = any(p < self.folded for p in positions)
                    if not stale:
                        self._project(cur, notifications, positions)
            except BaseException:
                self._forget()
                raise
            if stale:
                self._forget()
                if any(p < 0 for p in positions):
                    self.setup()
                return self.step(limit, stop)
            last = notifications[-1].id
            self.folded = last
            for view, position in zip(self.views, positions, strict=True):
                view.committed(max(position, last))
                self._committed[view.name] = max(position, last)
            return len(notifications)

    def _project(self, cur: Any, notifications: Sequence[Notification],
                 positions: list[int]) -> None:
        for view, position in zip(self.views, positions, strict=True):
            if not self._loaded or self._committed.get(view.name) != position:
                view.load(cur)
        self._loaded = True
        with _collector_paused(len(notifications) > PIPELINE_MAX):
            self._apply(notifications, positions)
        last = notifications[-1].id
        behind = [v for v, p in zip(self.views, positions, strict=True) if p < last]
        # A small (live) batch sends its writes in one pipeline: a round trip, not one per
        # statement, between a command's commit and the read models showing it.
        with cur.connection.pipeline() if len(notifications) <= PIPELINE_MAX else nullcontext():
            for view in behind:
                view.flush(cur, self.fold)
            advance_positions(cur, last, [v.name.value for v in behind])

    def _apply(self, notifications: Sequence[Notification], positions: list[int]) -> None:
        mapper = self.app.mapper
        fold = self.fold
        by_int = fold.view.by_int
        snapshots = self.snapshots
        views = self.views
        # Only views that keep memory of every event, and only views that prepare for one.
        observers = [v for v in views if type(v).observe is not View.observe]
        ahead = max(positions)
        active: list[View] = []
        preparing: list[View] = []
        for notification in notifications:
            if not active or len(active) < len(views):
                active = views if notification.id > ahead else [
                    v for v, p in zip(views, positions, strict=True) if p < notification.id]
                preparing = [v for v in active if type(v).prepare is not View.prepare]
            raw: dict[str, Any] = {}
            try:
                event: Any = mapper.to_domain_event(notification)
                at = event.timestamp
            except TopicError:
                # A type this code base does not know (newer writer, retired class): no view
                # can fold it, but the audit trail still records it and every position advances.
                event = None
                raw = mapper.transcoder.decode(notification.state)
                at = raw.get("timestamp")
            aggregate_id: Any = notification.originator_id
            number = aggregate_id.int  # UUID.__hash__ is Python code; its int is a slot
            before = None
            aggregate = None
            if event is not None:
                for view in preparing:
                    view.prepare(at, fold)
                if active:
                    before = snapshots.get(number, _MISSING)
                    if before is _MISSING:
                        before = _snapshot(by_int(number))
                fold.view.apply(event)
                aggregate = by_int(number)
            fold.observe(aggregate)
            after = None
            if active and event is not None:
                after = snapshots[number] = _snapshot(aggregate)
            else:
                snapshots.pop(number, None)
            step = Step(
                position=notification.id, at=at, topic=notification.topic,
                name=type(event).__qualname__ if event is not None else notification.topic,
                event=event, raw=raw, aggregate_id=str(aggregate_id),
                aggregate_version=notification.originator_version,
                kind=getattr(aggregate, "kind", None), aggregate=aggregate,
                before=before, after=after,
            )
            for view in observers:
                view.observe(step, fold)
            for view in active:
                view.handle(step, fold)

    def run(self, stop: threading.Event, idle_wait: float = 1.0) -> None:
        """Project until ``stop`` is set, waking on the store's NOTIFY (or every idle_wait)."""
        listener = self._connect()
        listener.autocommit = True
        try:
            listener.execute(sql.SQL("LISTEN {}").format(
                sql.Identifier(self.app.recorder.channel_name)))  # type: ignore[attr-defined]
            while not stop.is_set():
                try:
                    if self.catch_up():
                        continue
                except (psycopg.Error, OperationalError) as exc:
                    # Database down, or tables dropped by a concurrent rebuild: retry later.
                    logger.warning("projector batch failed, retrying: %s", exc)
                    self.close()
                    stop.wait(idle_wait)
                    continue
                for _ in listener.notifies(timeout=idle_wait, stop_after=1):
                    pass
        finally:
            listener.close()

    def wait_for(self, position: int, timeout: float = 5.0) -> None:
        """Read-your-writes: return once every view has reached ``position``."""
        deadline = time.monotonic() + timeout
        while self.position() < position:
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"the read models are behind the event store (at {self.position()}, "
                    f"need {position}); is the projector running (relctl project)?")
            time.sleep(0.01)

    # ---- rebuild and comparison -----------------------------------------------------------

    def drop(self, names: Iterable[ProjectionName] | None = None) -> None:
        chosen = set(names) if names is not None else {v.name for v in self.views}
        conn = self._db()
        with self._lock, conn.transaction():
            for view in self.views:
                if view.name in chosen:
                    for table in view.tables:
                        conn.execute(f"DROP TABLE IF EXISTS {table}")  # type: ignore[arg-type]
                    conn.execute(f"DELETE FROM {TRACKING} WHERE name = %s",  # noqa: S608
                                 (view.name.value,))
            self._forget()
        self.setup()

    def rebuild(self, names: Iterable[ProjectionName] | None = None) -> int:
        self.drop(names)
        return self.catch_up()

    def content_hash(self) -> dict[ProjectionName, str]:
        """A hash of every row of each view: two builds agree iff their rows do."""
        conn = self._read()
        result = {}
        for view in self.views:
            parts = [str(conn.execute(q).fetchone()[0])  # type: ignore[index, arg-type]
                     for q in content_hash_sql(view.tables)]
            result[view.name] = "/".join(parts)
        return result


def _hashes(conn: psycopg.Connection[Any], views: Sequence[View]) -> dict[str, str]:
    return {view.name.value: "/".join(str(conn.execute(q).fetchone()[0])  # type: ignore[index, arg-type]
                                      for q in content_hash_sql(view.tables))
            for view in views}


def replay(app: ControlPlane, database_url: str, schema: str,
           names: Iterable[ProjectionName] | None = None,
           on_progress: Callable[[int, int], None] = lambda done, total: None,
           keep: bool = False) -> ReplayReport:
    """Rebuild read models from the store in a scratch schema, up to the live ones' position,
    and compare every row with the live views (which keep serving meanwhile).

    The live side is read in one REPEATABLE READ snapshot: its position and its rows belong to
    the same instant however far the live projector moves on during the replay. The scratch
    schema is dropped afterwards unless ``keep``."""
    chosen = set(names) if names else set(ProjectionName)
    views = [v for v in all_views() if v.name in chosen]
    scratch = f"{schema}_replay_{int(time.time() * 1000)}"
    with psycopg.connect(database_url, options=f"-c search_path={schema}") as live:
        live.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        rows = live.execute(f"SELECT name, position FROM {TRACKING} "  # noqa: S608
                            "WHERE name = ANY(%s)", ([v.name.value for v in views],)).fetchall()
        tracked = {name: int(position) for name, position in rows}
        missing = [v.name.value for v in views if v.name.value not in tracked]
        if missing:
            raise UnavailableError(f"no live read model {', '.join(missing)} in schema {schema}; "
                                   "run the projector first (relctl project)")
        if len(set(tracked.values())) > 1:
            raise UnavailableError(f"the live read models are at different positions "
                                   f"({tracked}); replay them one at a time")
        target = next(iter(tracked.values()))
        live_hashes = _hashes(live, views)
        started = time.perf_counter()
        try:
            with ProjectorSet(app, database_url, scratch, views=views) as rebuilt:
                done = 0
                on_progress(0, target)
                while rebuilt.folded < target:
                    count = rebuilt.step(rebuilt.batch_size, stop=target)
                    if count == 0:
                        break
                    done += count
                    on_progress(rebuilt.folded, target)
                seconds = time.perf_counter() - started
                rebuilt_hashes = _hashes(rebuilt._read(), views)
        finally:
            if not keep:
                with psycopg.connect(database_url, autocommit=True) as conn:
                    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(scratch)))
    return ReplayReport(views=[v.name for v in views], position=target, events=done,
                        seconds=seconds, live=live_hashes, rebuilt=rebuilt_hashes)
