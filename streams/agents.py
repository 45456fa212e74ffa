"""The worker's two agents and its housekeeping timer.

Stage 1 (``attribute``) decodes producers' evaluations, attributes them to rollout arms and
sends per-scope partial aggregates; what cannot be attributed goes to the dead-letter topic
(after a short grace for releases the control index does not know yet). Stage 2 (``guard``)
merges partials into the guard state and publishes the decisions, alerts and verdict changes it
yields. A short timer (:meth:`GuardAgent.tick`) also asks stage 2 to judge every guarded rollout
without traffic, so verdicts and decisions (a for-duration that completes, evaluations that came
before the rollout was known) do not wait for the next record.
"""

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from relctl.adapters import hop_trace, ingest
from relctl.adapters.alertmanager import AlertmanagerSender
from relctl.adapters.cloudevents import alert_record, dead_letter, verdict_record
from relctl.adapters.commands import command_record
from relctl.domain.alerts import AlertKind
from relctl.domain.guard_eval import GuardOutcome
from relctl.domain.hops import Hop
from relctl.domain.timeliness import CLOCK_SKEW_SECONDS, explain, time_problem
from relctl.domain.trace_contract import ReleaseTrace, TraceField, describe, violations
from relctl.domain.verdicts import RuleVerdict, VerdictChanges
from relctl.streams.attribute import Attributor, Partial, task_scope
from relctl.streams.batching import take_batches
from relctl.streams.control_index import ControlIndex
from relctl.streams.grace import Grace
from relctl.streams.guard import Guard, GuardResult
from relctl.streams.metrics import (
    ALERTS,
    BATCH_SECONDS,
    COHORT_WINDOW,
    CONSUMER_LAG,
    COUNTED,
    DECISIONS,
    DUPLICATES,
    EVENT_AGE,
    GUARD_OUTCOME,
    HELD,
    OUTCOME_CODE,
    PENDING_PAIRS,
    PROCESSED,
    REJECTED,
    TENANT_WINDOWS,
    TOO_OLD,
    TRACE_VIOLATIONS,
    VERDICTS,
    WINDOW_EVALUATIONS,
)
from relctl.streams.topics import WorkerTopics

logger = logging.getLogger(__name__)

# The worker allocates a few container objects per evaluation and keeps hundreds of thousands
# alive (waiting shadow halves, window sketches, evidence). With CPython's default thresholds
# (a young collection every 700 allocations, the whole heap traversed every 100 of those) the
# cyclic collector took about half of stage 1 and 2's CPU time (in-process, 40,000 evaluations:
# 31.8 µs each against 14.9 µs with these thresholds). That state is acyclic and freed by
# reference counting; the collector only has to catch the odd cycle, so it can run rarely.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_collector() -> None:
    """Collect rarely, and never traverse what was alive once the worker was ready."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@dataclass
class _Check:
    """What screening a (task, release) needs, looked up once per batch: the instants it
    accepts (inside the retention, not beyond the clock-skew allowance), its trace, and the
    trace-contract verdict per distinct "what ran" seen so far."""

    oldest: float
    newest: float
    retention: float
    trace: ReleaseTrace | None
    seen: dict[tuple[Any, ...], tuple[TraceField, ...]]


def _headers(raw: Any) -> dict[str, bytes]:
    if isinstance(raw, Mapping):
        return {str(k): v for k, v in raw.items()}
    return {str(k): v for k, v in (raw or ())}


class AttributeAgent:
    """Stage 1: evaluations in, evidence rows per task (and dead letters) out.

    A record becomes evidence only if its release is known (after a short grace), it is
    dated inside the guard's retention and not beyond the clock-skew allowance, and it honours
    its release's trace contract; everything else goes to the DLQ with its reason and the
    bytes as received."""

    def __init__(self, index: ControlIndex, topics: WorkerTopics, ready: asyncio.Event,
                 grace: Grace, batch_max: int, batch_within: float,
                 retention: Callable[[str], float]) -> None:
        self.index = index
        self.attributor = Attributor(index)
        self.topics = topics
        self.ready = ready
        self.grace = grace
        self.batch_max = batch_max
        self.batch_within = batch_within
        self.retention = retention
        self._held_origins: dict[int, ingest.Origin] = {}
        self._batch_at = 0.0  # when the current batch was handed over (hop tracing only)

    async def run(self, stream: Any) -> None:
        await self.ready.wait()
        tune_collector()
        async for events in take_batches(stream, self.batch_max, self.batch_within):
            started = time.perf_counter()
            self._batch_at = time.time() if hop_trace.enabled() else 0.0
            accepted: list[tuple[Any, ingest.Origin]] = []
            dead: list[tuple[Any, str]] = []
            now = time.monotonic()
            for event in events:
                message = event.message
                decoded = ingest.decode(message.value or b"", _headers(message.headers), fast=True)
                source = f"kafka:{message.topic}/{message.partition}@{message.offset}"
                dead += [(r, source) for r in decoded.rejected]
                for record, origin in zip(decoded.records, decoded.origins(source),
                                          strict=True):
                    if self.index.known_release(record.task, record.release):
                        accepted.append((record, origin))
                    else:
                        dead += self._unknown(self._hold(record, origin, now))
            if self.grace:
                ready, expired = self.grace.release(self.index.known_release, now)
                accepted += self._released(ready)
                dead += self._unknown(expired)
            records, refused, violated = self.screen(accepted, time.time())
            await self.emit(records, dead + refused, started, violated)

    def _hold(self, record: Any, origin: ingest.Origin, now: float) -> list[tuple[Any, str]]:
        """Hold a record of a release the index does not know yet (its origin kept beside it,
        so a dead letter carries the bytes as received); returns what overflowed."""
        self._held_origins[id(record)] = origin
        return self.grace.hold(record, origin.source, now)

    def _released(self, ready: list[Any]) -> list[tuple[Any, ingest.Origin]]:
        return [(record, self._held_origins.pop(id(record))) for record in ready]

    def screen(self, accepted: list[tuple[Any, ingest.Origin]], now: float) -> tuple[
            list[Any], list[tuple[Any, str]], dict[tuple[str, int], int]]:
        """Keep what can be evidence for its release; the rest as dead letters, and the
        trace-contract violations per (task, release) for stage 2's alert.

        Per (task, release) of the batch, its time bounds and trace are looked up once, and
        each distinct "what ran" is compared with the trace once (a stream repeats a few)."""
        kept: list[Any] = []
        dead: list[tuple[Any, str]] = []
        violated: dict[tuple[str, int], int] = {}
        checks: dict[tuple[str, int], _Check] = {}
        for record, origin in accepted:
            occurred = record.occurred_at.timestamp()
            key = (record.task, record.release)
            check = checks.get(key)
            if check is None:
                check = checks[key] = self._check(record.task, record.release, now)
            if not check.oldest <= occurred <= check.newest:
                problem = time_problem(occurred, now, check.retention)
                if problem is not None:
                    dead.append((ingest.Rejected(
                        explain(problem, occurred, now, check.retention), origin.received(),
                        origin.index, problem.value), origin.source))
                    continue
            trace = check.trace
            if trace is not None:
                ran = (record.prompt_hash, record.model_provider, record.model_version,
                       record.temperature, record.seed, record.blueprint_version_id)
                fields = check.seen.get(ran)
                if fields is None:
                    fields = check.seen[ran] = violations(record, trace)
                if fields:
                    for name in fields:
                        TRACE_VIOLATIONS.labels(record.task, str(record.release), name).inc()
                    violated[key] = violated.get(key, 0) + 1
                    dead.append((ingest.Rejected(describe(record, trace, fields),
                                                 origin.received(), origin.index,
                                                 "trace_contract"), origin.source))
                    continue
            kept.append(record)
        return kept, dead, violated

    def _check(self, task: str, release: int, now: float) -> "_Check":
        retention = self.retention(task)
        return _Check(now - retention, now + CLOCK_SKEW_SECONDS, retention,
                      self.index.trace(task, release), {})

    def _unknown(self, pairs: list[tuple[Any, str]]) -> list[tuple[Any, str]]:
        """Dead letters (the bytes as received) for records whose release is still unknown."""
        dead: list[tuple[Any, str]] = []
        for record, source in pairs:
            origin = self._held_origins.pop(id(record), None) or ingest.Origin(source, b"")
            if self.index.known_release(record.task, record.release):
                continue
            original = origin.received() if origin.raw else ingest.original_bytes(record)
            dead.append((ingest.Rejected(f"unknown release {record.task} v{record.release}",
                                         original, origin.index, "unknown_release"), source))
        return dead

    async def emit(self, records: list[Any], dead: list[tuple[Any, str]], started: float,
                   violated: dict[tuple[str, int], int] | None = None) -> None:
        partials = {p.scope: p for p in self.attributor.process(records)}
        for (task, release), count in (violated or {}).items():
            scope = task_scope(task)
            partial = partials.get(scope) or partials.setdefault(scope, Partial(scope))
            partial.violations[release] = partial.violations.get(release, 0) + count
        for partial in partials.values():
            for part in partial.split():
                await self.topics.partials.send(key=part.scope.encode(), value=part.encode())
            if hop_trace.enabled() and partial.evaluations:
                task = partial.scope.partition("|")[2]
                hop_trace.mark(Hop.STAGE1_BATCH, task, self._batch_at)
                hop_trace.mark(Hop.PARTIAL_SENT, task)
        for rejected, source in dead:
            key, value, headers = ingest.dlq_record(rejected, source)
            await self.topics.dlq.send(key=key, value=value, headers=headers)
        if dead:
            ingest.count_rejected([r for r, _ in dead], "worker")
            REJECTED.inc(len(dead))
        if records:
            ingest.count_accepted(len(records), "worker")
            PROCESSED.inc(len(records))
            # The newest evaluation's age: the partials' watermarks are their newest instants.
            EVENT_AGE.set(max(0.0, time.time() - max(p.watermark for p in partials.values())))
        BATCH_SECONDS.observe(time.perf_counter() - started)
        HELD.set(len(self.grace))

    async def housekeeping(self) -> None:
        """Expire tenant windows, refresh the cohort gauges, settle held evaluations."""
        TENANT_WINDOWS.set(self.attributor.expire(time.time()))
        COHORT_WINDOW.clear()  # series of windows that expired must disappear
        for (task, release, cohort), measures in self.attributor.cohort_totals().items():
            for measure, value in measures.items():
                COHORT_WINDOW.labels(task, str(release), cohort, measure).set(value)
        if self.grace:  # no new traffic: still settle held evaluations
            ready, expired = self.grace.release(self.index.known_release, time.monotonic())
            dead = self._unknown(expired)
            records, refused, violated = self.screen(self._released(ready), time.time())
            await self.emit(records, dead + refused, time.perf_counter(), violated)


class GuardAgent:
    """Stage 2: partials in; decisions (relctl.commands), alerts (relctl.alerts) and verdict
    changes (relctl.verdicts) out."""

    def __init__(self, guard: Guard, topics: WorkerTopics, ready: asyncio.Event,
                 alertmanager: AlertmanagerSender | None,
                 flush: Callable[[], Awaitable[None]] | None = None) -> None:
        self.guard = guard
        self.topics = topics
        self.ready = ready
        self.alertmanager = alertmanager
        self.flush = flush
        self.changes = VerdictChanges()
        self._outcomes: dict[tuple[str, str], GuardOutcome] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def tick(self) -> None:
        """Judge every guarded rollout now, traffic or not, and evaluate the platform alerts
        of every task whose last partials skipped them (``Guard.alerts_due``).

        Sends an empty partial per guarded task to the partials topic rather than judging
        here: the worker that owns the task's partition judges it in its stream, the only
        place its table may be written."""
        if not self.ready.is_set():
            return
        index = self.guard.index
        guarded = [task for task in index.active if index.guarded_rollout(task)]
        for task in sorted({*guarded, *self.guard.alerts_due()}):
            scope = task_scope(task)
            await self.topics.partials.send(key=scope.encode(), value=Partial(scope).encode())

    async def judge_now(self, tasks: list[str]) -> None:
        """Judge these tasks' rollouts now (the control index just learned them), the same
        way as :meth:`tick`: an empty partial to the worker that owns each task."""
        for task in tasks:
            scope = task_scope(task)
            await self.topics.partials.send(key=scope.encode(), value=Partial(scope).encode())

    async def run(self, stream: Any) -> None:
        await self.ready.wait()
        async for event in stream.events():
            try:
                partial = Partial.decode(event.value)
            except (ValueError, KeyError, TypeError) as exc:
                message = event.message
                _, value, headers = dead_letter(
                    event.value, f"malformed guard partial: {exc}",
                    f"kafka:{message.topic}/{message.partition}@{message.offset}")
                await self.topics.dlq.send(key=event.key, value=value, headers=headers)
                continue
            received = time.time()
            outcome = self.guard.handle(partial, received)
            if outcome.commands and hop_trace.enabled():
                hop_trace.mark(Hop.STAGE2_RECEIVED, outcome.rollout_id or "", received)
                hop_trace.mark(Hop.DECIDED, outcome.rollout_id or "")
            self._count(partial.scope)
            await self.publish(outcome)

    def _count(self, scope: str) -> None:
        """Duplicates skipped, rows too old, and what the scope's windows now hold."""
        applied = self.guard.last
        COUNTED.inc(applied.counted)
        DUPLICATES.inc(applied.duplicates)
        TOO_OLD.inc(applied.expired)
        state = self.guard.scopes.get(scope)
        if state is None or state.ledger is None:
            return
        task = scope.partition("|")[2]
        PENDING_PAIRS.labels(task).set(state.ledger.pending_pairs)
        for arm, buckets in state.buckets.items():
            release, _, produced = arm.partition("|")
            WINDOW_EVALUATIONS.labels(task, release, produced).set(
                sum(stats.count + stats.shadow_pairs for stats in buckets.values()))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)  # keep a reference until it is done
        task.add_done_callback(self._background.discard)

    async def _send_verdicts(self, changes: list[RuleVerdict]) -> None:
        """Verdict changes are sent off the stage-2 event: their topic's first send waits for
        its metadata, and the event (its table changes, its offset) must not wait for that."""
        for change in changes:
            key, value, headers = verdict_record(change.model_dump(mode="json"))
            await self.topics.verdicts.send(key=key, value=value, headers=headers)
            VERDICTS.labels(change.outcome).inc()

    async def publish(self, outcome: GuardResult) -> None:
        """Send what one judgement produced; the outcome gauge moves last, once all of it is
        out (observers polling the gauge see a judgement whose records were sent)."""
        changes = self.changes.changed(outcome.rule_verdicts)
        if changes:
            self._in_background(self._send_verdicts(changes))
        for command in outcome.commands:
            key, value, headers = command_record(command.wire())
            sent = await self.topics.commands.send(key=key, value=value, headers=headers)
            if hop_trace.enabled():
                hop_trace.mark(Hop.DECISION_SENT, command.rollout_id)
                self._in_background(_mark_acked(sent, command.rollout_id))
            DECISIONS.labels(command.action).inc()
            logger.warning("guard decided %s for rollout %s: %s", command.action,
                           command.rollout_id, command.reason)
        alerts = [alert.wire() for alert in outcome.alerts]
        for alert in alerts:
            key, value, headers = alert_record(alert)
            await self.topics.alerts.send(key=key, value=value, headers=headers)
            ALERTS.labels(alert["kind"], str(alert.get("rule", AlertKind.DECISION))).inc()
        if alerts and self.alertmanager is not None:
            self._in_background(self.alertmanager.send(alerts))
        rollout = outcome.rollout_id or ""
        moved = [v for v in outcome.verdicts if self._outcomes.get((rollout, v.rule)) != v.outcome]
        if moved and self.flush is not None:
            # The rule states behind a new outcome (a breach's start, a decision taken) are
            # table writes still in the producer's buffer until the next commit. Flushed
            # first, no observer sees an outcome that a crash could take back: a breach seen
            # as Pending keeps its start across a SIGKILL. Outcomes move rarely; this costs
            # one round trip each time, after the decision itself was sent.
            await self.flush()
        for verdict in outcome.verdicts:
            self._outcomes[(rollout, verdict.rule)] = verdict.outcome
            GUARD_OUTCOME.labels(rollout, verdict.rule).set(OUTCOME_CODE[verdict.outcome])


async def _mark_acked(sent: Any, rollout_id: str) -> None:
    """Hop tracing: when the broker acknowledged a decision (``sent`` is Faust's future)."""
    await sent
    hop_trace.mark(Hop.DECISION_ACKED, rollout_id)


def record_consumer_lag(consumer: Any, topic: str) -> None:
    """Records behind the high watermark, per assigned partition of ``topic``."""
    for tp in consumer.assignment():
        if tp.topic != topic:
            continue
        # Faust keeps no public read position; _read_offset is its own bookkeeping.
        highwater, position = consumer.highwater(tp), consumer._read_offset.get(tp)
        if highwater is not None and position is not None:
            CONSUMER_LAG.labels(str(tp.partition)).set(max(0, highwater - position - 1))
