"""Blueprint: weight arithmetic, double confirmation of critical rules, immutable versions."""

from decimal import Decimal
from typing import Any

import pytest
from relctl.domain.blueprint import (
    Blueprint,
    compiled_hash,
    normalize_stages,
    rule_fingerprint,
    scoring_signature,
    weight_problems,
)
from relctl.domain.errors import ConflictError, NotFoundError, ValidationError

from .support import ACTOR, OTHER, REASON, new_app, notification_count, stages

CAROL = "carol"
CRITICAL = {"s0/b0": "never promise a refund", "s1/b0": "always read the disclaimer"}


def blueprint(stage_list: list[dict[str, Any]] | None = None) -> Blueprint:
    bp = Blueprint.create("qa-default", stage_list or stages(), ACTOR, REASON)
    bp.collect_events()
    return bp


def confirmed(bp: Blueprint, *rules: str, people: tuple[str, ...] = (ACTOR, OTHER)) -> Blueprint:
    for rule in rules:
        stage, behaviour = rule.split("/")
        for person in people:
            bp.confirm_critical(stage, behaviour, person, REASON)
    bp.collect_events()
    return bp


# ---- weights -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "behaviour_weights"),
    [
        ((100,), (100,)),
        ((50, 50), (100,)),
        ((33.3, 33.3, 33.4), (33.3, 33.3, 33.4)),
        (("33.3", "33.3", "33.4"), (25, 25, 25, 25)),
        ((0.1, 99.9), (12.5, 87.5)),
        ((Decimal("60.00"), 40), (100.0,)),
    ],
)
def test_weights_summing_exactly_to_100_publish(
    weights: tuple[Any, ...], behaviour_weights: tuple[Any, ...],
) -> None:
    bp = blueprint(stages(weights, behaviour_weights))
    assert bp.publish_problems() == []
    version = bp.publish(ACTOR, REASON)
    assert version["id"] == "qa-default@v1"


def test_float_thirds_that_do_not_reach_100_are_refused() -> None:
    bp = blueprint(stages((33.3, 33.3, 33.3)))
    with pytest.raises(ValidationError, match=r"stage weights sum to 99\.9, not 100 "
                                              r"\(adjust by 0\.1\)"):
        bp.publish(ACTOR, REASON)
    assert bp.collect_events() == []
    assert bp.versions == []


def test_behaviour_weights_must_sum_to_100_in_every_stage() -> None:
    stage_list = stages((50, 50), (60, 40))
    stage_list[1]["behaviours"][1]["weight"] = 41
    problems = weight_problems(normalize_stages(stage_list))
    assert problems == ["behaviour weights in stage 's1' sum to 101, not 100 (adjust by -1)"]
    with pytest.raises(ValidationError, match="behaviour weights in stage 's1' sum to 101"):
        blueprint(stage_list).publish(ACTOR, REASON)


def test_every_weight_problem_is_reported_together() -> None:
    problems = weight_problems(normalize_stages(stages((40, 40), (50, 49))))
    assert problems == [
        "stage weights sum to 80, not 100 (adjust by 20)",
        "behaviour weights in stage 's0' sum to 99, not 100 (adjust by 1)",
        "behaviour weights in stage 's1' sum to 99, not 100 (adjust by 1)",
    ]


def test_an_unpublishable_draft_can_still_be_saved() -> None:
    bp = blueprint(stages((10, 10)))
    assert not bp.summary()["publishable"]
    assert bp.summary()["problems"] == ["stage weights sum to 20, not 100 (adjust by 80)"]


@pytest.mark.parametrize("weight", [None, "ten", True, -1, "-0.5", float("nan"), float("inf"),
                                    "NaN", [50]])
def test_weights_must_be_non_negative_numbers(weight: Any) -> None:
    with pytest.raises(ValidationError, match=r"weight of .* must be a"):
        normalize_stages(stages((weight, 50)))


@pytest.mark.parametrize(
    ("stage_list", "message"),
    [
        ([], "non-empty list of stages"),
        ("s0", "non-empty list of stages"),
        ([{"weight": 100, "behaviours": []}], "each stage needs a name"),
        ([{"name": "s", "weight": 100, "behaviours": []}], "'s' needs at least one behaviour"),
        ([{"name": "s", "weight": 100}], "'s' needs at least one behaviour"),
        ([{"name": "s", "weight": 100, "behaviours": [{"weight": 100}]}],
         "each behaviour of stage 's' needs a name"),
        ([{"name": "s", "weight": 50, "behaviours": [{"name": "b", "weight": 100}]},
          {"name": "s", "weight": 50, "behaviours": [{"name": "b", "weight": 100}]}],
         "stage 's' appears twice"),
        ([{"name": "s", "weight": 100, "behaviours": [{"name": "b", "weight": 50},
                                                      {"name": "b", "weight": 50}]}],
         "behaviour 'b' appears twice in 's'"),
    ],
)
def test_stage_shape_rules(stage_list: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Blueprint.create("qa-default", stage_list, ACTOR, REASON)


def test_normalized_form_is_canonical() -> None:
    normalized = normalize_stages([{"name": "s", "weight": 100.0, "extra": 1, "behaviours": [
        {"name": "b", "weight": 100, "critical": 1, "rule": "be kind", "notes": "x"}]}])
    assert normalized == [{"name": "s", "weight": "100.0", "behaviours": [
        {"name": "b", "weight": "100", "critical": True, "required": False, "rule": "be kind"}]}]


@pytest.mark.parametrize("name", ["QA", "", "qa default", "-qa"])
def test_blueprint_name_must_be_a_key(name: str) -> None:
    with pytest.raises(ValidationError, match="invalid blueprint key"):
        Blueprint.create(name, stages(), ACTOR, REASON)


# ---- critical rules ----------------------------------------------------------------------


def test_critical_rule_needs_two_distinct_confirmers() -> None:
    bp = blueprint(stages(critical={"s0/b0": CRITICAL["s0/b0"]}))
    with pytest.raises(ValidationError, match="critical rule s0/b0 has 0 confirmation"):
        bp.publish(ACTOR, REASON)
    bp.confirm_critical("s0", "b0", ACTOR, REASON)
    with pytest.raises(ValidationError, match="critical rule s0/b0 has 1 confirmation"):
        bp.publish(ACTOR, REASON)
    bp.confirm_critical("s0", "b0", OTHER, REASON)
    assert bp.publish_problems() == []
    assert bp.publish(CAROL, REASON)["id"] == "qa-default@v1"


def test_same_person_cannot_confirm_twice() -> None:
    bp = blueprint(stages(critical={"s0/b0": CRITICAL["s0/b0"]}))
    bp.confirm_critical("s0", "b0", ACTOR, REASON)
    bp.collect_events()
    with pytest.raises(ConflictError, match="alice already confirmed s0/b0; a second, different"):
        bp.confirm_critical("s0", "b0", ACTOR, "really sure")
    assert bp.collect_events() == []
    assert bp.publish_problems() == [
        "critical rule s0/b0 has 1 confirmation(s); it needs 2 by distinct people "
        "(relctl blueprint confirm)"
    ]


def test_every_critical_rule_needs_its_own_confirmations() -> None:
    bp = confirmed(blueprint(stages(critical=CRITICAL)), "s0/b0")
    problems = bp.publish_problems()
    assert len(problems) == 1
    assert problems[0].startswith("critical rule s1/b0 has 0 confirmation(s)")


@pytest.mark.parametrize(("stage", "behaviour"), [("s0", "b1"), ("s9", "b0"), ("s1", "b0")])
def test_only_critical_behaviours_in_the_draft_can_be_confirmed(
    stage: str, behaviour: str,
) -> None:
    bp = blueprint(stages(behaviour_weights=(50, 50), critical={"s0/b0": "x"}))
    with pytest.raises(NotFoundError, match=f"no critical behaviour {stage}/{behaviour}"):
        bp.confirm_critical(stage, behaviour, ACTOR, REASON)
    assert bp.collect_events() == []


def test_editing_the_draft_voids_confirmations_of_changed_critical_rules_only() -> None:
    bp = confirmed(blueprint(stages(critical=CRITICAL)), "s0/b0", "s1/b0")
    assert bp.publish_problems() == []
    edited = stages(critical={**CRITICAL, "s0/b0": "never promise a refund or a discount"})
    bp.update_draft(edited, CAROL, REASON)
    problems = bp.publish_problems()
    assert len(problems) == 1
    assert problems[0].startswith("critical rule s0/b0 has 0 confirmation(s)")
    assert not any(key.startswith("s0/b0#") for key in bp.confirmations)
    assert any(key.startswith("s1/b0#") for key in bp.confirmations)
    # the previous confirmers may confirm the new wording again
    confirmed(bp, "s0/b0")
    assert bp.publish_problems() == []


def test_reweighting_a_critical_behaviour_also_voids_its_confirmations() -> None:
    bp = confirmed(blueprint(stages(behaviour_weights=(50, 50), critical={"s0/b0": "x"})),
                   "s0/b0")
    bp.update_draft(stages(behaviour_weights=(40, 60), critical={"s0/b0": "x"}), ACTOR, REASON)
    assert bp.confirmations == {}


def test_editing_something_else_keeps_confirmations() -> None:
    bp = confirmed(blueprint(stages(critical=CRITICAL)), "s0/b0", "s1/b0")
    before = dict(bp.confirmations)
    edited = stages(critical=CRITICAL)
    edited[0]["behaviours"][0]["weight"] = 100  # same value, new object
    edited.append({"name": "s2", "weight": 0, "behaviours": [{"name": "b0", "weight": 100}]})
    bp.update_draft(edited, ACTOR, REASON)
    assert bp.confirmations == before
    assert bp.publish_problems() == []


def test_reverting_an_edit_does_not_restore_voided_confirmations() -> None:
    bp = confirmed(blueprint(stages(critical={"s0/b0": "x"})), "s0/b0")
    bp.update_draft(stages(critical={"s0/b0": "y"}), ACTOR, REASON)
    bp.update_draft(stages(critical={"s0/b0": "x"}), ACTOR, REASON)
    assert bp.confirmations == {}


def test_rule_fingerprint_tracks_content() -> None:
    a = {"name": "b", "weight": "1", "critical": True, "required": False, "rule": "x"}
    assert rule_fingerprint(a) == rule_fingerprint(dict(reversed(list(a.items()))))
    assert rule_fingerprint(a) != rule_fingerprint({**a, "rule": "y"})


# ---- publishing --------------------------------------------------------------------------


def test_publish_creates_numbered_immutable_versions() -> None:
    bp = blueprint(stages((50, 50)))
    v1 = bp.publish(ACTOR, REASON)
    assert v1["number"] == 1
    assert v1["id"] == "qa-default@v1"
    assert v1["published_by"] == ACTOR
    v1_stages = normalize_stages(stages((50, 50)))
    assert v1["compiled_hash"] == compiled_hash(v1_stages)

    bp.update_draft(stages((20, 80)), OTHER, REASON)
    v2 = bp.publish(OTHER, REASON)
    assert (v2["number"], v2["id"]) == (2, "qa-default@v2")
    assert v2["compiled_hash"] != v1["compiled_hash"]

    # v1 did not change when the draft did, and both versions coexist
    assert bp.compiled("qa-default@v1")["stages"] == v1_stages
    assert bp.compiled("qa-default@v1")["compiled_hash"] == compiled_hash(v1_stages)
    assert bp.compiled("qa-default@v2")["stages"] == normalize_stages(stages((20, 80)))
    assert [v["id"] for v in bp.versions] == ["qa-default@v1", "qa-default@v2"]
    assert [type(e).__name__ for e in bp.collect_events()] == [
        "Published", "DraftUpdated", "Published"]


def test_unchanged_republish_is_refused() -> None:
    bp = blueprint()
    bp.publish(ACTOR, REASON)
    bp.collect_events()
    with pytest.raises(ConflictError, match="draft is unchanged since qa-default@v1"):
        bp.publish(ACTOR, REASON)
    assert bp.collect_events() == []
    assert len(bp.versions) == 1


def test_republishing_an_older_draft_after_a_change_is_a_new_version() -> None:
    bp = blueprint(stages((50, 50)))
    bp.publish(ACTOR, REASON)
    bp.update_draft(stages((20, 80)), ACTOR, REASON)
    bp.publish(ACTOR, REASON)
    bp.update_draft(stages((50, 50)), ACTOR, REASON)
    v3 = bp.publish(ACTOR, REASON)
    assert v3["id"] == "qa-default@v3"
    assert v3["compiled_hash"] == bp.versions[0]["compiled_hash"]


def test_unknown_version_is_not_found() -> None:
    bp = blueprint()
    bp.publish(ACTOR, REASON)
    with pytest.raises(NotFoundError, match="blueprint version qa-default@v2 does not exist"):
        bp.compiled("qa-default@v2")


def test_scoring_signature_ignores_non_critical_rule_text() -> None:
    a = normalize_stages(stages())
    b = normalize_stages(stages())
    b[0]["behaviours"][0]["rule"] = "different"
    assert scoring_signature({"stages": a}) == scoring_signature({"stages": b})
    c = normalize_stages(stages(critical={"s0/b0": "x"}))
    d = normalize_stages(stages(critical={"s0/b0": "y"}))
    assert scoring_signature({"stages": c}) != scoring_signature({"stages": d})
    assert scoring_signature(None) is None


@pytest.mark.parametrize(("actor", "reason"), [("", REASON), (ACTOR, "  ")])
def test_blueprint_commands_need_attribution(actor: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=r"actor|reason"):
        Blueprint.create("qa-default", stages(), actor, reason)
    bp = blueprint(stages(critical={"s0/b0": "x"}))
    for command in (
        lambda: bp.update_draft(stages(), actor, reason),
        lambda: bp.confirm_critical("s0", "b0", actor, reason),
        lambda: bp.publish(actor, reason),
    ):
        with pytest.raises(ValidationError, match=r"actor|reason"):
            command()
    assert bp.collect_events() == []


# ---- through the application -------------------------------------------------------------


def test_publish_through_the_application() -> None:
    app = new_app()
    app.create_blueprint("qa-default", stages(critical={"s0/b0": "x"}), ACTOR, REASON)
    before = notification_count(app)
    with pytest.raises(ValidationError, match="has 0 confirmation"):
        app.publish_blueprint("qa-default", ACTOR, REASON)
    app.confirm_critical("qa-default", "s0", "b0", ACTOR, REASON)
    with pytest.raises(ConflictError, match="already confirmed"):
        app.confirm_critical("qa-default", "s0", "b0", ACTOR, REASON)
    assert notification_count(app) == before + 1
    app.confirm_critical("qa-default", "s0", "b0", OTHER, REASON)
    outcome = app.publish_blueprint("qa-default", CAROL, REASON)
    assert outcome["published"] == "qa-default@v1"
    assert outcome["aggregate"]["publishable"] is True
    before = notification_count(app)
    with pytest.raises(ConflictError, match="unchanged"):
        app.publish_blueprint("qa-default", CAROL, REASON)
    assert notification_count(app) == before
    assert app.blueprint("qa-default").compiled("qa-default@v1")["published_by"] == CAROL


def test_stale_expected_version_is_a_conflict() -> None:
    app = new_app()
    app.create_blueprint("qa-default", stages(), ACTOR, REASON)
    app.update_blueprint("qa-default", stages((20, 80)), ACTOR, REASON, expected_version=1)
    before = notification_count(app)
    with pytest.raises(ConflictError, match="is at version 2, not 1"):
        app.update_blueprint("qa-default", stages((30, 70)), ACTOR, REASON, expected_version=1)
    assert notification_count(app) == before


def test_second_blueprint_with_the_same_name_collides() -> None:
    app = new_app()
    app.create_blueprint("qa-default", stages(), ACTOR, REASON)
    before = notification_count(app)
    with pytest.raises(ConflictError, match="changed concurrently"):
        app.create_blueprint("qa-default", stages((20, 80)), OTHER, REASON)
    assert notification_count(app) == before


# ---- bounded weights ---------------------------------------------------------------------

@pytest.mark.parametrize("weight", [101, "1e1000000", 1e308, -1, "0.0000001", float("inf")])
def test_weights_are_bounded(weight: Any) -> None:
    with pytest.raises(ValidationError, match="weight"):
        normalize_stages([{"name": "s", "weight": weight,
                           "behaviours": [{"name": "b", "weight": 100}]}])


def test_weights_keep_their_stored_form() -> None:
    stored = normalize_stages([{"name": "s", "weight": 100, "behaviours": [
        {"name": "a", "weight": 33.5}, {"name": "b", "weight": "66.5"}]}])
    assert stored[0]["weight"] == "100"
    assert [b["weight"] for b in stored[0]["behaviours"]] == ["33.5", "66.5"]


def test_a_stored_overflowing_weight_still_reads() -> None:
    stages_ = [{"name": "s", "weight": "1E+1000000", "behaviours": [
        {"name": "b", "weight": "100", "critical": False, "required": False, "rule": ""}]}]
    problems = weight_problems(stages_)
    assert len(problems) == 1 and "stage weights sum to" in problems[0]
