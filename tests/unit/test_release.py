"""Release: spec validation, the lifecycle, frozen content and breaking-change classification."""

import math
from typing import Any

import pytest
from relctl.domain.blueprint import normalize_stages
from relctl.domain.changes import breaking_changes, next_task_key
from relctl.domain.errors import ConflictError, ValidationError
from relctl.domain.release import STAGES, Release, ReleaseSpec, is_alias, prompt_hash

from .support import ACTOR, OTHER, REASON, SCHEMA, TASK, new_app, notification_count, spec, stages


def draft(**overrides: Any) -> Release:
    release = Release.draft(TASK, 1, ReleaseSpec.from_dict(spec(**overrides)), ACTOR, REASON)
    release.collect_events()
    return release


def release_at(stage: str) -> Release:
    """A release walked forward one stage at a time until it reaches ``stage``."""
    release = draft()
    if stage == "Deprecated":
        release.promote("Deprecated", ACTOR, REASON)
    else:
        for next_stage in STAGES[1: STAGES.index(stage) + 1]:
            release.promote(next_stage, ACTOR, REASON)
    release.collect_events()
    assert release.stage == stage
    return release


# ---- model identity: aliases -------------------------------------------------------------


@pytest.mark.parametrize(
    "alias",
    ["latest", "LATEST", " latest ", "foo-latest", "gpt-4o-latest", "claude:latest",
     "model@latest", "default", "stable", "current", "preview", "auto", "newest"],
)
def test_model_alias_is_refused_as_model_version(alias: str) -> None:
    assert is_alias(alias)
    with pytest.raises(ValidationError, match="is an alias; give the concrete resolved version"):
        ReleaseSpec.from_dict(spec(model_version=alias))


@pytest.mark.parametrize("concrete", ["gpt-4o-2024-08-06", "latest-2024-01-01", "v1", "stable-7b"])
def test_concrete_model_versions_are_not_aliases(concrete: str) -> None:
    assert not is_alias(concrete)
    assert ReleaseSpec.from_dict(spec(model_version=concrete)).model_version == concrete


def test_alias_is_accepted_when_recorded_next_to_the_concrete_version() -> None:
    release = draft(model_alias="gpt-4o-latest", alias_resolved_at="2024-09-01T10:00:00Z")
    assert release.content["model_version"] == "gpt-4o-2024-08-06"
    assert release.content["model_alias"] == "gpt-4o-latest"
    assert release.content["alias_resolved_at"] == "2024-09-01T10:00:00Z"


@pytest.mark.parametrize("resolved_at", [None, ""])
def test_alias_without_resolution_time_is_refused(resolved_at: str | None) -> None:
    with pytest.raises(ValidationError, match="model_alias given without alias_resolved_at"):
        ReleaseSpec.from_dict(spec(model_alias="gpt-4o-latest", alias_resolved_at=resolved_at))


# ---- temperature, seed, schema and the other fields --------------------------------------


@pytest.mark.parametrize("temperature", [0, 0.0, 0.7, 1, 2, 2.0])
def test_temperature_in_range_is_accepted(temperature: float) -> None:
    assert ReleaseSpec.from_dict(spec(temperature=temperature)).temperature == temperature


@pytest.mark.parametrize("temperature", [-0.01, 2.01, 3, math.inf, -math.inf, math.nan])
def test_temperature_out_of_range_is_refused(temperature: float) -> None:
    with pytest.raises(ValidationError, match="temperature must be between 0 and 2"):
        ReleaseSpec.from_dict(spec(temperature=temperature))


@pytest.mark.parametrize("temperature", [True, False, "0.5", [0.5]])
def test_temperature_must_be_a_number(temperature: Any) -> None:
    with pytest.raises(ValidationError, match="temperature must be a number"):
        ReleaseSpec.from_dict(spec(temperature=temperature))


@pytest.mark.parametrize("seed", [0, 7, -3, 2**63 - 1, -(2**63)])
def test_integer_seed_is_accepted(seed: int) -> None:
    assert ReleaseSpec.from_dict(spec(seed=seed)).seed == seed


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 10**20])
def test_seed_beyond_64_bits_is_refused(seed: int) -> None:
    # Every consumer of relctl.control must be able to read the event back (orjson, Java, Go).
    with pytest.raises(ValidationError, match="does not fit in 64 bits"):
        ReleaseSpec.from_dict(spec(seed=seed))


@pytest.mark.parametrize(("field", "value"), [
    ("retrieval", {"k": 10**20}), ("release_notes", {"why": float("nan")}),
    ("output_schema", {"type": "object", "properties": [1]}),
    ("output_schema", {"type": "object", "properties": {"a": {"properties": "x"}}}),
    ("output_schema", {"type": "object", "required": "score"}),
])
def test_values_consumers_cannot_read_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        ReleaseSpec.from_dict(spec(**{field: value}))


@pytest.mark.parametrize("seed", [1.0, 7.5, True, "7"])
def test_seed_must_be_an_integer(seed: Any) -> None:
    with pytest.raises(ValidationError, match="seed must be an integer"):
        ReleaseSpec.from_dict(spec(seed=seed))


@pytest.mark.parametrize("schema", [{}, [], "object", [{"type": "object"}]])
def test_output_schema_must_be_a_non_empty_object(schema: Any) -> None:
    with pytest.raises(ValidationError, match="output_schema must be a non-empty JSON Schema"):
        ReleaseSpec.from_dict(spec(output_schema=schema))


@pytest.mark.parametrize(
    "field", ["prompt_template", "model_provider", "model_name", "model_version",
              "temperature", "seed", "output_schema", "output_schema_version"],
)
def test_every_required_field_must_be_present(field: str) -> None:
    data = spec()
    del data[field]
    with pytest.raises(ValidationError, match=f"missing required fields: {field}"):
        ReleaseSpec.from_dict(data)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown release fields: colour, size"):
        ReleaseSpec.from_dict(spec(size=1, colour="red"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prompt_template", "   ", "prompt_template must be non-empty text"),
        ("model_provider", "", "model_provider must be a non-empty string"),
        ("model_name", " ", "model_name must be a non-empty string"),
        ("model_version", 4, "model_version must be a non-empty string"),
        ("output_schema_version", "", "output_schema_version must be a non-empty string"),
        ("blueprint_version_id", "qa-default", "blueprint_version_id must name a compiled"),
        ("retrieval", ["top_k"], "retrieval must be an object"),
        ("known_limitations", "none", "known_limitations must be a list of strings"),
        ("known_limitations", ["ok", 3], "known_limitations must be a list of strings"),
        ("release_notes", ["x"], "release_notes must be an object"),
    ],
)
def test_field_rules(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ReleaseSpec.from_dict(spec(**{field: value}))


def test_full_spec_round_trips_into_the_release() -> None:
    data = spec(blueprint_version_id="qa-default@v3", retrieval={"top_k": 4},
                known_limitations=["no Spanish"], release_notes={"why": "better recall"})
    release = draft(**{k: v for k, v in data.items() if k not in spec()})
    assert release.content == ReleaseSpec.from_dict(data).as_dict()
    assert release.spec == ReleaseSpec.from_dict(data)
    assert release.prompt_hash == prompt_hash(data["prompt_template"])
    assert release.stage == "Draft"
    assert release.created_by == ACTOR


def test_draft_validates_a_directly_built_spec() -> None:
    bad = ReleaseSpec.model_construct(**{**spec(), "temperature": 5})  # unvalidated
    with pytest.raises(ValidationError, match="temperature"):
        Release.draft(TASK, 1, bad, ACTOR, REASON)


@pytest.mark.parametrize("task", ["", "CSAT", "-csat", "csat scoring", "a" * 64])
def test_draft_refuses_invalid_task_keys(task: str) -> None:
    with pytest.raises(ValidationError, match="invalid task key"):
        Release.draft(task, 1, ReleaseSpec.from_dict(spec()), ACTOR, REASON)


def test_prompt_hash_is_sha256_of_the_text() -> None:
    assert prompt_hash("abc") == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


# ---- lifecycle ---------------------------------------------------------------------------

ALLOWED_PROMOTIONS = {
    "Draft": {"InternalTest", "Beta", "Stable", "Deprecated"},
    "InternalTest": {"Beta", "Stable", "Deprecated"},
    "Beta": {"Stable", "Deprecated"},
    "Stable": {"Deprecated"},
    "Deprecated": set(),
}


@pytest.mark.parametrize("target", STAGES)
@pytest.mark.parametrize("current", STAGES)
def test_every_stage_transition(current: str, target: str) -> None:
    release = release_at(current)
    version = release.version
    if target in ALLOWED_PROMOTIONS[current]:
        release.promote(target, ACTOR, REASON)
        assert release.stage == target
        events = release.collect_events()
        assert [type(e).__name__ for e in events] == ["StageChanged"]
        assert (events[0].from_stage, events[0].to_stage) == (current, target)
    else:
        with pytest.raises(ConflictError, match="the lifecycle only moves forward"):
            release.promote(target, ACTOR, REASON)
        assert release.stage == current
        assert release.version == version
        assert release.collect_events() == []


def test_full_forward_walk() -> None:
    release = draft()
    for stage in STAGES[1:]:
        release.promote(stage, ACTOR, REASON)
    assert release.stage == "Deprecated"
    assert release.version == len(STAGES)


@pytest.mark.parametrize("stage", ["Production", "stable", "", "Retired"])
def test_unknown_stage_is_refused(stage: str) -> None:
    release = draft()
    with pytest.raises(ValidationError, match="unknown stage"):
        release.promote(stage, ACTOR, REASON)
    assert release.collect_events() == []


# ---- content frozen after Draft ----------------------------------------------------------


def test_draft_can_be_revised() -> None:
    release = draft()
    new = ReleaseSpec.from_dict(spec(prompt_template="A better prompt", temperature=0.0))
    release.revise(new, OTHER, REASON)
    assert release.content["prompt_template"] == "A better prompt"
    assert release.content["temperature"] == 0.0
    assert release.prompt_hash == prompt_hash("A better prompt")
    assert [type(e).__name__ for e in release.collect_events()] == ["Revised"]


def test_revision_is_validated() -> None:
    release = draft()
    with pytest.raises(ValidationError, match="alias"):
        release.revise(ReleaseSpec(**{**spec(), "model_version": "latest"}), ACTOR, REASON)
    assert release.collect_events() == []


@pytest.mark.parametrize("stage", STAGES[1:])
def test_content_is_frozen_once_out_of_draft(stage: str) -> None:
    release = release_at(stage)
    before = dict(release.content)
    with pytest.raises(ConflictError, match=f"is {stage}; content is frozen once it leaves Draft"):
        release.revise(ReleaseSpec.from_dict(spec(prompt_template="sneaky")), ACTOR, REASON)
    assert release.content == before
    assert release.collect_events() == []


@pytest.mark.parametrize(("actor", "reason"), [("", REASON), (ACTOR, "no")])
def test_release_commands_need_attribution(actor: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=r"actor|reason"):
        Release.draft(TASK, 1, ReleaseSpec.from_dict(spec()), actor, reason)
    release = draft()
    with pytest.raises(ValidationError, match=r"actor|reason"):
        release.revise(ReleaseSpec.from_dict(spec()), actor, reason)
    with pytest.raises(ValidationError, match=r"actor|reason"):
        release.promote("Beta", actor, reason)
    assert release.collect_events() == []
    assert release.stage == "Draft"


# ---- breaking-change classification (pure) -----------------------------------------------


def _spec(schema: dict[str, Any]) -> ReleaseSpec:
    return ReleaseSpec.from_dict(spec(output_schema=schema))


def _compiled(stage_list: list[dict[str, Any]]) -> dict[str, Any]:
    return {"stages": normalize_stages(stage_list)}


def test_first_release_is_never_breaking() -> None:
    assert breaking_changes(None, _spec(SCHEMA), None, _compiled(stages())) == []


@pytest.mark.parametrize(
    "schema",
    [
        {**SCHEMA, "properties": {**SCHEMA["properties"], "extra": {"type": "string"}}},
        {**SCHEMA, "properties": {"score": {"type": "number"}}},
        {**SCHEMA, "properties": {"score": {"type": "integer"}, "summary": {"type": "string"}}},
        {**SCHEMA, "properties": {"points": {"type": "number"}, "summary": {"type": "string"}}},
        {**SCHEMA, "required": ["score", "summary"]},
        {**SCHEMA, "type": "array"},
        {**SCHEMA, "properties": {**SCHEMA["properties"],
                                  "summary": {"type": "object",
                                              "properties": {"text": {"type": "string"}}}}},
    ],
    ids=["key-added", "key-removed", "type-changed", "key-renamed", "required-changed",
         "root-type", "became-object"],
)
def test_output_schema_key_or_type_change_is_breaking(schema: dict[str, Any]) -> None:
    assert breaking_changes(_spec(SCHEMA), _spec(schema), None, None) == [
        "output schema keys or types changed"
    ]


def test_nested_object_type_change_is_breaking() -> None:
    def nested(kind: str) -> dict[str, Any]:
        return {"type": "object", "properties": {
            "detail": {"type": "object", "properties": {"x": {"type": kind}}}}}

    assert breaking_changes(_spec(nested("number")), _spec(nested("string")), None, None)
    assert not breaking_changes(_spec(nested("number")), _spec(nested("number")), None, None)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"type": "string"}, {"type": "integer"}),
        ({"type": "object", "properties": {"score": {"type": "number"}}},
         {"type": "object", "properties": {"points": {"type": "number"}}}),
    ],
    ids=["item-type", "item-keys"],
)
def test_array_item_key_or_type_change_is_breaking(
    before: dict[str, Any], after: dict[str, Any],
) -> None:
    def schema(items: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "properties": {"tags": {"type": "array", "items": items}}}

    assert breaking_changes(_spec(schema(before)), _spec(schema(after)), None, None) == [
        "output schema keys or types changed"
    ]
    assert breaking_changes(_spec(schema(before)), _spec(schema(before)), None, None) == []


def test_schema_cosmetics_are_not_breaking() -> None:
    cosmetic = {
        "type": "object",
        "title": "CSAT",
        "required": ["score"],
        "properties": {
            "summary": {"type": "string", "description": "one line"},
            "score": {"type": "number", "minimum": 0, "maximum": 5},
        },
    }
    assert breaking_changes(_spec(SCHEMA), _spec(cosmetic), None, None) == []


@pytest.mark.parametrize(
    "field_changes",
    [{"prompt_template": "new wording"}, {"temperature": 1.0}, {"seed": 99},
     {"model_version": "gpt-4o-2024-11-20"}, {"output_schema_version": "1.1"}],
)
def test_non_schema_changes_are_not_breaking(field_changes: dict[str, Any]) -> None:
    candidate = ReleaseSpec.from_dict(spec(**field_changes))
    assert breaking_changes(ReleaseSpec.from_dict(spec()), candidate, None, None) == []


def test_blueprint_changes() -> None:
    base = _compiled(stages(critical={"s0/b0": "never promise refunds"}))
    reweighted = _compiled(stages(weights=(40, 60), critical={"s0/b0": "never promise refunds"}))
    new_rule = _compiled(stages(critical={"s0/b0": "never promise anything"}))
    not_critical = _compiled(stages())
    blueprint_message = ["blueprint weights or critical rules changed"]
    s = _spec(SCHEMA)
    assert breaking_changes(s, s, base, reweighted) == blueprint_message
    assert breaking_changes(s, s, base, new_rule) == blueprint_message
    assert breaking_changes(s, s, base, not_critical) == blueprint_message
    assert breaking_changes(s, s, None, base) == blueprint_message
    same = _compiled(stages(critical={"s0/b0": "never promise refunds"}))
    assert breaking_changes(s, s, base, same) == []


def test_non_critical_rule_text_is_not_breaking() -> None:
    before = stages()
    after = stages()
    after[1]["behaviours"][0]["rule"] = "greet the customer warmly"
    s = _spec(SCHEMA)
    assert breaking_changes(s, s, _compiled(before), _compiled(after)) == []


def test_both_reasons_are_reported() -> None:
    changed = {"type": "object", "properties": {"score": {"type": "string"}}}
    assert breaking_changes(_spec(SCHEMA), _spec(changed), _compiled(stages()),
                            _compiled(stages(weights=(10, 90)))) == [
        "output schema keys or types changed", "blueprint weights or critical rules changed",
    ]


@pytest.mark.parametrize(
    ("task", "suggestion"),
    [("csat-scoring", "csat-scoring-v2"), ("csat-scoring-v2", "csat-scoring-v3"),
     ("qa-v9", "qa-v10"), ("v2", "v2-v2"), ("model-v2x", "model-v2x-v2")],
)
def test_next_task_key(task: str, suggestion: str) -> None:
    assert next_task_key(task) == suggestion


# ---- through the application: numbering and refusal of breaking changes ------------------


def test_non_breaking_change_becomes_the_next_version() -> None:
    app = new_app()
    first = app.create_release(TASK, spec(), ACTOR, REASON)
    assert first["aggregate"]["number"] == 1
    before = notification_count(app)
    second = app.create_release(TASK, spec(prompt_template="v2 wording", temperature=0.0),
                                ACTOR, REASON)
    assert second["aggregate"]["number"] == 2
    assert second["aggregate"]["stage"] == "Draft"
    assert notification_count(app) == before + 2  # ReleaseAdmitted + Drafted
    assert app.task(TASK).releases == [1, 2]
    assert app.release(TASK, 1).content["prompt_template"] != "v2 wording"


def test_breaking_schema_change_is_refused_with_a_new_task_suggestion() -> None:
    app = new_app()
    app.create_release(TASK, spec(), ACTOR, REASON)
    before = notification_count(app)
    breaking = {"type": "object", "properties": {"score": {"type": "string"}}}
    with pytest.raises(ValidationError, match=r"breaking change to csat-scoring .*"
                       r"output schema keys or types changed.*e\.g\. csat-scoring-v2"):
        app.create_release(TASK, spec(output_schema=breaking), ACTOR, REASON)
    assert notification_count(app) == before
    assert app.task(TASK).releases == [1]
    # the suggested task accepts it as its first version
    outcome = app.create_release("csat-scoring-v2", spec(output_schema=breaking), ACTOR, REASON)
    assert outcome["aggregate"]["task"] == "csat-scoring-v2"
    assert outcome["aggregate"]["number"] == 1


def _publish(
    app: Any, stage_list: list[dict[str, Any]], confirm: list[str], *, first: bool = False,
) -> str:
    if first:
        app.create_blueprint("qa-default", stage_list, ACTOR, REASON)
    else:
        app.update_blueprint("qa-default", stage_list, ACTOR, REASON)
    for rule in confirm:
        stage_name, behaviour = rule.split("/")
        for person in (ACTOR, OTHER):
            app.confirm_critical("qa-default", stage_name, behaviour, person, REASON)
    published: str = app.publish_blueprint("qa-default", ACTOR, REASON)["published"]
    return published


@pytest.mark.parametrize(
    ("second_stages", "confirm", "accepted"),
    [
        # the critical rule itself is unchanged, so its confirmations still stand
        (stages(weights=(30, 70), critical={"s0/b0": "never swear"}), [], False),
        (stages(critical={"s0/b0": "never swear at all"}), ["s0/b0"], False),
        (stages(), [], False),
        ([*stages(critical={"s0/b0": "never swear"})[:1],
          {**stages()[1], "behaviours": [{"name": "b0", "weight": 100, "rule": "smile"}]}],
         [], True),
    ],
    ids=["weights", "critical-rule", "critical-dropped", "non-critical-text"],
)
def test_blueprint_change_between_releases(
    second_stages: list[dict[str, Any]], confirm: list[str], accepted: bool,
) -> None:
    app = new_app()
    v1 = _publish(app, stages(critical={"s0/b0": "never swear"}), ["s0/b0"], first=True)
    app.create_release(TASK, spec(blueprint_version_id=v1), ACTOR, REASON)
    v2 = _publish(app, second_stages, confirm)
    assert v2 == "qa-default@v2"
    before = notification_count(app)
    if accepted:
        outcome = app.create_release(TASK, spec(blueprint_version_id=v2), ACTOR, REASON)
        assert outcome["aggregate"]["number"] == 2
    else:
        with pytest.raises(ValidationError, match=r"blueprint weights or critical rules changed"
                           r".*csat-scoring-v2"):
            app.create_release(TASK, spec(blueprint_version_id=v2), ACTOR, REASON)
        assert notification_count(app) == before


def test_invalid_release_appends_nothing_not_even_the_task() -> None:
    app = new_app()
    with pytest.raises(ValidationError, match="alias"):
        app.create_release(TASK, spec(model_version="foo-latest"), ACTOR, REASON)
    assert notification_count(app) == 0


def test_frozen_content_through_the_application() -> None:
    app = new_app()
    app.create_release(TASK, spec(), ACTOR, REASON)
    app.revise_release(TASK, 1, spec(prompt_template="still a draft"), ACTOR, REASON)
    app.promote_release(TASK, 1, "InternalTest", ACTOR, REASON)
    before = notification_count(app)
    with pytest.raises(ConflictError, match="content is frozen"):
        app.revise_release(TASK, 1, spec(prompt_template="too late"), ACTOR, REASON)
    assert notification_count(app) == before
    assert app.release(TASK, 1).content["prompt_template"] == "still a draft"


# ---- bounded, valid JSON Schemas and text --------------------------------------------------

def _chain(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"p": schema}}
    return schema


@pytest.mark.parametrize(("schema", "message"), [
    ({"type": "objekt"}, "not a valid JSON Schema"),
    ({"type": "object", "minProperties": -1}, "not a valid JSON Schema"),
    (_chain(20), "nested more than 32 levels"),
    ({"type": "object", "description": "x" * 70_000}, "the limit is 65536"),
])
def test_output_schema_must_be_a_bounded_json_schema(schema: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ReleaseSpec.from_dict(spec(output_schema=schema))


def test_a_schema_within_the_bounds_is_accepted() -> None:
    assert ReleaseSpec.from_dict(spec(output_schema=_chain(15))).output_schema == _chain(15)


@pytest.mark.parametrize(("field", "value"), [
    ("prompt_template", "score\x00it"), ("model_name", "gpt\x07"), ("model_name", "g" * 201),
    ("prompt_template", "x" * 200_001), ("release_notes", {"why": "a\ud800"}),
])
def test_text_fields_refuse_control_characters_and_excess(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        ReleaseSpec.from_dict(spec(**{field: value}))


def test_stored_content_reads_back_without_revalidation() -> None:
    release = draft()
    release.content = {**release.content, "output_schema": _chain(40)}  # as if stored earlier
    assert release.spec.output_schema == _chain(40)


@pytest.mark.parametrize("reason", ["why\x00not", "x" * 2001, "bell\x07"])
def test_reasons_are_bounded_text(reason: str) -> None:
    with pytest.raises(ValidationError, match="reason"):
        Release.draft(TASK, 1, ReleaseSpec.from_dict(spec()), ACTOR, reason)
