"""Release notes for tenant admins, built from what the event store recorded.

Pure: :func:`build_notes` takes the facts the read models hold (the release's content and the
one it replaces, the recorded reasons, the rollout's measured figures, how the tenant is
reached) and answers what changed (prompt / model / schema / blueprint ...), why, the expected
effect on score distributions (declared by the release's author, and measured by the guard
where a rollout has figures), what to do, and how to opt out. A tenant an override or pin
shields is told it is not affected. :func:`to_markdown` renders the same notes for people.
"""

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from relctl.domain.read_models import Reach
from relctl.domain.release import TenantAction
from relctl.domain.tenant import MAX_PIN_DAYS


class ChangeArea(StrEnum):
    """What part of the scoring artifact a release changes."""

    PROMPT = "prompt"
    MODEL = "model"
    SAMPLING = "sampling"
    SCHEMA = "schema"
    BLUEPRINT = "blueprint"
    RETRIEVAL = "retrieval"


# Which content fields make up each area, in the order the notes list them.
AREAS: dict[ChangeArea, tuple[str, ...]] = {
    ChangeArea.PROMPT: ("prompt_hash",),
    ChangeArea.MODEL: ("model_provider", "model_name", "model_version"),
    ChangeArea.SAMPLING: ("temperature", "seed"),
    ChangeArea.SCHEMA: ("output_schema_version",),
    ChangeArea.BLUEPRINT: ("blueprint_version_id",),
    ChangeArea.RETRIEVAL: ("retrieval",),
}
# A change of these can move scores: tenants should recalibrate their thresholds.
SCORE_MOVING = (ChangeArea.PROMPT, ChangeArea.MODEL, ChangeArea.BLUEPRINT, ChangeArea.RETRIEVAL)


@dataclass(frozen=True)
class ReleaseFacts:
    """One release as the read models know it: its content (with its prompt hash)."""

    task: str
    number: int
    stage: str
    content: dict[str, Any]


@dataclass(frozen=True)
class RecordedReason:
    """A recorded event about the release (drafted, promoted, made default, rolled out ...)."""

    at: datetime
    event: str
    actor: str | None
    reason: str | None


@dataclass(frozen=True)
class MeasuredDelta:
    """A guard rule's latest figures for a rollout of the release: candidate vs baseline."""

    rollout_id: str
    rule: str
    metric: str
    candidate: float | None
    baseline: float | None
    candidate_samples: int
    baseline_samples: int
    outcome: str
    at: str

    @property
    def delta(self) -> float | None:
        if self.candidate is None or self.baseline is None:
            return None
        return self.candidate - self.baseline


@dataclass(frozen=True)
class Audience:
    """How the release reaches the tenant the notes are for (None: notes for every tenant)."""

    tenant: str
    reach: Reach
    detail: str  # e.g. "pinned to v1 by ops until ...", "follows the task"


@dataclass(frozen=True)
class Change:
    area: ChangeArea
    before: dict[str, Any]
    after: dict[str, Any]


@dataclass(frozen=True)
class ExpectedShift:
    metric: str
    declared: float | None
    unit: str | None
    note: str | None
    measured: float | None = None  # the guard's candidate minus baseline, if it has one


@dataclass(frozen=True)
class ReleaseNotes:
    task: str
    release: int
    stage: str
    replaces: int | None
    tenant: str | None
    affected: bool
    shielded_by: str | None
    changes: list[Change]
    why: list[RecordedReason]
    expected_summary: str | None
    expected: list[ExpectedShift]
    measured: list[MeasuredDelta]
    what_to_do: list[str]
    opt_out: list[str]
    known_limitations: list[str] = field(default_factory=list)
    author_notes: dict[str, Any] = field(default_factory=dict)
    reached: list[str] = field(default_factory=list)  # notes for every tenant: who it reaches
    shielded: list[str] = field(default_factory=list)


def _values(content: dict[str, Any], area: ChangeArea) -> dict[str, Any]:
    return {name: content.get(name) for name in AREAS[area]}


def changes_between(before: dict[str, Any] | None, after: dict[str, Any]) -> list[Change]:
    """The areas whose fields differ (every area for a first release)."""
    found = []
    for area in ChangeArea:
        old = _values(before or {}, area)
        new = _values(after, area)
        if before is None or old != new:
            found.append(Change(area, old if before is not None else {}, new))
    return found


def _shifts(effect: dict[str, Any], measured: list[MeasuredDelta]) -> list[ExpectedShift]:
    by_metric = {m.metric: m.delta for m in measured if m.delta is not None}
    shifts = [ExpectedShift(d["metric"], d.get("delta"), d.get("unit"), d.get("note"),
                            by_metric.pop(d["metric"], None))
              for d in effect.get("deltas") or []]
    shifts += [ExpectedShift(metric, None, None, "measured by the guard, not declared", delta)
               for metric, delta in by_metric.items()]
    return shifts


def _actions(declared: list[str], changes: list[Change]) -> list[TenantAction]:
    if declared:
        return [TenantAction(a) for a in declared]
    areas = {c.area for c in changes}
    actions = []
    if areas & set(SCORE_MOVING):
        actions.append(TenantAction.RECALIBRATE_THRESHOLDS)
    if areas:
        actions.append(TenantAction.REVALIDATE)
    return actions or [TenantAction.NONE]


ACTION_TEXT = {
    TenantAction.RECALIBRATE_THRESHOLDS: "Recalibrate alert and pass/fail thresholds on "
                                         "scores: their distribution may shift.",
    TenantAction.REVALIDATE: "Revalidate on a sample of your own calls (and any integration "
                             "that reads the output) before relying on trends across the "
                             "change.",
    TenantAction.NONE: "Nothing: the author expects no shift in scores.",
}


def build_notes(
        release: ReleaseFacts, previous: ReleaseFacts | None, why: list[RecordedReason],
        measured: list[MeasuredDelta], audience: Audience | None,
        reached: list[str] | None = None, shielded: list[str] | None = None,
        active_rollout: str | None = None) -> ReleaseNotes:
    """The notes of ``release`` (replacing ``previous``) for ``audience`` (or everyone)."""
    content = release.content
    effect: dict[str, Any] = content.get("expected_effect") or {}
    changes = changes_between(previous.content if previous else None, content)
    affected = audience is None or audience.reach is Reach.DIRECT
    task, number = release.task, release.number
    key = audience.tenant if audience else "TENANT"
    if affected:
        what_to_do = [ACTION_TEXT[a] for a in _actions(effect.get("tenant_actions") or [],
                                                        changes)]
    else:
        assert audience is not None
        what_to_do = [f"Nothing: {audience.detail}, so this release does not reach you. "
                      f"To follow the task's releases again, reset to defaults (preview with "
                      f"`relctl tenant reset {key} --task {task} --dry-run`)."]
    opt_out = []
    if previous is not None and affected:
        opt_out.append(f"Opt out: pin {task} to v{previous.number} for 1-{MAX_PIN_DAYS} days "
                       f"(`relctl tenant pin {key} {task} {previous.number} -r <why>`); the "
                       "pin expires on its own.")
    if active_rollout is not None:
        opt_out.append(f"Roll back: operators can send every tenant back to the baseline "
                       f"(`relctl rollout rollback {active_rollout} -r <why>`); the guard "
                       "does so itself when a guard rule fails.")
    return ReleaseNotes(
        task=task, release=number, stage=release.stage,
        replaces=previous.number if previous else None,
        tenant=audience.tenant if audience else None, affected=affected,
        shielded_by=None if affected or audience is None else audience.detail,
        changes=changes, why=why, expected_summary=effect.get("summary"),
        expected=_shifts(effect, measured), measured=measured, what_to_do=what_to_do,
        opt_out=opt_out, known_limitations=list(content.get("known_limitations") or []),
        author_notes=dict(content.get("release_notes") or {}),
        reached=list(reached or []), shielded=list(shielded or []))


# ---- Markdown -------------------------------------------------------------------------------

def _value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "none"
    return str(value)


def _signed(value: float | None, unit: str | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4g}" + (f" {unit}" if unit else "")


def _change_line(change: Change) -> str:
    after = ", ".join(f"{k} {_value(v)}" for k, v in change.after.items())
    if not change.before:
        return f"- **{change.area}**: {after}"
    before = ", ".join(f"{k} {_value(v)}" for k, v in change.before.items())
    return f"- **{change.area}**: {before} -> {after}"


def to_markdown(notes: ReleaseNotes) -> str:
    """The notes for people: one Markdown document."""
    head = f"# {notes.task} v{notes.release} ({notes.stage})"
    lines = [head, ""]
    if notes.tenant is not None:
        state = ("**affects you**" if notes.affected
                 else f"**does not affect you**: {notes.shielded_by}")
        lines += [f"For tenant `{notes.tenant}`: this release {state}.", ""]
    if notes.replaces is not None:
        lines += [f"Replaces v{notes.replaces}.", ""]
    lines += ["## What changed", ""]
    lines += [_change_line(c) for c in notes.changes] or ["- nothing in the scoring artifact"]
    lines += ["", "## Why", ""]
    lines += [f"- {r.at.isoformat()} {r.event} by {r.actor or 'unknown'}: {r.reason or '-'}"
              for r in notes.why] or ["- no reason recorded"]
    lines += ["", "## Expected effect on scores", ""]
    if notes.expected_summary:
        lines += [notes.expected_summary, ""]
    for shift in notes.expected:
        note = f" ({shift.note})" if shift.note else ""
        lines.append(f"- {shift.metric}: declared {_signed(shift.declared, shift.unit)}, "
                     f"measured {_signed(shift.measured)}{note}")
    if not notes.expected:
        lines.append("- no expected shift declared" + (
            "; score distributions may still shift" if notes.changes else ""))
    if notes.measured:
        lines += ["", "Measured by the guard during the rollout (candidate vs baseline):", ""]
        lines += [f"- {m.rule} ({m.metric}): {_signed(m.candidate)} vs {_signed(m.baseline)} "
                  f"over {m.candidate_samples}/{m.baseline_samples} calls, {m.outcome}, "
                  f"as of {m.at}" for m in notes.measured]
    if notes.known_limitations:
        lines += ["", "Known limitations:", ""] + [f"- {x}" for x in notes.known_limitations]
    lines += ["", "## What you should do", ""] + [f"- {x}" for x in notes.what_to_do]
    if notes.opt_out:
        lines += ["", "## Rollback and opt-out", ""] + [f"- {x}" for x in notes.opt_out]
    if notes.tenant is None and (notes.reached or notes.shielded):
        lines += ["", "## Who it reaches", "",
                  f"- directly: {', '.join(notes.reached) or 'nobody'}",
                  f"- not affected (override or pin): {', '.join(notes.shielded) or 'nobody'}"]
    return "\n".join(lines) + "\n"
