"""JSON Schemas of the contracts others depend on, exported to ``schemas/`` in the package."""

import json
from pathlib import Path

from relctl.adapters.cloudevents import control_event_classes, data_schema, event_type

PACKAGE_SCHEMAS = Path(__file__).parent / "schemas"


def all_schemas() -> dict[str, dict[str, object]]:
    return {event_type(cls): data_schema(cls) for cls in control_event_classes()}


def write_schemas(directory: Path = PACKAGE_SCHEMAS) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in all_schemas().items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
