"""Release notes fed by the read models: the audit trail (each release's content and every
recorded reason about it, the task's defaults, its rollouts), the overrides and pins (who the
release reaches), and the guard's latest verdicts (what a rollout measured). The notes
themselves are built by the pure :func:`relctl.domain.release_notes.build_notes`."""

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relctl.adapters.postgres import Database
from relctl.adapters.verdicts import VerdictBoard
from relctl.domain.errors import NotFoundError
from relctl.domain.read_models import Reach
from relctl.domain.release_notes import (
    Audience,
    MeasuredDelta,
    RecordedReason,
    ReleaseFacts,
    ReleaseNotes,
    build_notes,
)
from relctl.projections.queries import drift

ACTIVE = ("Planned", "Running", "Paused", "Frozen")


@dataclass
class _Task:
    """What the audit rows of one task say about its releases, defaults and rollouts."""

    releases: dict[int, dict[str, Any]] = field(default_factory=dict)  # number -> summary
    release_ids: dict[str, int] = field(default_factory=dict)
    reasons: dict[int, list[RecordedReason]] = field(default_factory=dict)
    became_default: dict[int, int | None] = field(default_factory=dict)  # number -> previous
    default: int | None = None
    rollouts: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> summary


def _reason(row: dict[str, Any]) -> RecordedReason:
    return RecordedReason(datetime.fromisoformat(row["at"]), row["event"], row.get("actor"),
                          row.get("reason"))


def _fold(db: Database, task: str) -> _Task:
    found = _Task()
    for raw in db.execute("SELECT content FROM relctl_rm_audit WHERE task = %s ORDER BY seq",
                          (task,)):
        row = json.loads(raw["content"])
        kind, after, before = row.get("aggregate_kind"), row.get("after") or {}, \
            row.get("before") or {}
        if kind == "release":
            number = after.get("number") or found.release_ids.get(row["aggregate_id"])
            if number is None:
                continue
            found.release_ids[row["aggregate_id"]] = number
            found.releases.setdefault(number, {}).update(after)
            found.reasons.setdefault(number, []).append(_reason(row))
        elif kind == "task" and "default_release" in after:
            number = after["default_release"]
            found.became_default.setdefault(number, before.get("default_release"))
            found.default = number
            found.reasons.setdefault(number, []).append(_reason(row))
        elif kind == "rollout":
            summary = found.rollouts.setdefault(row["aggregate_id"], {})
            summary.update(after)
            candidate = summary.get("candidate")
            if candidate is not None:
                found.reasons.setdefault(candidate, []).append(_reason(row))
    return found


def _facts(task: str, number: int, summary: dict[str, Any]) -> ReleaseFacts:
    content = {**(summary.get("content") or {}), "prompt_hash": summary.get("prompt_hash")}
    return ReleaseFacts(task, number, str(summary.get("stage")), content)


def _previous(history: _Task, number: int) -> int | None:
    """The release this one replaces: the default before it became the default; if it never
    was, the current default; else the release before it."""
    if number in history.became_default:
        return history.became_default[number]
    if history.default is not None and history.default != number:
        return history.default
    return number - 1 if number - 1 in history.releases else None


def _measured(board: VerdictBoard | None, rollouts: list[str]) -> list[MeasuredDelta]:
    if board is None:
        return []
    return [MeasuredDelta(
        rollout_id=rollout, rule=v.rule, metric=v.metric, candidate=v.candidate.value,
        baseline=v.baseline.value, candidate_samples=v.candidate.samples,
        baseline_samples=v.baseline.samples, outcome=str(v.outcome), at=v.at)
        for rollout in rollouts for v in board.latest(rollout)]


def release_notes(db: Database, task: str, number: int, tenant: str | None = None,
                  verdicts: VerdictBoard | None = None) -> ReleaseNotes:
    """The notes of ``task`` v``number`` for ``tenant`` (or for every tenant)."""
    history = _fold(db, task)
    if number not in history.releases:
        raise NotFoundError(f"no release {task} v{number} in the audit trail")
    previous = _previous(history, number)
    ours = [rid for rid, s in history.rollouts.items() if s.get("candidate") == number]
    active = next((rid for rid in ours if history.rollouts[rid].get("state") in ACTIVE), None)
    reach = drift(db, task)
    audience = None
    if tenant is not None:
        entry = next((t for t in [*reach.reached, *reach.shielded] if t.tenant == tenant), None)
        if entry is None:
            raise NotFoundError(f"tenant {tenant!r} is not registered")
        audience = Audience(tenant, entry.reach, entry.detail)
    why = sorted(history.reasons.get(number, []), key=lambda r: r.at)
    replaced = (None if previous is None or previous not in history.releases
                else _facts(task, previous, history.releases[previous]))
    return build_notes(
        _facts(task, number, history.releases[number]), replaced, why,
        _measured(verdicts, ours), audience,
        reached=[t.tenant for t in reach.reached],
        shielded=[t.tenant for t in reach.shielded if t.reach is not Reach.DIRECT],
        active_rollout=active)
