"""The rig of the guard unit tests: a rollout of task ``csat`` (baseline 1, candidate 2), the
stage-2 guard over an in-memory StateStore, and what the guard sends, in its wire form.

Partials are task partials (scope ``task|csat``, arms ``<release>|<produced arm>``); the guard
maps releases to the rollout's baseline and candidate when it evaluates. The control state comes
from a real in-memory application; decisions are executed with the same function the control
plane's command consumer uses, and the resulting control events are fed back into the index, so
the loop guard -> command -> event -> index is closed.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from relctl.domain.alerts import AlertRule
from relctl.domain.guard_eval import RuleState, Verdict
from relctl.domain.ledger import Ledger
from relctl.domain.metrics import WindowStats
from relctl.streams.attribute import BUCKET_SECONDS
from relctl.streams.guard import (
    DictStore,
    Guard,
    GuardResult,
)

from tests.unit.stream_support import (
    SCOPE,
    STARTED,
    T0,
    Control,
    partial,
)

B0, B1, B2 = int(T0), int(T0 + BUCKET_SECONDS), int(T0 + 2 * BUCKET_SECONDS)
Buckets = Mapping[tuple[str, float], WindowStats]


@dataclass
class Sent:
    """A GuardResult as it goes on the wire: commands and alerts as their published JSON
    objects (what the command consumer and alert consumers read), verdicts as they are."""

    verdicts: list[Verdict]
    commands: list[dict[str, Any]]
    alerts: list[dict[str, Any]]

    @classmethod
    def of(cls, result: GuardResult) -> "Sent":
        return cls(result.verdicts, [c.wire() for c in result.commands],
                   [a.wire() for a in result.alerts])


class Rig:
    """A rollout of task ``csat`` (baseline 1, candidate 2), its guard, and the store behind
    it. ``state`` is how far the rollout got: None (planned only, or not visible to the index
    with ``sync=False``), else the Started event's time."""

    def __init__(self, rules: list[dict[str, Any]], shadow: bool = False,
                 alert_rules: tuple[AlertRule, ...] = (), started_at: float | None = STARTED,
                 start: bool = True, sync: bool = True) -> None:
        self.control = Control()
        self.rollout = (self.control.running(rules, shadow=shadow, started_at=started_at,
                                             sync=sync)
                        if start else self.control.plan(rules, shadow=shadow, sync=sync))
        self.store = DictStore()
        self.alert_rules = alert_rules
        self.guard = Guard(self.control.index, self.store, alert_rules)

    def feed(self, now: float, buckets: Buckets | None = None) -> "Sent":
        return Sent.of(self.guard.handle(partial(buckets or {}), now))

    def restart(self) -> Guard:
        """A new worker over the same (changelogged) store: nothing kept in memory."""
        self.guard = Guard(self.control.index, self.store, self.alert_rules)
        return self.guard

    def execute(self, command: dict[str, Any]) -> bool:
        """What the control plane does with a command from relctl.commands."""
        return self.control.execute(command)

    def state(self) -> str:
        return self.control.index.rollouts[self.rollout].state

    def stored(self, arm: str, bucket: int) -> WindowStats | None:
        """The (arm, bucket) stats a restarted worker would recover from the store."""
        recovered = Ledger(SCOPE, self.store, BUCKET_SECONDS)
        recovered.load()
        return recovered.buckets.get(arm, {}).get(bucket)

    def meta(self) -> dict[str, Any]:
        return orjson.loads(self.store[f"{SCOPE}|meta"])

    def rule(self, name: str) -> RuleState:
        return RuleState.from_json(self.meta()["rules"][name])


def decision_id(rig: Rig, rule: str, since: float) -> str:
    return f"{rig.rollout}:{rule}:{int(since * 1000)}"


def outcomes(out: Sent) -> list[tuple[str, str | None]]:
    return [(v.outcome, v.action) for v in out.verdicts]
