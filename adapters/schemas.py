"""JSON Schemas of the contracts others depend on, exported to ``published/`` beside this module."""

import json
from pathlib import Path

from relctl.adapters.cloudevents import control_event_classes, data_schema, event_type
from relctl.domain.commands import COMMAND_BODIES
from relctl.domain.evaluation import EVALUATION_TYPE, evaluation_json_schema

PACKAGE_SCHEMAS = Path(__file__).parent / "published"


def all_schemas() -> dict[str, dict[str, object]]:
    """Every control event's ``data``, the evaluation record producers send, and every
    command's input (``command.<name>``: the HTTP request body of that command)."""
    schemas = {event_type(cls): data_schema(cls) for cls in control_event_classes()}
    schemas[EVALUATION_TYPE] = evaluation_json_schema()
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
