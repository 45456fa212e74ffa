"""Stage 2: merge partials into time buckets per task, evaluate guards and alerts, decide.

State lives behind a small key-value interface (the worker backs it with a changelogged Faust
table, so a restarted worker recovers it; unit tests use a dict). Per task it keeps one meta
record (rule and alert states) and the evidence entries of :class:`relctl.domain.ledger.Ledger`:
window statistics per (arm, bucket), where an arm is ``<release>|<produced arm>``, stored
together with the identities they count, so that an evaluation delivered twice (a producer
retry, a redelivery after a crash) is counted once. The rollout's baseline and candidate are
looked up when rules are evaluated, so evaluations that arrived before their rollout's start
was known still count, and only evaluations since the rollout started are judged.

A decision is made once per breach: the rule's state records the decision (id, action, time) and
the command carries that id. Until the control topic shows the rollout in the decided state, the
guard re-sends the same command every RESEND_AFTER_SECONDS, so a decision cannot be lost between
the state write and the send; the control plane's rollback, freeze and pause are idempotent, so
however often a command arrives the store records one event. Once the decision has taken effect
and the breach is over (an operator resumed, the metric recovered), the rule starts afresh.
"""

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from relctl.domain.alerts import AlertRule, AlertState, AlertTransition, measure, step
from relctl.domain.guard_eval import RuleState, Verdict, evaluate_rule, strongest_action
from relctl.domain.guards import GUARD_ACTOR
from relctl.domain.ledger import Applied, Ledger
from relctl.domain.metrics import WindowStats
from relctl.domain.timeliness import DEFAULT_RETENTION_SECONDS, retention_seconds
from relctl.streams.attribute import BUCKET_SECONDS, PAIRS, Partial, arm_key
from relctl.streams.control_index import ControlIndex, RolloutInfo

__all__ = ["DEFAULT_RETENTION_SECONDS", "DictStore", "Guard", "GuardOutcome", "ScopeState",
           "StateStore"]

RESEND_AFTER_SECONDS = 2.0
# Rollout states in which a decision has not taken effect yet.
NOT_APPLIED = {"rollback": ("Running", "Paused", "Frozen"), "freeze": ("Running", "Paused"),
               "pause": ("Running",)}
MAX_REMEMBERED_DECISIONS = 10_000
# A trace-contract alert resolves once its release has had no violation for this long.
TRACE_RESOLVE_SECONDS = 300.0
TRACE_RULE = "trace-contract"
# A Signal alert resolves only after its rule has stayed clear this long (hysteresis).
SIGNAL_RESOLVE_SECONDS = 60.0


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

    def window(self, arms: Iterable[str], start: float, end: float) -> WindowStats:
        """Merged stats of the buckets in (start - bucket, end]: a bucket belongs to the window
        that holds its start, so consecutive windows never share one."""
        parts = [stats for arm in arms for b, stats in self.buckets.get(arm, {}).items()
                 if start - BUCKET_SECONDS < b <= end]
        return WindowStats.merged(parts)

    def releases(self) -> list[int]:
        return sorted({int(arm.split("|", 1)[0]) for arm in self.buckets})


@dataclass
class GuardOutcome:
    rollout_id: str | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch is not None else None


class Guard:
    def __init__(self, index: ControlIndex, store: StateStore,
                 alert_rules: Iterable[AlertRule], dedup: bool = True) -> None:
        self.index = index
        self.store = store
        self.alert_rules = tuple(alert_rules)
        self.dedup = dedup
        self.scopes: dict[str, ScopeState] = {}
        self.last: Applied = Applied()
        self.sent: OrderedDict[str, dict[str, Any]] = OrderedDict()

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

    def handle(self, partial: Partial, now: float) -> GuardOutcome:
        state = self.load(partial.scope)
        task = partial.scope.partition("|")[2]
        self._merge(state, partial, now - self.retention(task))
        state.watermark = max(state.watermark, partial.watermark)
        outcome = GuardOutcome()
        if not partial.final:
            return outcome  # more of the same batch follows: judge once it is all counted
        rollout = self.index.guarded_rollout(task)
        if rollout is not None:
            outcome.rollout_id = rollout.id
            self._guard(state, rollout, now, outcome)
        self._alerts(state, task, now, outcome)
        self._trace_alerts(state, task, partial.violations, now, outcome)
        self.store.set(f"{state.scope}|meta", state.meta())
        return outcome

    def _trace_alerts(self, state: ScopeState, task: str, violations: dict[int, int],
                      now: float, outcome: GuardOutcome) -> None:
        """Records contradicting their release's trace contract (stage 1 refused them): the
        first fires the release's alert; it resolves after TRACE_RESOLVE_SECONDS without."""
        for release, count in violations.items():
            entry = state.trace.get(release)
            if entry is None:
                entry = state.trace[release] = {"fired_at": now, "last": now, "count": 0}
                outcome.alerts.append(self._trace_alert("fired", task, release, entry, now))
            entry["last"] = now
            entry["count"] += count
        for release, entry in list(state.trace.items()):
            if now - entry["last"] >= TRACE_RESOLVE_SECONDS:
                outcome.alerts.append(self._trace_alert("resolved", task, release, entry, now))
                del state.trace[release]

    @staticmethod
    def _trace_alert(kind: str, task: str, release: int, entry: dict[str, float],
                     now: float) -> dict[str, Any]:
        return {
            "kind": kind, "scope": f"release|{task}|{release}", "rule": TRACE_RULE,
            "severity": "critical", "task": task, "release": release, "cohort": "all",
            "summary": "evaluations contradict their release's trace contract (prompt, model, "
                       "sampling or blueprint): a model changed under a stable alias?",
            "at": _iso(now), "fired_at": _iso(entry["fired_at"]),
            "evidence": {"violations": int(entry["count"]), "last_at": _iso(entry["last"])},
        }

    def _arms(self, rollout: RolloutInfo) -> tuple[list[str], list[str]]:
        candidate = arm_key(rollout.candidate, "shadow" if rollout.shadow else "production")
        return ([candidate, arm_key(rollout.candidate, PAIRS)],
                [arm_key(rollout.baseline, "production")])

    @staticmethod
    def _settle(state: ScopeState, rollout: RolloutInfo) -> None:
        """Keep only this rollout's rule states, and mark decisions the control topic shows
        as applied (by their id in an event's evidence, or by the rollout's state)."""
        for name, stored in list(state.rules.items()):
            rule_state = stored
            if stored.rollout_id is None and (stored.decision_id or "").startswith(
                    f"{rollout.id}:"):
                rule_state = state.rules[name] = replace(stored, rollout_id=rollout.id)
            if rule_state.rollout_id != rollout.id:
                del state.rules[name]  # an earlier rollout of the task: nothing carries over
                continue
            if rule_state.decision_id and not rule_state.applied and (
                    rule_state.decision_id in rollout.applied_decisions
                    or rule_state.action not in NOT_APPLIED
                    or rollout.state not in NOT_APPLIED[rule_state.action]):
                state.rules[name] = replace(rule_state, applied=True)

    def _guard(self, state: ScopeState, rollout: RolloutInfo, now: float,
               outcome: GuardOutcome) -> None:
        candidate_arms, baseline_arms = self._arms(rollout)
        self._settle(state, rollout)
        for rule in rollout.guard_rules:
            window = float(rule["window_seconds"])
            start = max(now - window, rollout.started_at or now - window)
            effective = {**rule, "window_seconds": max(now - start, BUCKET_SECONDS)}
            candidate = state.window(candidate_arms, start, now)
            baseline = state.window(baseline_arms, start, now)
            previous = state.rules.get(rule["name"])
            if previous is None or previous.rollout_id != rollout.id:
                previous = RuleState(rollout_id=rollout.id)
            verdict, new_state = evaluate_rule(effective, candidate, baseline, now, previous)
            verdict = replace(verdict, window_seconds=window)
            clear = verdict.outcome in ("Passed", "Inconclusive")
            if rule["gate_class"] == "Signal" and previous.decided:
                new_state = self._signal_hysteresis(rollout, verdict, previous, new_state, now,
                                                    outcome)
            elif clear and previous.decided and previous.applied:
                new_state = RuleState(outcome=verdict.outcome, rollout_id=rollout.id)
            state.rules[rule["name"]] = new_state
            outcome.verdicts.append(verdict)
            if verdict.action == "alert":
                state.rules[rule["name"]] = replace(new_state, decided_at=now)
                outcome.alerts.append(self._guard_alert("fired", rollout, verdict, now, now))
        decision = strongest_action([v for v in outcome.verdicts if v.action != "alert"])
        if decision is None:
            self._reconcile(state, rollout, now, outcome)
        else:
            self._decide(state, rollout, decision, now, outcome)

    def _decide(self, state: ScopeState, rollout: RolloutInfo, decision: Verdict, now: float,
                outcome: GuardOutcome) -> None:
        since_ms = int((decision.breach_since or now) * 1000)
        decision_id = f"{rollout.id}:{decision.rule}:{since_ms}"
        for verdict in outcome.verdicts:
            if verdict.action is not None and verdict.action != "alert":
                # Rules failing together share the strongest decision, and its fate.
                state.rules[verdict.rule] = RuleState(
                    breach_since=verdict.breach_since, decided=True, outcome="Failed",
                    decision_id=decision_id, action=decision.action, decided_at=now,
                    rollout_id=rollout.id)
        evidence = {
            **decision.evidence(), "breach_since": _iso(decision.breach_since),
            "rollout": rollout.id, "task": rollout.task, "baseline": rollout.baseline,
            "candidate": rollout.candidate,
            "step": rollout.steps[rollout.step_index] if rollout.step_index >= 0 else None,
            "decided_at": _iso(now), "decision_id": decision_id,
            "all_rules": [v.evidence() for v in outcome.verdicts],
        }
        command = {
            "rollout_id": rollout.id, "action": decision.action, "decision_id": decision_id,
            "actor": GUARD_ACTOR, "evidence": evidence,
            "reason": f"guard {decision.rule} ({decision.gate_class}) failed: {decision.message}",
        }
        outcome.commands.append(command)
        outcome.alerts.append({"kind": "decision", "scope": state.scope, **command})
        self.sent[decision_id] = command
        while len(self.sent) > MAX_REMEMBERED_DECISIONS:
            self.sent.popitem(last=False)

    def _signal_hysteresis(self, rollout: RolloutInfo, verdict: Verdict, previous: RuleState,
                           new_state: RuleState, now: float, outcome: GuardOutcome) -> RuleState:
        """A fired Signal alert resolves only after SIGNAL_RESOLVE_SECONDS of clear verdicts,
        so a metric flapping around its threshold yields one fired/resolved pair."""
        if verdict.outcome not in ("Passed", "Inconclusive"):
            return replace(new_state, clear_since=None)
        clear_since = previous.clear_since if previous.clear_since is not None else now
        if now - clear_since < SIGNAL_RESOLVE_SECONDS:
            return replace(previous, clear_since=clear_since, outcome=verdict.outcome)
        outcome.alerts.append(self._guard_alert("resolved", rollout, verdict, now,
                                                previous.decided_at))
        return RuleState(outcome=verdict.outcome, rollout_id=rollout.id)

    def _reconcile(self, state: ScopeState, rollout: RolloutInfo, now: float,
                   outcome: GuardOutcome) -> None:
        """Re-send a decision the control topic does not show as applied yet."""
        resent: set[str] = set()
        for name, rule_state in state.rules.items():
            action, decision_id = rule_state.action, rule_state.decision_id
            if action not in NOT_APPLIED or decision_id is None or rule_state.applied \
                    or rule_state.rollout_id != rollout.id or decision_id in resent:
                continue
            resent.add(decision_id)
            if rollout.state not in NOT_APPLIED[action]:
                continue
            if now - (rule_state.decided_at or 0.0) < RESEND_AFTER_SECONDS:
                continue
            command = self.sent.get(decision_id) or {
                "rollout_id": rollout.id, "action": action, "decision_id": decision_id,
                "actor": GUARD_ACTOR, "reason": f"guard {name} failed (re-sent after restart)",
                "evidence": {"rule": name, "decision_id": decision_id,
                             "breach_since": _iso(rule_state.breach_since)},
            }
            outcome.commands.append(command)
            state.rules[name] = replace(rule_state, decided_at=now)

    def _guard_alert(self, kind: str, rollout: RolloutInfo, verdict: Verdict, now: float,
                     fired_at: float | None) -> dict[str, Any]:
        step = rollout.steps[rollout.step_index] if rollout.step_index >= 0 else None
        return {"kind": kind, "scope": f"rollout|{rollout.id}", "rule": f"guard:{verdict.rule}",
                "severity": "warning", "at": _iso(now), "fired_at": _iso(fired_at),
                "task": rollout.task, "release": rollout.candidate, "baseline": rollout.baseline,
                "cohort": step, "evidence": verdict.evidence()}

    def _alerts(self, state: ScopeState, task: str, now: float, outcome: GuardOutcome) -> None:
        """Platform alert rules per release of the task, over all of its traffic."""
        for release in state.releases():
            arms = [arm for arm in state.buckets
                    if arm.startswith(f"{release}|") and not arm.endswith(f"|{PAIRS}")]
            for rule in self.alert_rules:
                current = state.window(arms, now - rule.window_seconds, now)
                previous = (state.window(arms, now - 2 * rule.window_seconds,
                                         now - rule.window_seconds - BUCKET_SECONDS)
                            if rule.relative else None)
                value, samples = measure(rule, current, previous)
                key = f"{release}:{rule.name}"
                alert_state, transition = step(rule, value, samples, now,
                                               state.alerts.get(key, AlertState()))
                state.alerts[key] = alert_state
                if transition is not None:
                    outcome.alerts.append(self._platform_alert(transition, task, release))

    @staticmethod
    def _platform_alert(transition: AlertTransition, task: str, release: int) -> dict[str, Any]:
        rule = transition.rule
        return {
            "kind": transition.kind, "scope": f"release|{task}|{release}", "rule": rule.name,
            "severity": rule.severity, "summary": rule.summary, "task": task,
            "release": release, "cohort": "all", "at": _iso(transition.at),
            "fired_at": _iso(transition.fired_at),
            "evidence": {"metric": rule.metric, "value": transition.value,
                         "samples": transition.samples, "comparator": rule.comparator,
                         "threshold": rule.threshold, "window_seconds": rule.window_seconds,
                         "relative": rule.relative},
        }
