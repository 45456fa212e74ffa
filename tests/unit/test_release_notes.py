"""Release notes: what changed, why, expected and measured effect, what to do, opt-out; a
shielded tenant is told it is not affected. The builder is pure: facts in, notes out."""

from datetime import UTC, datetime

from relctl.domain.read_models import Reach
from relctl.domain.release import ReleaseSpec, prompt_hash
from relctl.domain.release_notes import (
    Audience,
    ChangeArea,
    MeasuredDelta,
    RecordedReason,
    ReleaseFacts,
    build_notes,
    to_markdown,
)

from .support import spec

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
EFFECT = {"summary": "Scores may shift up slightly on long calls.",
          "deltas": [{"metric": "score_mean", "delta": 2.5, "unit": "points"}],
          "tenant_actions": ["recalibrate-thresholds"]}


def _facts(number: int, **changes: object) -> ReleaseFacts:
    content = ReleaseSpec.from_dict(spec(**changes)).as_dict()
    return ReleaseFacts("csat", number, "Stable",
                        {**content, "prompt_hash": prompt_hash(content["prompt_template"])})


OLD = _facts(1)
NEW = _facts(2, prompt_template="a better prompt", model_version="gpt-4o-2024-11-20",
             expected_effect=EFFECT, known_limitations=["weaker on very short calls"])
WHY = [RecordedReason(AT, "Release.Drafted", "alice", "fewer false fails on long calls"),
       RecordedReason(AT, "Task.DefaultReleaseSet", "bob", "v2 passed its gates")]
MEASURED = [MeasuredDelta("r-1", "score-shift", "score_mean", 73.0, 70.0, 120, 130, "Passed",
                          AT.isoformat())]


def test_notes_for_a_tenant_it_reaches() -> None:
    notes = build_notes(NEW, OLD, WHY, MEASURED,
                        Audience("acme", Reach.DIRECT, "follows the task"), active_rollout="r-1")
    assert notes.affected and notes.replaces == 1 and notes.shielded_by is None
    assert [c.area for c in notes.changes] == [ChangeArea.PROMPT, ChangeArea.MODEL]
    model = notes.changes[1]
    assert (model.before["model_version"], model.after["model_version"]) == (
        "gpt-4o-2024-08-06", "gpt-4o-2024-11-20")
    assert [r.reason for r in notes.why] == ["fewer false fails on long calls",
                                              "v2 passed its gates"]
    [shift] = notes.expected
    assert (shift.metric, shift.declared, shift.measured) == ("score_mean", 2.5, 3.0)
    assert notes.what_to_do == [
        "Recalibrate alert and pass/fail thresholds on scores: their distribution may shift."]
    assert "relctl tenant pin acme csat 1" in notes.opt_out[0]
    assert "relctl rollout rollback r-1" in notes.opt_out[1]
    text = to_markdown(notes)
    for part in ("# csat v2 (Stable)", "**affects you**", "## What changed", "**prompt**",
                 "## Why", "fewer false fails", "## Expected effect on scores",
                 "score_mean: declared +2.5 points, measured +3", "## What you should do",
                 "## Rollback and opt-out", "weaker on very short calls"):
        assert part in text, part


def test_a_shielded_tenant_is_told_it_is_not_affected() -> None:
    pinned = Audience("globex", Reach.SHIELDED_BY_PIN, "pinned to v1 by ops until 2026-12-20")
    notes = build_notes(NEW, OLD, WHY, [], pinned)
    assert not notes.affected and notes.shielded_by == pinned.detail
    assert notes.opt_out == []
    assert notes.what_to_do[0].startswith("Nothing: pinned to v1")
    assert "relctl tenant reset globex --task csat --dry-run" in notes.what_to_do[0]
    assert "**does not affect you**: pinned to v1" in to_markdown(notes)


def test_without_a_declared_effect_actions_follow_from_what_changed() -> None:
    sampling_only = build_notes(_facts(2, seed=8), OLD, [], [], None)
    assert [c.area for c in sampling_only.changes] == [ChangeArea.SAMPLING]
    assert [a.split(" ")[0] for a in sampling_only.what_to_do] == ["Revalidate"]
    model = build_notes(_facts(2, model_version="gpt-4o-2024-11-20"), OLD, [], MEASURED, None,
                        reached=["acme"], shielded=["globex"])
    assert [a.split(" ")[0] for a in model.what_to_do] == ["Recalibrate", "Revalidate"]
    # A measured shift nobody declared is still reported.
    assert [(s.metric, s.declared, s.measured) for s in model.expected] == [
        ("score_mean", None, 3.0)]
    text = to_markdown(model)
    assert "- directly: acme" in text and "- not affected (override or pin): globex" in text


def test_a_first_release_lists_everything_it_sets() -> None:
    notes = build_notes(_facts(1), None, [], [], None)
    assert notes.replaces is None and len(notes.changes) == len(ChangeArea)
    assert notes.opt_out == []


def test_expected_effect_is_stored_only_when_declared() -> None:
    assert "expected_effect" not in ReleaseSpec.from_dict(spec()).as_dict()
    stored = ReleaseSpec.from_dict(spec(expected_effect=EFFECT)).as_dict()["expected_effect"]
    assert stored["deltas"][0] == {"metric": "score_mean", "delta": 2.5, "unit": "points",
                                   "note": None}
