"""The files in examples/ are valid command inputs by the published JSON Schemas themselves, as
a producer or an operator's own tooling would check them (not only by relctl's validators)."""

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from relctl.adapters.schemas import PACKAGE_SCHEMAS

EXAMPLES = Path(__file__).parents[2] / "examples"


def schema(command: str) -> dict[str, Any]:
    return json.loads((PACKAGE_SCHEMAS / f"command.{command}.json").read_text())


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text())


def errors(command: str, body: dict[str, Any]) -> list[str]:
    validator = Draft202012Validator(schema(command))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]


@pytest.mark.parametrize("name", ["release-v1.json", "release-v2.json"])
def test_release_specs_are_valid_create_release_bodies(name: str) -> None:
    body = {"task": "csat", "spec": example(name), "reason": "first scoring prompt"}
    assert errors("create_release", body) == []


def test_guard_rules_are_valid_in_a_plan_rollout_body() -> None:
    body = {"task": "csat", "candidate": 2, "steps": [10, 25, 50, 100],
            "guard_rules": example("guards.json"), "reason": "progressive rollout"}
    assert errors("plan_rollout", body) == []


def test_evidence_is_valid_in_a_roll_back_body() -> None:
    body = {"reason": "scores shifted", "evidence": example("evidence.json")}
    assert errors("roll_back", body) == []


def test_the_schemas_do_refuse_a_broken_example() -> None:
    spec = {**example("release-v1.json"), "temperature": "hot"}
    assert errors("create_release", {"task": "csat", "spec": spec, "reason": "why not"})
    assert errors("plan_rollout", {"task": "csat", "candidate": 2, "reason": "why not",
                                   "guard_rules": [{"name": "x", "metric": "vibes"}]})
