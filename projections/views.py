"""The read models: PostgreSQL tables, each fed one batch of events at a time.

A view never writes on its own. The runner (``projections.runner``) hands it each event past
its tracking position, then asks it to ``flush`` the batch's changes into the transaction that
also moves its position, so a view change and its position commit together or not at all.
Every view has a default branch: an event type it does not know changes nothing, and its
position still advances with the batch.
"""

import hashlib
import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from psycopg import Cursor, pq
from relctl.domain.errors import NotFoundError
from relctl.domain.ids import release_id, task_id, tenant_id
from relctl.domain.read_models import Cause, ChangeKind, ProjectionName
from relctl.domain.release import Release
from relctl.domain.resolution import ControlView, resolve
from relctl.domain.rollout import Rollout
from relctl.domain.task import Task
from relctl.domain.tenant import Tenant

GENESIS = "0" * 64
TRACKING = "relctl_rm_tracking"  # each view's position: (name, position)


def canonical(value: Any) -> bytes:
    """One byte string per value: sorted keys, so hashes and ETags are stable."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def snapshot(summary: dict[str, Any]) -> dict[str, Any]:
    """A copy of an aggregate's summary that later mutations of the aggregate cannot reach:
    scalars as they are, every other value as its canonical JSON (bytes).

    The aggregates mutate their dicts in place, so a before/after pair needs a copy; encoding
    each field once is cheaper than a deep copy (or a JSON round trip of the whole summary),
    the audit row embeds the bytes as they are, and unchanged fields compare as bytes."""
    return {k: v if type(v) in _SCALARS else canonical(v) for k, v in summary.items()}


# Below this many rows (or inside a pipeline, which cannot COPY) a batch inserts with one
# multi-row INSERT ... unnest: a live batch of a few events then costs one round trip per table.
COPY_MIN = 200


def _pipelined(cur: Cursor[Any]) -> bool:
    return cur.connection.info.pipeline_status != pq.PipelineStatus.OFF


def insert_rows(cur: Cursor[Any], table: str, types: tuple[str, ...],
                rows: list[tuple[Any, ...]]) -> None:
    """Append ``rows`` (in the table's column order) with COPY, or one INSERT for a few."""
    if not rows:
        return
    if len(rows) >= COPY_MIN and not _pipelined(cur):
        with cur.copy(f"COPY {table} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    arrays = ", ".join(f"%s::{kind}[]" for kind in types)
    cur.execute(f"INSERT INTO {table} SELECT * FROM unnest({arrays})",  # type: ignore[arg-type]  # noqa: S608
                [list(column) for column in zip(*rows, strict=True)])


@dataclass
class Step:
    """One stored event as the views see it: decoded, with the aggregate before and after."""

    position: int
    at: datetime
    topic: str
    name: str
    event: Any | None  # None when the stored event's class cannot be imported here
    aggregate_id: str
    aggregate_version: int
    kind: str | None
    aggregate: Any | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    raw: dict[str, Any] = field(default_factory=dict)  # the decoded state of an unknown event

    def attr(self, name: str) -> Any:
        if self.event is not None:
            return getattr(self.event, name, None)
        return self.raw.get(name)


class CachedView(ControlView):
    """The domain's ControlView with its key -> id derivations (UUIDv5) memoised and the
    aggregates also indexed by the id's integer and by their keys: the projector resolves many
    pairs per event, and deriving ids and hashing UUID objects (``UUID.__hash__`` is Python
    code) dominated."""

    def __init__(self) -> None:
        super().__init__()
        self._ids: dict[tuple[Any, ...], int] = {}
        self._by_int: dict[int, Any] = {}
        # Each aggregate found at the id its key derives to, by that key.
        self._tenants: dict[str, Tenant] = {}
        self._tasks: dict[str, Task] = {}
        self._releases: dict[tuple[str, int], Release] = {}
        self._details: dict[tuple[str, int], tuple[int | None, dict[str, Any]]] = {}
        self._detail_json: dict[tuple[str, int], tuple[int | None, orjson.Fragment]] = {}

    def _id(self, kind: str, *key: Any) -> int:
        found = self._ids.get((kind, *key))
        if found is None:
            makers: dict[str, Callable[..., Any]] = {
                "task": task_id, "tenant": tenant_id, "release": release_id}
            found = self._ids[(kind, *key)] = makers[kind](*key).int
        return found

    def apply(self, domain_event: Any) -> None:
        number = domain_event.originator_id.int
        known = self._by_int.get(number)
        aggregate = domain_event.mutate(known)
        if aggregate is not known:
            self._by_int[number] = aggregate
            self.aggregates[domain_event.originator_id] = aggregate
            self._index(known, aggregate, number)
        self.last_timestamp = domain_event.timestamp

    def by_int(self, number: int) -> Any:
        """The aggregate whose id's integer is ``number``, if any."""
        return self._by_int.get(number)

    def _index(self, old: Any, new: Any, number: int) -> None:
        for aggregate, keep in ((old, False), (new, True)):
            if isinstance(aggregate, Tenant):
                index: dict[Any, Any] = self._tenants
                key: Any = aggregate.key
                derived = self._id("tenant", key)
            elif isinstance(aggregate, Task):
                index, key = self._tasks, aggregate.key
                derived = self._id("task", key)
            elif isinstance(aggregate, Release):
                index, key = self._releases, (aggregate.task, aggregate.number)
                derived = self._id("release", *key)
            else:
                continue
            if derived != number:
                continue
            if keep:
                index[key] = aggregate
            elif index.get(key) is aggregate:
                del index[key]

    def get(self, aggregate_id: Any, kind: type) -> Any:
        aggregate = self._by_int.get(aggregate_id if isinstance(aggregate_id, int)
                                     else aggregate_id.int)
        return aggregate if isinstance(aggregate, kind) else None

    def task(self, key: str) -> Task | None:
        found = self._tasks.get(key)
        return found if found is not None else self.get(self._id("task", key), Task)  # type: ignore[no-any-return]

    def tenant(self, key: str) -> Tenant | None:
        found = self._tenants.get(key)
        return found if found is not None else self.get(self._id("tenant", key), Tenant)  # type: ignore[no-any-return]

    def release(self, task: str, number: int) -> Release | None:
        found = self._releases.get((task, number))
        return found if found is not None else self.get(  # type: ignore[no-any-return]
            self._id("release", task, number), Release)

    def release_detail(self, task: str, number: int) -> dict[str, Any]:
        # Shared, never mutated: the answer is serialised straight away.
        release = self.release(task, number)
        version = release.version if release is not None else None
        found = self._details.get((task, number))
        if found is None or found[0] != version:
            found = self._details[(task, number)] = (version, super().release_detail(task,
                                                                                     number))
        return found[1]

    def release_detail_json(self, task: str, number: int) -> orjson.Fragment:
        """``release_detail`` as canonical JSON, encoded once per version of the release."""
        release = self.release(task, number)
        version = release.version if release is not None else None
        found = self._detail_json.get((task, number))
        if found is None or found[0] != version:
            found = self._detail_json[(task, number)] = (version, orjson.Fragment(
                canonical(self.release_detail(task, number))))
        return found[1]


@dataclass
class Fold:
    """What every view may read: the control aggregates as of the current event."""

    view: CachedView = field(default_factory=CachedView)
    tenants: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)

    def observe(self, aggregate: Any) -> None:
        if isinstance(aggregate, Tenant):
            self.tenants.add(aggregate.key)
        elif isinstance(aggregate, Task):
            self.tasks.add(aggregate.key)


class View:
    """A read model: its tables, what it does with one event, how it writes a batch."""

    name: ProjectionName
    tables: tuple[str, ...] = ()
    ddl: tuple[str, ...] = ()

    def observe(self, step: Step, fold: Fold) -> None:
        """Called for every event, projected or not (keeps derived memory, such as "since")."""

    def prepare(self, at: datetime, fold: Fold) -> None:
        """Called before an event (at ``at``) past this view's position is applied to the
        fold: the last moment the fold still shows the state before it."""

    def handle(self, step: Step, fold: Fold) -> None:
        """Called for each event past this view's position; the default ignores it."""

    def load(self, cur: Cursor[Any]) -> None:
        """Read what the view needs from its own tables before its first batch."""

    def flush(self, cur: Cursor[Any], fold: Fold) -> None:
        """Write the batch's changes in the caller's transaction, then forget them."""

    def committed(self, position: int) -> None:
        """Called once the batch's transaction has committed; the view is at ``position``."""

    def reset(self) -> None:
        """Forget anything buffered (the batch's transaction was rolled back)."""


# ---- resolution history -------------------------------------------------------------------


@dataclass
class Interval:
    valid_from: datetime
    valid_to: datetime | None
    resolution: bytes
    etag: str
    cause: Cause


# Tenant events that concern one task (their ``task`` attribute) or a list (``tasks``); the
# others (flags, cohort) concern every task of the tenant.
TASK_SCOPED = {"Tenant.OverrideSet", "Tenant.OverrideCleared", "Tenant.Pinned",
               "Tenant.Unpinned"}


def _affected(step: Step, fold: Fold) -> list[tuple[str, str]]:
    aggregate = step.aggregate
    if isinstance(aggregate, Tenant):
        if step.name in TASK_SCOPED:
            return [(aggregate.key, step.attr("task"))]
        if step.name == "Tenant.ResetToDefaults":
            return [(aggregate.key, task) for task in step.attr("tasks")]
        return [(aggregate.key, task) for task in sorted(fold.tasks)]
    if isinstance(aggregate, Task):
        return [(tenant, aggregate.key) for tenant in sorted(fold.tenants)]
    if isinstance(aggregate, Release | Rollout):
        return [(tenant, aggregate.task) for tenant in sorted(fold.tenants)]
    return []


def _interval(view: ControlView, tenant: str, task: str, start: datetime, end: datetime | None,
              cause: Cause) -> Interval | None:
    try:
        answer = resolve(view, tenant, task, start).as_dict()
    except NotFoundError:
        return None
    if isinstance(view, CachedView):
        # The same bytes as encoding the details again, which every answer repeats.
        answer["release_detail"] = view.release_detail_json(task, answer["release"])
        if answer["shadow_release"] is not None:
            answer["shadow_release_detail"] = view.release_detail_json(
                task, answer["shadow_release"])
    body = canonical(answer)
    return Interval(start, end, body, hashlib.sha256(body).hexdigest()[:20], cause)


def _copy_text(value: str | bytes) -> bytes:
    """A field of PostgreSQL's COPY text format (our values hold no tabs or newlines: keys
    match a pattern and JSON escapes control characters; only backslashes need doubling)."""
    raw = value.encode() if isinstance(value, str) else value
    return raw.replace(b"\\", b"\\\\")


def copy_field(value: str | None) -> bytes:
    """Any text (or NULL) as a field of COPY's text format: backslash, tab, line feed and
    carriage return escaped."""
    if value is None:
        return b"\\N"
    raw = value.encode()
    if b"\\" in raw:
        raw = raw.replace(b"\\", b"\\\\")
    if b"\t" in raw or b"\n" in raw or b"\r" in raw:
        raw = raw.replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
    return raw


RESOLUTION_TYPES = ("text", "text", "timestamptz", "timestamptz", "jsonb", "text", "jsonb")
Pair = tuple[str, str]
# A pair's current intervals, as published after each commit: (valid_from, valid_to, body, etag).
Published = dict[Pair, list[tuple[datetime, datetime | None, bytes, str]]]


class ResolutionHistory(View):
    """Per registered tenant x task: the answer of ``resolve`` as validity intervals.

    The current state is the interval containing now; ``?at=`` is the interval containing
    ``at``. A pin opens two intervals: pinned until its expiry, then what applies after it, so
    the pin stops applying at its instant without any new command. An event at ``t`` rewrites
    a pair's future from ``t``: later intervals go, the one spanning ``t`` ends at ``t``.

    The view keeps each pair's stored intervals that a later event can still change (those
    ending after the last event: at most the open one and a pin's two), loaded from the table
    before the first batch. A batch then deletes and truncates stored rows by primary key
    instead of searching the pair's whole history, which grows with every event.
    ``listener`` (if any) receives, after each commit, the current intervals of the pairs the
    batch changed: an in-memory copy for ``/v1/resolve``.
    """

    name = ProjectionName.RESOLUTION
    tables = ("relctl_rm_resolution",)
    ddl = (
        "CREATE TABLE IF NOT EXISTS relctl_rm_resolution ("
        " tenant text NOT NULL, task text NOT NULL, valid_from timestamptz NOT NULL,"
        " valid_to timestamptz, resolution jsonb NOT NULL, etag text NOT NULL,"
        " cause jsonb NOT NULL, PRIMARY KEY (tenant, task, valid_from))",
    )

    def __init__(self, listener: "ResolutionListener | None" = None) -> None:
        self.pending: dict[Pair, tuple[datetime, list[Interval]]] = {}
        # A pin's second interval (what applies after its expiry) is resolved only when it
        # survives: when the batch ends or an event comes at or after the expiry (``prepare``),
        # whichever is first. Until then no event touching its pair has been folded, so the
        # fold still holds the state it would have been resolved in; an earlier event on the
        # pair deletes it unresolved (in the benchmark's mix, most of them).
        self.lazy: dict[Pair, Interval] = {}
        self.expiries: list[tuple[datetime, int, Pair, Interval]] = []  # a heap
        self._pushed = itertools.count()
        # Rows already in the table that a later event may still delete or truncate.
        self.stored: dict[Pair, list[Interval]] = {}
        self.deletes: dict[tuple[str, str, datetime], None] = {}
        self.truncations: dict[tuple[str, str, datetime], datetime] = {}
        self.listener = listener
        self.published: Published = {}

    def load(self, cur: Cursor[Any]) -> None:
        self.reset()
        self.stored = {}
        # Every interval a future event can change ends after the last projected event, and
        # an event-caused interval starts at its event: so this bound keeps a superset.
        cur.execute(
            "SELECT tenant, task, valid_from, valid_to, resolution::text, etag, cause::text "
            "FROM relctl_rm_resolution WHERE valid_to IS NULL OR valid_to > (SELECT "
            "coalesce(max(valid_from), '-infinity') FROM relctl_rm_resolution "
            "WHERE cause->>'kind' = %s) ORDER BY tenant, task, valid_from",
            (ChangeKind.EVENT.value,))
        for tenant, task, start, end, body, etag, cause in cur.fetchall():
            answer = canonical(orjson.loads(body))
            raw = orjson.loads(cause)
            self.stored.setdefault((tenant, task), []).append(Interval(
                start, end, answer, etag, Cause(ChangeKind(raw["kind"]), raw["position"],
                                                raw["event"], raw["actor"], raw["reason"])))
        if self.listener is not None:
            cur.execute(f"SELECT position FROM {TRACKING} WHERE name = %s",  # noqa: S608
                        (self.name.value,))
            row = cur.fetchone()
            self.listener.replace({pair: _published(intervals)
                                   for pair, intervals in self.stored.items()},
                                  int(row[0]) if row else 0)

    def prepare(self, at: datetime, fold: Fold) -> None:
        expiries = self.expiries
        while expiries and expiries[0][0] <= at:
            _, _, pair, interval = heapq.heappop(expiries)
            self._resolve_lazy(fold.view, pair, interval)

    def _resolve_lazy(self, view: ControlView, pair: Pair, interval: Interval) -> None:
        if self.lazy.get(pair) is not interval:
            return  # deleted by a later event of the pair, or resolved already
        del self.lazy[pair]
        kept = self.pending[pair][1]
        done = _interval(view, pair[0], pair[1], interval.valid_from, None, interval.cause)
        if done is None:
            # It is the pair's last interval: every later event of the pair deleted it.
            del kept[next(n for n in range(len(kept) - 1, -1, -1) if kept[n] is interval)]
        else:
            interval.resolution, interval.etag = done.resolution, done.etag

    def _resolve_all(self, view: ControlView) -> None:
        for pair, interval in list(self.lazy.items()):
            self._resolve_lazy(view, pair, interval)
        self.expiries.clear()

    def handle(self, step: Step, fold: Fold) -> None:
        pairs = _affected(step, fold)
        if not pairs:
            return
        cause = Cause(ChangeKind.EVENT, step.position, step.name, step.attr("actor"),
                      step.attr("reason"))
        for tenant, task in pairs:
            self._rewrite(fold.view, tenant, task, step.at, cause)

    def _rewrite_stored(self, tenant: str, task: str, at: datetime) -> None:
        stored = self.stored.pop((tenant, task), None)
        for interval in stored or ():
            key = (tenant, task, interval.valid_from)
            if interval.valid_from >= at:
                self.truncations.pop(key, None)
                self.deletes[key] = None
            elif interval.valid_to is None or interval.valid_to > at:
                interval.valid_to = at
                self.truncations[key] = at
            # Every stored interval now ends at or before ``at``: no later event changes it.

    def _rewrite(self, view: ControlView, tenant: str, task: str, at: datetime,
                 cause: Cause) -> None:
        pair = (tenant, task)
        if pair in self.stored:
            self._rewrite_stored(tenant, task, at)
        found = self.pending.get(pair)
        if found is None:
            kept: list[Interval] = []
            self.pending[pair] = (at, kept)
        else:
            earliest, kept = found
            if at < earliest:
                self.pending[pair] = (at, kept)
        tenant_state = view.tenant(tenant)
        pin = tenant_state.active_pin(task, at) if tenant_state else None
        # The batch's intervals of a pair are ordered and do not overlap: only the last ones
        # can start at or after ``at``, and only the one before them can span it.
        lazy = self.lazy.get(pair)
        while kept and kept[-1].valid_from >= at:
            if kept.pop() is lazy:
                del self.lazy[pair]
        if kept and (kept[-1].valid_to is None or kept[-1].valid_to > at):
            if kept[-1] is lazy:
                raise RuntimeError("an interval spanning a new event was not resolved before "
                                   "the event was folded (prepare() was not called)")
            kept[-1].valid_to = at
        first = _interval(view, tenant, task, at, None, cause)
        if first is not None and pin is not None:
            expiry = datetime.fromisoformat(pin["expires_at"])
            first.valid_to = expiry
            kept.append(first)
            expired = Cause(ChangeKind.PIN_EXPIRED, cause.position, "PinExpired", None,
                            f"pin to v{pin['release']} expired")
            after = Interval(expiry, None, b"", "", expired)  # resolved later, if it survives
            kept.append(after)
            self.lazy[pair] = after
            heapq.heappush(self.expiries, (expiry, next(self._pushed), pair, after))
        elif first is not None:
            kept.append(first)

    def flush(self, cur: Cursor[Any], fold: Fold) -> None:
        self._resolve_all(fold.view)
        # One statement each, by primary key: a batch that follows another truncates about
        # one stored interval per pair it touches (thousands in a backlog's batch).
        if self.deletes:
            tenants, tasks, starts = zip(*self.deletes, strict=True)
            cur.execute("DELETE FROM relctl_rm_resolution r USING unnest(%s::text[], "
                        "%s::text[], %s::timestamptz[]) AS d(tenant, task, valid_from) "
                        "WHERE r.tenant = d.tenant AND r.task = d.task "
                        "AND r.valid_from = d.valid_from",
                        (list(tenants), list(tasks), list(starts)))
        if self.truncations:
            tenants, tasks, starts = zip(*self.truncations, strict=True)
            cur.execute("UPDATE relctl_rm_resolution r SET valid_to = t.valid_to FROM "
                        "unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) "
                        "AS t(tenant, task, valid_from, valid_to) WHERE r.tenant = t.tenant "
                        "AND r.task = t.task AND r.valid_from = t.valid_from",
                        (list(tenants), list(tasks), list(starts),
                         list(self.truncations.values())))
        rows = sum(len(intervals) for _, intervals in self.pending.values())
        if rows >= COPY_MIN and not _pipelined(cur):
            self._copy(cur)
        elif rows:
            causes: dict[int, str] = {}  # one event's cause is shared by its pairs
            insert_rows(cur, "relctl_rm_resolution", RESOLUTION_TYPES, [
                (tenant, task, i.valid_from, i.valid_to, i.resolution.decode(), i.etag,
                 causes.get(id(i.cause)) or causes.setdefault(
                     id(i.cause), canonical(i.cause.as_dict()).decode()))
                for (tenant, task), (_, intervals) in self.pending.items() for i in intervals])
        for pair, (_, intervals) in self.pending.items():
            self.stored[pair] = intervals
            if self.listener is not None:
                self.published[pair] = _published(intervals)
        if self.listener is not None:
            for tenant, task, _ in self.deletes:
                self.published.setdefault((tenant, task), [])
        self.pending.clear()
        self.deletes.clear()
        self.truncations.clear()

    def _copy(self, cur: Cursor[Any]) -> None:
        """COPY the batch's new intervals, each line built directly (no per-cell adapting)."""
        with cur.copy("COPY relctl_rm_resolution (tenant, task, valid_from, valid_to, "
                      "resolution, etag, cause) FROM STDIN") as copy:
            lines: list[bytes] = []
            causes: dict[int, bytes] = {}  # one event's cause is shared by its pairs
            instants: dict[datetime | None, bytes] = {None: b"\\N"}  # and its instant
            for (tenant, task), (_, intervals) in self.pending.items():
                pair = b"%s\t%s" % (_copy_text(tenant), _copy_text(task))
                for i in intervals:
                    start = instants.get(i.valid_from)
                    if start is None:
                        start = instants[i.valid_from] = i.valid_from.isoformat().encode()
                    end = instants.get(i.valid_to)
                    if end is None:
                        end = instants[i.valid_to] = i.valid_to.isoformat().encode()  # type: ignore[union-attr]
                    cause = causes.get(id(i.cause))
                    if cause is None:
                        cause = causes[id(i.cause)] = _copy_text(canonical(i.cause.as_dict()))
                    lines.append(b"%s\t%s\t%s\t%s\t%s\t%s" % (
                        pair, start, end, _copy_text(i.resolution), i.etag.encode(), cause))
                if len(lines) >= 2000:
                    copy.write(b"\n".join(lines) + b"\n")
                    lines = []
            if lines:
                copy.write(b"\n".join(lines) + b"\n")

    def committed(self, position: int) -> None:
        if self.listener is not None:
            self.listener.update(self.published, position)
        self.published = {}

    def reset(self) -> None:
        self.pending.clear()
        self.lazy.clear()
        self.expiries.clear()
        self.deletes.clear()
        self.truncations.clear()
        self.published = {}


def _published(intervals: list[Interval]) -> list[tuple[datetime, datetime | None, bytes, str]]:
    return [(i.valid_from, i.valid_to, i.resolution, i.etag) for i in intervals]


class ResolutionListener:
    """What the resolution view tells after each commit (see ``ResolutionHistory``)."""

    def replace(self, current: Published, position: int) -> None:
        """Everything the table holds now, at ``position`` (after a load)."""

    def update(self, changed: Published, position: int) -> None:
        """The pairs a committed batch changed, and the position it committed."""


# ---- rollouts -----------------------------------------------------------------------------


class Rollouts(View):
    """Rollout status (state, step, rules, decisions) and every transition with its evidence."""

    name = ProjectionName.ROLLOUTS
    tables = ("relctl_rm_rollouts", "relctl_rm_rollout_transitions")
    ddl = (
        "CREATE TABLE IF NOT EXISTS relctl_rm_rollouts ("
        " rollout_id text PRIMARY KEY, task text NOT NULL, summary jsonb NOT NULL,"
        " position bigint NOT NULL)",
        "CREATE TABLE IF NOT EXISTS relctl_rm_rollout_transitions ("
        " position bigint PRIMARY KEY, rollout_id text NOT NULL, at timestamptz NOT NULL,"
        " event text NOT NULL, from_state text, to_state text NOT NULL, step jsonb,"
        " actor text, reason text, evidence jsonb)",
        "CREATE INDEX IF NOT EXISTS relctl_rm_rollout_transitions_by_rollout"
        " ON relctl_rm_rollout_transitions (rollout_id, position)",
    )

    def __init__(self) -> None:
        self.latest: dict[str, tuple[str, bytes, int]] = {}
        self.transitions: list[tuple[Any, ...]] = []

    def handle(self, step: Step, fold: Fold) -> None:
        if not isinstance(step.aggregate, Rollout) or step.after is None:
            return
        after = step.after
        self.latest[step.aggregate_id] = (_plain(after["task"]), canonical(fragments(after)),
                                          step.position)
        evidence = step.attr("evidence")
        current = after["current_step"]
        self.transitions.append((
            step.position, step.aggregate_id, step.at, step.name,
            _plain((step.before or {}).get("state")), _plain(after["state"]),
            (current if isinstance(current, bytes) else canonical(current)).decode(),
            step.attr("actor"), step.attr("reason"),
            canonical(evidence).decode() if evidence is not None else None,
        ))

    def flush(self, cur: Cursor[Any], fold: Fold) -> None:
        if self.latest:
            ids = list(self.latest)
            cur.execute(
                "INSERT INTO relctl_rm_rollouts (rollout_id, task, summary, position) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::jsonb[], %s::bigint[]) "
                "ON CONFLICT (rollout_id) DO UPDATE SET task = EXCLUDED.task, "
                "summary = EXCLUDED.summary, position = EXCLUDED.position",
                (ids, [self.latest[i][0] for i in ids],
                 [self.latest[i][1].decode() for i in ids], [self.latest[i][2] for i in ids]))
        insert_rows(cur, "relctl_rm_rollout_transitions", (
            "bigint", "text", "timestamptz", "text", "text", "text", "jsonb", "text", "text",
            "jsonb"), self.transitions)
        self.reset()

    def reset(self) -> None:
        self.latest.clear()
        self.transitions.clear()


# ---- tenants, overrides, pins -------------------------------------------------------------


class Inventory(View):
    """Who overrides or pins what, since when, and each tenant's cohort and flags."""

    name = ProjectionName.INVENTORY
    tables = ("relctl_rm_tenants", "relctl_rm_overrides", "relctl_rm_pins")
    ddl = (
        "CREATE TABLE IF NOT EXISTS relctl_rm_tenants ("
        " tenant text PRIMARY KEY, name text NOT NULL, cohort text NOT NULL,"
        " flags jsonb NOT NULL, registered_at timestamptz NOT NULL)",
        "CREATE TABLE IF NOT EXISTS relctl_rm_overrides ("
        " tenant text NOT NULL, task text NOT NULL, kind text NOT NULL, value text NOT NULL,"
        " base_release int, by_actor text NOT NULL, reason text NOT NULL,"
        " since timestamptz NOT NULL, PRIMARY KEY (tenant, task, kind))",
        "CREATE TABLE IF NOT EXISTS relctl_rm_pins ("
        " tenant text NOT NULL, task text NOT NULL, release int NOT NULL,"
        " expires_at timestamptz NOT NULL, by_actor text NOT NULL, reason text NOT NULL,"
        " since timestamptz NOT NULL, PRIMARY KEY (tenant, task))",
    )

    def __init__(self) -> None:
        self.override_since: dict[tuple[str, str, str], datetime] = {}
        self.pin_since: dict[tuple[str, str], datetime] = {}
        self.registered: dict[str, datetime] = {}
        self.touched: set[str] = set()

    def observe(self, step: Step, fold: Fold) -> None:
        if not isinstance(step.aggregate, Tenant):
            return
        key = step.aggregate.key
        self.registered.setdefault(key, step.at)
        if step.name == "Tenant.OverrideSet":
            self.override_since[(key, step.attr("task"), step.attr("override_kind"))] = step.at
        elif step.name == "Tenant.Pinned":
            self.pin_since[(key, step.attr("task"))] = step.at

    def handle(self, step: Step, fold: Fold) -> None:
        if isinstance(step.aggregate, Tenant):
            self.touched.add(step.aggregate.key)

    def flush(self, cur: Cursor[Any], fold: Fold) -> None:
        if not self.touched:
            return
        keys = sorted(self.touched)
        for table in self.tables:
            cur.execute(f"DELETE FROM {table} WHERE tenant = ANY(%s)", (keys,))  # noqa: S608
        tenants, overrides, pins = [], [], []
        for key in keys:
            tenant = fold.view.tenant(key)
            if tenant is None:
                continue
            tenants.append((key, tenant.name, tenant.cohort, canonical(tenant.flags).decode(),
                            self.registered[key]))
            for task, entry in tenant.overrides.items():
                for kind, item in entry["values"].items():
                    overrides.append((key, task, kind, item["value"], entry["base_release"],
                                      item["by"], item["reason"],
                                      self.override_since[(key, task, kind)]))
            for task, pin in tenant.pins.items():
                pins.append((key, task, pin["release"], datetime.fromisoformat(pin["expires_at"]),
                             pin["by"], pin["reason"], self.pin_since[(key, task)]))
        insert_rows(cur, "relctl_rm_tenants",
                    ("text", "text", "text", "jsonb", "timestamptz"), tenants)
        insert_rows(cur, "relctl_rm_overrides", ("text", "text", "text", "text", "int", "text",
                                                 "text", "timestamptz"), overrides)
        insert_rows(cur, "relctl_rm_pins", ("text", "text", "int", "timestamptz", "text",
                                            "text", "timestamptz"), pins)
        self.touched.clear()

    def reset(self) -> None:
        self.touched.clear()


# ---- audit trail --------------------------------------------------------------------------


def chain(previous: str, content: str) -> str:
    """The hash of an audit row: over its content and the previous row's hash."""
    return hashlib.sha256(f"{previous}\n{content}".encode()).hexdigest()


def _plain(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, bytes) else value


def changed_fields(before: dict[str, Any] | None,
                   after: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields whose JSON value differs (a missing field counts as null), before and after.

    Values may be plain JSON values or a :func:`snapshot`'s canonical bytes; bytes are
    compared as bytes first and decoded only when they differ, so equal values (``1`` and
    ``1.0``) still count as unchanged, as when both sides are plain."""
    before, after = before or {}, after or {}
    was, now = {}, {}
    # Summaries of one aggregate list the same fields in the same order: pair them directly.
    pairs = zip(after, before.values(), after.values(), strict=True) \
        if list(before) == list(after) else \
        ((k, before.get(k), after.get(k)) for k in before.keys() | after.keys())
    for k, old, new in pairs:
        if old != new and k != "aggregate_version" and (
                (not isinstance(old, bytes) and not isinstance(new, bytes))
                or _plain(old) != _plain(new)):
            if k in before:
                was[k] = old
            now[k] = new
    return was, now


def fragments(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` ready for :func:`canonical`: a snapshot's bytes embedded as they are."""
    return {k: orjson.Fragment(v) if isinstance(v, bytes) else v for k, v in values.items()}


AUDIT_COLUMNS = ("seq", "position", "at", "actor", "tenant", "task", "event")


class AuditTrail(View):
    """One row per stored event, hash-chained: editing, deleting or reordering breaks a link.

    ``content`` is the canonical JSON of the row (time, actor, role, command, reason, the
    changed fields before and after, evidence); ``hash`` covers it and the previous hash. The
    other columns are copies for filtering, and the verifier checks they match the content.
    """

    name = ProjectionName.AUDIT
    tables = ("relctl_rm_audit",)
    ddl = (
        "CREATE TABLE IF NOT EXISTS relctl_rm_audit ("
        " seq bigint PRIMARY KEY, position bigint NOT NULL UNIQUE, at timestamptz NOT NULL,"
        " actor text, tenant text, task text, event text NOT NULL, content text NOT NULL,"
        " prev_hash text NOT NULL, hash text NOT NULL)",
        "CREATE INDEX IF NOT EXISTS relctl_rm_audit_at ON relctl_rm_audit (at)",
    )

    def __init__(self) -> None:
        self.seq = 0
        self.last_hash = GENESIS
        self.rows: list[tuple[Any, ...]] = []
        self._loaded: tuple[int, str] = (0, GENESIS)

    def load(self, cur: Cursor[Any]) -> None:
        cur.execute("SELECT seq, hash FROM relctl_rm_audit ORDER BY seq DESC LIMIT 1")
        row = cur.fetchone()
        self._loaded = (int(row[0]), str(row[1])) if row else (0, GENESIS)
        self.seq, self.last_hash = self._loaded

    def handle(self, step: Step, fold: Fold) -> None:
        before, after = changed_fields(step.before, step.after)
        aggregate = step.aggregate
        tenant = aggregate.key if isinstance(aggregate, Tenant) else None
        task = step.attr("task")
        if task is None and aggregate is not None:
            task = aggregate.key if isinstance(aggregate, Task) else getattr(aggregate, "task",
                                                                              None)
        self.seq += 1
        actor = step.attr("actor")
        task = task if isinstance(task, str) else None
        at = step.at.isoformat()
        content = canonical({
            "seq": self.seq, "position": step.position, "at": at,
            "aggregate_id": step.aggregate_id, "aggregate_kind": step.kind,
            "aggregate_version": step.aggregate_version, "event": step.name,
            "actor": actor, "role": step.attr("role"), "reason": step.attr("reason"),
            "tenant": tenant, "task": task,
            "before": fragments(before), "after": fragments(after),
            "evidence": step.attr("evidence"),
        })
        # = chain(self.last_hash, content), without decoding and re-encoding the content.
        digest = hashlib.sha256(b"%s\n%s" % (self.last_hash.encode(), content)).hexdigest()
        self.rows.append((self.seq, step.position, step.at, at, actor, tenant, task, step.name,
                          content, self.last_hash, digest))
        self.last_hash = digest

    def flush(self, cur: Cursor[Any], fold: Fold) -> None:
        if len(self.rows) >= COPY_MIN and not _pipelined(cur):
            self._copy(cur)
        else:
            insert_rows(cur, "relctl_rm_audit", (
                "bigint", "bigint", "timestamptz", "text", "text", "text", "text", "text",
                "text", "text"), [(seq, position, at, actor, tenant, task, event,
                                   content.decode(), previous, digest)
                                  for seq, position, at, _, actor, tenant, task, event,
                                  content, previous, digest in self.rows])
        self.rows.clear()
        self._loaded = (self.seq, self.last_hash)

    def _copy(self, cur: Cursor[Any]) -> None:
        """COPY the batch's rows, each line built directly (the content is JSON: it holds no
        tab or line break, only backslashes to double)."""
        with cur.copy("COPY relctl_rm_audit FROM STDIN") as copy:
            lines: list[bytes] = []
            for seq, position, _, at, actor, tenant, task, event, content, previous, digest \
                    in self.rows:
                lines.append(b"%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s" % (
                    seq, position, at.encode(), copy_field(actor), copy_field(tenant),
                    copy_field(task), copy_field(event), _copy_text(content), previous.encode(),
                    digest.encode()))
                if len(lines) >= 2000:
                    copy.write(b"\n".join(lines) + b"\n")
                    lines = []
            if lines:
                copy.write(b"\n".join(lines) + b"\n")

    def reset(self) -> None:
        self.rows.clear()
        self.seq, self.last_hash = self._loaded


def all_views(listener: ResolutionListener | None = None) -> list[View]:
    return [ResolutionHistory(listener), Rollouts(), Inventory(), AuditTrail()]


def content_hash_sql(tables: Iterable[str]) -> list[str]:
    # A hash of the sorted row hashes: order-independent, and small enough for any table.
    return [f"SELECT md5(coalesce(string_agg(h, '' ORDER BY h), '')) FROM "  # noqa: S608
            f"(SELECT md5(t::text) AS h FROM {table} t) rows" for table in tables]
