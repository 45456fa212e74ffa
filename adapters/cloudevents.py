"""CloudEvents 1.0 envelopes for control events (Kafka protocol binding, binary mode).

The envelope ``id`` is ``<aggregate id>:<aggregate version>``: derived from the stored event
itself, so a redelivered or republished event carries the same id and consumers can
de-duplicate. ``type`` carries the schema version (``io.relctl.rollout.rolled_back.v1``), which
is the event class's eventsourcing ``class_version``, the library's upcasting mechanism.
"""

import dataclasses
import json
import re
import typing
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import pydantic

SPEC_VERSION = "1.0"
SOURCE = "urn:relctl:control"
ENVELOPE_FIELDS = ("originator_id", "originator_version", "timestamp", "originator_topic")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def event_type(event_class: type) -> str:
    aggregate, _, name = event_class.__qualname__.partition(".")
    version = getattr(event_class, "class_version", 1)
    return f"io.relctl.{_snake(aggregate)}.{_snake(name)}.v{version}"


def schema_version(event_class: type) -> int:
    return int(getattr(event_class, "class_version", 1))


def event_data(domain_event: Any) -> dict[str, Any]:
    """The event's own fields (actor, reason, payload), without the store's bookkeeping."""
    data = {k: v for k, v in vars(domain_event).items() if k not in ENVELOPE_FIELDS}
    data["schema_version"] = schema_version(type(domain_event))
    return data


def _default(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """JSON bytes. orjson first; a value it cannot encode (an integer beyond 64 bits, stored
    before validation refused those) falls back to the standard library, so one odd event can
    never stop the relay."""
    try:
        return orjson.dumps(value, default=_default)
    except TypeError:
        return json.dumps(value, default=str).encode()


def envelope(domain_event: Any, sequence: int | None = None) -> dict[str, Any]:
    """A structured-mode CloudEvent as a dict (also what the API returns in histories)."""
    timestamp: datetime = domain_event.timestamp
    ce_type = event_type(type(domain_event))
    result: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": f"{domain_event.originator_id}:{domain_event.originator_version}",
        "source": SOURCE,
        "type": ce_type,
        "subject": str(domain_event.originator_id),
        "time": timestamp.isoformat(),
        "datacontenttype": "application/json",
        "dataschema": f"urn:relctl:schema:{ce_type}",
        "data": event_data(domain_event),
    }
    if sequence is not None:
        result["sequence"] = str(sequence)
    return result


def binary_headers(**attributes: Any) -> list[tuple[str, bytes]]:
    """Kafka headers of a binary-mode CloudEvent with a JSON body: ``specversion`` plus the
    given attributes (``id``, ``source``, ``type``, ``subject``, ...) as ``ce_*``."""
    headers = [("ce_specversion", SPEC_VERSION.encode())]
    headers += [(f"ce_{key}", str(value).encode()) for key, value in attributes.items()]
    headers.append(("content-type", b"application/json"))
    return headers


def to_kafka(domain_event: Any, sequence: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) for the Kafka binary content mode."""
    env = envelope(domain_event, sequence)
    attributes = {k: v for k, v in env.items()
                  if k not in ("specversion", "data", "datacontenttype")}
    return env["subject"].encode(), dumps(env["data"]), binary_headers(**attributes)


def from_kafka(headers: typing.Sequence[tuple[str, bytes]], value: bytes) -> dict[str, Any]:
    """Decode a binary-mode CloudEvent back into a structured dict."""
    env: dict[str, Any] = {}
    for key, raw in headers:
        if key.startswith("ce_"):
            env[key[3:]] = raw.decode()
        elif key == "content-type":
            env["datacontenttype"] = raw.decode()
    env["data"] = orjson.loads(value)
    return env


def data_model(event_class: type) -> type[pydantic.BaseModel]:
    """A pydantic model of an event's ``data``, derived from the event class's annotations."""
    hints = typing.get_type_hints(event_class)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(event_class):
        if field.name in ENVELOPE_FIELDS:
            continue
        fields[field.name] = (hints[field.name], ...)
    fields["schema_version"] = (typing.Literal[schema_version(event_class)], ...)
    model: type[pydantic.BaseModel] = pydantic.create_model(  # type: ignore[call-overload]
        event_type(event_class), __config__=pydantic.ConfigDict(extra="forbid"), **fields)
    return model


def data_schema(event_class: type) -> dict[str, Any]:
    """JSON Schema of an event's ``data``: what consumers of ``relctl.control`` can rely on."""
    schema: dict[str, Any] = data_model(event_class).model_json_schema()
    schema["$id"] = f"urn:relctl:schema:{event_type(event_class)}"
    schema["description"] = f"data of {event_class.__qualname__} events recorded by relctl"
    return schema


def control_event_classes() -> list[type]:
    """Every event class the control aggregates record."""
    from eventsourcing.domain import Aggregate, _created_event_classes
    from relctl.domain.blueprint import Blueprint
    from relctl.domain.release import Release
    from relctl.domain.rollout import Rollout
    from relctl.domain.task import Task
    from relctl.domain.tenant import Tenant

    classes = []
    for aggregate in (Release, Blueprint, Tenant, Task, Rollout):
        # Every aggregate class carries a default ``Created`` class; keep only the creation
        # event its ``__init__`` actually records.
        created = set(_created_event_classes.get(aggregate, []))
        for name in dir(aggregate):
            candidate = getattr(aggregate, name)
            if (isinstance(candidate, type) and issubclass(candidate, aggregate.Event)
                    and candidate.__qualname__.startswith(aggregate.__name__ + ".")
                    and candidate is not aggregate.Event
                    and dataclasses.is_dataclass(candidate)
                    and candidate.__qualname__.count(".") == 1
                    and (not issubclass(candidate, Aggregate.Created) or candidate in created)):
                classes.append(candidate)
    return sorted(set(classes), key=event_type)
