"""Builders for the live-guard unit tests: evaluation records at chosen instants, a control plane
whose real events feed a ControlIndex, guard rules, window stats and task partials.

The control events are the ones the in-memory (POPO) application really records, turned into
CloudEvents envelopes exactly as the relay publishes them, so the index under test sees the
same ids, types and data a worker sees on ``relctl.control``. The only liberty taken is the
envelope ``time`` (the instant the event was recorded): tests may pin it, so that a rollout's
``started_at`` sits at a chosen instant relative to the evaluations instead of at the wall clock.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from relctl.adapters import cloudevents
from relctl.adapters.commands import GUARD_ACTOR, execute, parse_command
from relctl.application.service import ControlPlane
from relctl.domain.evaluation import EvaluationRecord
from relctl.domain.guards import normalize_rule
from relctl.domain.metrics import WindowStats
from relctl.streams.attribute import BUCKET_SECONDS, Partial, arm_key, task_scope
from relctl.streams.control_index import ControlIndex

from tests.unit.evaluation_support import evaluation
from tests.unit.support import ACTOR, REASON, new_app, released_task, spec

TASK = "csat"
SCOPE = task_scope(TASK)
# A fixed instant on a bucket boundary, so bucket arithmetic in the tests is exact.
T0 = 1_800_000_000.0
assert T0 % BUCKET_SECONDS == 0
# Where rollouts start unless a test says otherwise: well before T0, so only the rule's own
# window bounds what is judged, whatever the wall clock says.
STARTED = T0 - 3600.0

# Arm keys of the task scope: release 1 is the baseline, release 2 the default candidate.
BASE = arm_key(1, "production")
CAND = arm_key(2, "production")
SHADOW = arm_key(2, "shadow")
PAIRS = arm_key(2, "pairs")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def record(at: float = T0, **changes: Any) -> EvaluationRecord:
    """A valid evaluation (task ``csat``, release 1, tenant ``acme`` unless changed), scored at
    epoch ``at``, validated with the wire format's rules (what a producer sends)."""
    return EvaluationRecord.from_mapping(evaluation(**{"task": TASK, "occurred_at": iso(at),
                                                       **changes}))


def envelopes(app: ControlPlane, start: int = 1) -> list[dict[str, Any]]:
    """Every control event recorded since notification ``start``, as CloudEvents dicts."""
    return [cloudevents.envelope(app.mapper.to_domain_event(n), n.id)
            for n in app.recorder.select_notifications(start=start, limit=10_000)]


def kafka_envelopes(app: ControlPlane) -> list[dict[str, Any]]:
    """The same events after the Kafka binary-mode round trip (what a worker decodes)."""
    result = []
    for n in app.recorder.select_notifications(start=1, limit=10_000):
        _, value, headers = cloudevents.to_kafka(app.mapper.to_domain_event(n), n.id)
        result.append(cloudevents.from_kafka(headers, value))
    return result


def guard_rule(**overrides: Any) -> dict[str, Any]:
    """A validated guard rule: llm_error_rate > 5% over 120 s, 50 samples, RollbackTrigger."""
    data: dict[str, Any] = {"name": "errors", "metric": "llm_error_rate", "comparator": ">",
                            "threshold": 0.05, "min_samples": 50, "window_seconds": 120,
                            "for_seconds": 0, "gate_class": "RollbackTrigger"}
    data.update(overrides)
    return normalize_rule(data)


def errors(count: int, failed: int) -> WindowStats:
    """Stats of ``count`` evaluations of which ``failed`` were LLM errors."""
    return WindowStats(count=count, llm_error=failed)


def scores(count: int, score: float) -> WindowStats:
    """Stats of ``count`` evaluations that all scored ``score``."""
    return WindowStats(count=count, score_sum=count * score, score_n=count)


class Control:
    """A real in-memory control plane and the ControlIndex a worker would build from it."""

    def __init__(self, releases: int = 3) -> None:
        self.app = new_app()
        self.index = ControlIndex()
        self.position = 0
        released_task(self.app, TASK, releases)
        self.sync()

    def sync(self, at: float | None = None) -> int:
        """Apply the events recorded since the last sync; return how many were new. With
        ``at``, the events are published as recorded at that instant."""
        fresh = envelopes(self.app, self.position + 1)
        for env in fresh:
            self.index.apply({**env, "time": iso(at)} if at is not None else env)
        self.position += len(fresh)
        return len(fresh)

    def plan(self, rules: list[dict[str, Any]] | None = None, shadow: bool = False,
             candidate: int = 2, steps: list[Any] | None = None, sync: bool = True) -> str:
        planned = self.app.plan_rollout(TASK, candidate, ACTOR, REASON, steps=steps or [50, 100],
                                        guard_rules=rules or [], shadow=shadow)
        if sync:
            self.sync()
        return str(planned["aggregate"]["id"])

    def running(self, rules: list[dict[str, Any]] | None = None, shadow: bool = False,
                candidate: int = 2, started_at: float | None = STARTED,
                sync: bool = True) -> str:
        """Plan and start a rollout baseline 1 -> ``candidate``; return its id. The Started
        event carries ``started_at`` (the wall clock if None). Without ``sync`` the index does
        not see the rollout yet (the relay is behind); ``sync(at=...)`` publishes it later."""
        rollout = self.plan(rules, shadow, candidate, sync=sync)
        self.app.start_rollout(UUID(rollout), ACTOR, REASON)
        if sync:
            self.sync(started_at)
        return rollout

    def do(self, command: str, rollout: str, *args: Any) -> None:
        """Run an application command on a rollout (pause_rollout, roll_back, ...) and sync."""
        getattr(self.app, command)(UUID(rollout), ACTOR, REASON, *args)
        self.sync()

    def execute(self, command: dict[str, Any]) -> bool:
        """What the control plane's command consumer does with a command from
        ``relctl.commands`` (validated from its wire form), then sync; True if it changed
        anything."""
        result = execute(self.app, parse_command(orjson.dumps(command)))
        self.sync()
        return bool(result["changed"])

    def release(self, prompt: str = "another prompt") -> int:
        outcome = self.app.create_release(TASK, spec(prompt_template=prompt), ACTOR, REASON)
        self.sync()
        return int(outcome["aggregate"]["number"])


def guard_command(rollout: str, action: str, decision: str) -> dict[str, Any]:
    """A decision as the guard publishes it: the evidence carries the decision id."""
    return {"rollout_id": rollout, "action": action, "decision_id": decision,
            "actor": GUARD_ACTOR, "reason": f"guard errors failed ({decision})",
            "evidence": {"rule": "errors", "decision_id": decision, "value": 0.1}}


def partial(buckets: Mapping[tuple[str, float], WindowStats], scope: str = SCOPE,
            watermark: float | None = None) -> Partial:
    """A task Partial with the given (arm key, bucket start) -> stats, sent over the wire
    (encoded and decoded) like stage 1 sends it to stage 2."""
    built = Partial(scope)
    for (arm, bucket), stats in buckets.items():
        built.stats(arm, int(bucket)).merge(stats)
        built.evaluations += stats.count
    built.watermark = watermark if watermark is not None else max(
        (b for _, b in buckets), default=0.0)
    return Partial.decode(built.encode())
