"""JSON Schemas of the contracts others depend on, exported to ``published/`` beside this module.

Besides the control events and the evaluation record: the guard's alerts (one schema per kind,
``io.relctl.alert.<kind>.v1``), its decisions on ``relctl.commands`` (one per action,
``io.relctl.command.<action>.v1``) and its verdict changes
(``io.relctl.guard.verdict_changed.v1``), each the schema of the CloudEvent's ``data``.
"""

import copy
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from relctl.adapters.cloudevents import control_event_classes, data_schema, event_type
from relctl.adapters.commands import ACTIONS
from relctl.domain.alerts import Alert, AlertKind
from relctl.domain.commands import COMMAND_BODIES
from relctl.domain.decisions import Decision
from relctl.domain.evaluation import EVALUATION_TYPE, evaluation_json_schema
from relctl.domain.verdicts import VERDICT_TYPE, RuleVerdict

PACKAGE_SCHEMAS = Path(__file__).parent / "published"


def _guard_schema(model: type[BaseModel], ce_type: str, description: str,
                  fixed: dict[str, str] | None = None) -> dict[str, Any]:
    schema = copy.deepcopy(model.model_json_schema())
    for name, value in (fixed or {}).items():
        schema["properties"][name] = {"const": value}
    schema["$id"] = f"urn:relctl:schema:{ce_type}"
    schema["description"] = description
    return schema


def guard_schemas() -> dict[str, dict[str, Any]]:
    """The ``data`` of every CloudEvent the guard publishes: alerts, decisions, verdicts."""
    schemas = {}
    for kind in AlertKind:
        ce_type = f"io.relctl.alert.{kind}.v1"
        schemas[ce_type] = _guard_schema(Alert, ce_type, f"a {kind} alert on relctl.alerts",
                                         {"kind": kind.value})
    for action in ACTIONS:
        ce_type = f"io.relctl.command.{action}.v1"
        schemas[ce_type] = _guard_schema(
            Decision, ce_type, f"an automatic {action} decision on relctl.commands",
            {"action": action.value})
    schemas[VERDICT_TYPE] = _guard_schema(
        RuleVerdict, VERDICT_TYPE, "a guard rule's changed verdict on relctl.verdicts")
    return schemas


def all_schemas() -> dict[str, dict[str, Any]]:
    """Every control event's ``data``, the evaluation record producers send, what the guard
    publishes, and every command's input (``command.<name>``: the HTTP request body)."""
    schemas: dict[str, dict[str, Any]] = {
        event_type(cls): data_schema(cls) for cls in control_event_classes()}
    schemas[EVALUATION_TYPE] = evaluation_json_schema()
    schemas.update(guard_schemas())
    for name, model in COMMAND_BODIES.items():
        schemas[f"command.{name}"] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"urn:relctl:schema:command.{name}",
            **model.model_json_schema()}
    return schemas


def write_schemas(directory: Path = PACKAGE_SCHEMAS) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in all_schemas().items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
