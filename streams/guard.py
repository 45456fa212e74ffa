"""Stage 2: merge partials into time buckets per task, then judge guards and alerts.

State lives behind a small key-value interface (the worker backs it with a changelogged Faust
table, so a restarted worker recovers it; unit tests use a dict). Per task it keeps one meta
record (rule and alert states) and the evidence entries of :class:`relctl.domain.ledger.Ledger`:
window statistics per (arm, bucket), where an arm is ``<release>|<produced arm>``, stored
together with the identities they count, so that an evaluation delivered twice (a producer
retry, a redelivery after a crash) is counted once. The rollout's baseline and candidate are
looked up when rules are evaluated, so evaluations that arrived before their rollout's start
was known still count, and only evaluations since the rollout started are judged.

What the rules decide, and when a decision is re-sent or over, is domain logic
(:mod:`relctl.domain.guard_decisions`); this module folds buckets and hands over windows.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from relctl.domain.alerts import Alert, AlertKind, AlertRule, AlertState, iso, measure, step
from relctl.domain.decisions import Decision
from relctl.domain.guard_decisions import (
    MAX_REMEMBERED_DECISIONS,
    NOT_APPLIED,
    RESEND_AFTER_SECONDS,
    SIGNAL_RESOLVE_SECONDS,
    SentDecisions,
    judge,
)
from relctl.domain.guard_eval import RuleState, Verdict
from relctl.domain.guards import GUARD_ACTOR
from relctl.domain.ledger import Applied, Ledger
from relctl.domain.metrics import SKETCHES, WindowStats, sketches_read
from relctl.domain.timeliness import DEFAULT_RETENTION_SECONDS, retention_seconds
from relctl.domain.verdicts import RuleVerdict
from relctl.streams.attribute import BUCKET_SECONDS, PAIRS, Partial, arm_key
from relctl.streams.control_index import ControlIndex, RolloutInfo

# A trace-contract alert resolves once its release has had no violation for this long.
TRACE_RESOLVE_SECONDS = 300.0
TRACE_RULE = "trace-contract"
# How often the worker evaluates a task's platform alert rules at most (GuardWorker; a bare
# Guard evaluates them with every partial). They read windows of minutes (merging every bucket
# of the window, per release and rule: half of stage 2's CPU per partial, measured in-process
# with 100-evaluation partials at 50 per second) and fire after for-durations of minutes, so
# once a second is as good as every partial; guard rules (the decisions) are still judged with
# every partial. A partial whose alerts were skipped leaves its task due: the next guard tick
# evaluates them (see ``alerts_due``), so the last partial of a burst is never left unjudged.
ALERT_EVERY_SECONDS = 1.0

# Re-exported: tests, benchmarks and older imports name them here.
__all__ = [
    "DEFAULT_RETENTION_SECONDS",
    "GUARD_ACTOR",
    "MAX_REMEMBERED_DECISIONS",
    "NOT_APPLIED",
    "RESEND_AFTER_SECONDS",
    "SIGNAL_RESOLVE_SECONDS",
    "TRACE_RESOLVE_SECONDS",
    "TRACE_RULE",
    "DictStore",
    "Guard",
    "GuardResult",
    "ScopeState",
    "StateStore",
]


class StateStore(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes) -> None: ...
    def delete(self, key: str) -> None: ...
    def keys(self, prefix: str) -> Iterable[str]: ...


class DictStore(dict[str, bytes]):
    """The in-memory StateStore (unit tests, benchmarks)."""

    def set(self, key: str, value: bytes) -> None:
        self[key] = value

    def delete(self, key: str) -> None:
        self.pop(key, None)

    def keys(self, prefix: str = "") -> list[str]:  # type: ignore[override]
        return [key for key in dict(self) if key.startswith(prefix)]


@dataclass
class ScopeState:
    """One task's guard state; ``buckets`` are the ledger's (the de-duplicated evidence)."""

    scope: str
    buckets: dict[str, dict[int, WindowStats]] = field(default_factory=dict)
    rules: dict[str, RuleState] = field(default_factory=dict)
    alerts: dict[str, AlertState] = field(default_factory=dict)
    watermark: float = 0.0
    trace: dict[int, dict[str, float]] = field(default_factory=dict)
    ledger: Ledger | None = None
    # When the platform alert rules were last evaluated (in memory: after a restart they are
    # evaluated with the first partial), and whether a partial since then was not.
    alerts_at: float = float("-inf")
    alerts_due: bool = False

    def __post_init__(self) -> None:
        if self.ledger is not None:
            self.buckets = self.ledger.buckets

    def meta(self) -> bytes:
        return orjson.dumps({
            "buckets": {arm: sorted(b) for arm, b in self.buckets.items()},
            "rules": {k: v.to_json() for k, v in self.rules.items()},
            "alerts": {k: v.to_json() for k, v in self.alerts.items()},
            "watermark": self.watermark,
            "trace": {str(release): v for release, v in self.trace.items()},
        })

    def window(self, arms: Iterable[str], start: float, end: float,
               sketches: Sequence[str] = SKETCHES) -> WindowStats:
        """Merged stats of the buckets in (start - bucket, end]: a bucket belongs to the window
        that holds its start, so consecutive windows never share one. Only the named
        ``sketches`` are merged (the others stay empty)."""
        parts = [stats for arm in arms for b, stats in self.buckets.get(arm, {}).items()
                 if start - BUCKET_SECONDS < b <= end]
        return WindowStats.merged(parts, sketches)

    def releases(self) -> list[int]:
        return sorted({int(arm.split("|", 1)[0]) for arm in self.buckets})


@dataclass
class GuardResult:
    """What one partial produced: the verdicts, and what to publish."""

    rollout_id: str | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    rule_verdicts: list[RuleVerdict] = field(default_factory=list)
    commands: list[Decision] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


class Guard:
    def __init__(self, index: ControlIndex, store: StateStore,
                 alert_rules: Iterable[AlertRule], dedup: bool = True,
                 alert_every: float = 0.0) -> None:
        self.index = index
        self.store = store
        self.alert_rules = tuple(alert_rules)
        self._alert_sketches = sketches_read(rule.metric for rule in self.alert_rules)
        self.dedup = dedup
        self.alert_every = alert_every
        self.scopes: dict[str, ScopeState] = {}
        self.last: Applied = Applied()
        self.sent = SentDecisions()

    def forget(self) -> None:
        """Drop what is cached in memory; the store stays the truth (after a rebalance)."""
        self.scopes.clear()
        self.sent.clear()

    # ---- state --------------------------------------------------------------------------

    def load(self, scope: str) -> ScopeState:
        state = self.scopes.get(scope)
        if state is not None:
            return state
        ledger = Ledger(scope, self.store, BUCKET_SECONDS, self.dedup)
        ledger.load()
        state = ScopeState(scope, ledger=ledger)
        raw = self.store.get(f"{scope}|meta")
        if raw:
            meta = orjson.loads(raw)
            state.rules = {k: RuleState.from_json(v) for k, v in meta["rules"].items()}
            state.alerts = {k: AlertState.from_json(v) for k, v in meta["alerts"].items()}
            state.watermark = float(meta.get("watermark", 0.0))
            state.trace = {int(r): v for r, v in meta.get("trace", {}).items()}
        self.scopes[scope] = state
        return state

    def retention(self, task: str) -> float:
        """How far back the task's buckets are kept: its longest window in use."""
        windows = [rule.window_seconds * (2 if rule.relative else 1) for rule in self.alert_rules]
        rollout = self.index.rollouts.get(self.index.active.get(task, ""))
        if rollout is not None:
            windows += [float(rule["window_seconds"]) for rule in rollout.guard_rules]
        return retention_seconds(windows, BUCKET_SECONDS)

    def _merge(self, state: ScopeState, partial: Partial, horizon: float) -> None:
        """Count the partial's rows (each identity once) and pre-folded stats; then drop
        buckets older than the longest window (they can no longer matter)."""
        ledger = state.ledger
        assert ledger is not None, "scopes the guard loads have a ledger"
        self.last = ledger.apply(partial.rows, horizon)
        if partial.arms:
            ledger.add_folded(partial.arms, horizon)
        ledger.expire(horizon)

    # ---- evaluation ---------------------------------------------------------------------

    def handle(self, partial: Partial, now: float) -> GuardResult:
        state = self.load(partial.scope)
        task = partial.scope.partition("|")[2]
        self._merge(state, partial, now - self.retention(task))
        state.watermark = max(state.watermark, partial.watermark)
        outcome = GuardResult()
        if not partial.final:
            return outcome  # more of the same batch follows: judge once it is all counted
        rollout = self.index.guarded_rollout(task)
        if rollout is not None:
            outcome.rollout_id = rollout.id
            self._guard(state, rollout, now, outcome)
        if self._alerts_now(state, partial, now):
            self._alerts(state, task, now, outcome)
        self._trace_alerts(state, task, partial.violations, now, outcome)
        self.store.set(f"{state.scope}|meta", state.meta())
        return outcome

    def _alerts_now(self, state: ScopeState, partial: Partial, now: float) -> bool:
        """Whether this partial evaluates the platform alert rules: always if it is empty (a
        tick or a learned rollout asks for a judgement), else at most every ``alert_every``."""
        empty = not partial.rows and not partial.arms
        if empty or now - state.alerts_at >= self.alert_every:
            state.alerts_at, state.alerts_due = now, False
            return True
        state.alerts_due = True
        return False

    def alerts_due(self) -> list[str]:
        """Tasks whose platform alerts skipped a partial (the tick evaluates them)."""
        return sorted(scope.partition("|")[2] for scope, state in self.scopes.items()
                      if state.alerts_due)

    def _trace_alerts(self, state: ScopeState, task: str, violations: dict[int, int],
                      now: float, outcome: GuardResult) -> None:
        """Records contradicting their release's trace contract (stage 1 refused them): the
        first fires the release's alert; it resolves after TRACE_RESOLVE_SECONDS without."""
        for release, count in violations.items():
            entry = state.trace.get(release)
            if entry is None:
                entry = state.trace[release] = {"fired_at": now, "last": now, "count": 0}
                outcome.alerts.append(self._trace_alert(AlertKind.FIRED, task, release, entry,
                                                        now))
            entry["last"] = now
            entry["count"] += count
        for release, entry in list(state.trace.items()):
            if now - entry["last"] >= TRACE_RESOLVE_SECONDS:
                outcome.alerts.append(self._trace_alert(AlertKind.RESOLVED, task, release,
                                                        entry, now))
                del state.trace[release]

    @staticmethod
    def _trace_alert(kind: AlertKind, task: str, release: int, entry: dict[str, float],
                     now: float) -> Alert:
        return Alert(
            kind=kind, scope=f"release|{task}|{release}", rule=TRACE_RULE, severity="critical",
            summary="evaluations contradict their release's trace contract (prompt, model, "
                    "sampling or blueprint): a model changed under a stable alias?",
            task=task, release=release, cohort="all", at=iso(now),
            fired_at=iso(entry["fired_at"]),
            evidence={"violations": int(entry["count"]), "last_at": iso(entry["last"])})

    def _arms(self, rollout: RolloutInfo) -> tuple[list[str], list[str]]:
        candidate = arm_key(rollout.candidate, "shadow" if rollout.shadow else "production")
        return ([candidate, arm_key(rollout.candidate, PAIRS)],
                [arm_key(rollout.baseline, "production")])

    def _guard(self, state: ScopeState, rollout: RolloutInfo, now: float,
               outcome: GuardResult) -> None:
        candidate_arms, baseline_arms = self._arms(rollout)
        # A rule reads only its own metric: merge the sketches the rules read, and each
        # distinct window once (rules of one length share it; the windows are only read).
        sketches = sketches_read(str(rule["metric"]) for rule in rollout.guard_rules)
        merged: dict[tuple[float, float], tuple[WindowStats, WindowStats]] = {}

        def windows(start: float, end: float) -> tuple[WindowStats, WindowStats]:
            pair = merged.get((start, end))
            if pair is None:
                pair = merged[(start, end)] = (
                    state.window(candidate_arms, start, end, sketches),
                    state.window(baseline_arms, start, end, sketches))
            return pair

        judged = judge(state.rules, rollout, state.scope, windows, now, self.sent,
                       min_window=BUCKET_SECONDS)
        outcome.verdicts += judged.verdicts
        outcome.rule_verdicts += judged.rule_verdicts
        outcome.commands += judged.decisions
        outcome.alerts += judged.alerts

    def _alerts(self, state: ScopeState, task: str, now: float, outcome: GuardResult) -> None:
        """Platform alert rules per release of the task, over all of its traffic."""
        for release in state.releases():
            arms = [arm for arm in state.buckets
                    if arm.startswith(f"{release}|") and not arm.endswith(f"|{PAIRS}")]
            self._release_alerts(state, task, release, arms, now, outcome)

    def _release_alerts(self, state: ScopeState, task: str, release: int, arms: list[str],
                        now: float, outcome: GuardResult) -> None:
        windows: dict[tuple[float, float], WindowStats] = {}

        def window(start: float, end: float) -> WindowStats:
            """Rules of one length share their window (merged once, only read)."""
            stats = windows.get((start, end))
            if stats is None:
                stats = windows[(start, end)] = state.window(arms, start, end,
                                                             self._alert_sketches)
            return stats

        for rule in self.alert_rules:
            current = window(now - rule.window_seconds, now)
            previous = (window(now - 2 * rule.window_seconds,
                               now - rule.window_seconds - BUCKET_SECONDS)
                        if rule.relative else None)
            value, samples = measure(rule, current, previous)
            key = f"{release}:{rule.name}"
            alert_state, transition = step(rule, value, samples, now,
                                           state.alerts.get(key, AlertState()))
            state.alerts[key] = alert_state
            if transition is not None:
                outcome.alerts.append(Alert.platform(transition, task, release))
