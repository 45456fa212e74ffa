"""Every envelope relctl publishes: CloudEvents 1.0 (Kafka protocol binding, binary mode) for
control events, alerts and decisions, and the dead-letter record.

Control events: the envelope ``id`` is ``<aggregate id>:<aggregate version>``, derived from the
stored event itself, so a redelivered or republished event carries the same id and consumers can
de-duplicate. ``type`` carries the schema version (``io.relctl.rollout.rolled_back.v1``), which
is the event class's eventsourcing ``class_version``, the library's upcasting mechanism.

Alerts (``io.relctl.alert.<kind>.v1``), decisions (``io.relctl.command.<action>.v1``) and
verdict changes (``io.relctl.guard.verdict_changed.v1``) come from the guard
(``urn:relctl:guard``), with stable ids (the decision id; the alert's scope, rule, instant and
kind; the verdict's rollout, rule and instant). These are built and validated with the
CloudEvents SDK (``cloudevents`` 2.x: its v1 event and Kafka binding, with orjson as the data
format). The evaluation fast path (producers' records and batches,
:mod:`relctl.adapters.ingest`) keeps :func:`binary_headers` and orjson: measured faster than the
SDK (bench/bench_cloudevents.py). Reading control records also stays hand-written: it must
tolerate a malformed record (skipped, never fatal), where the SDK raises.

A dead letter (:func:`dead_letter`) is not a CloudEvent: its value is the refused input,
verbatim (it may not even be JSON), and ``relctl_dlq_*`` headers say why, where from and when.
"""

import dataclasses
import json
import re
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
import pydantic
from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from relctl.domain.verdicts import VERDICT_TYPE

SPEC_VERSION = "1.0"
SOURCE = "urn:relctl:control"
GUARD_SOURCE = "urn:relctl:guard"
JSON = "application/json"
# Dead letters: a reason fits a header (cut on a UTF-8 character boundary, never inside one).
MAX_REASON_BYTES = 1000
# The DLQ keeps the original bytes, but a record must still fit a broker's default message size
# (1 MiB); only an oversize body is ever longer, and its first 512 KiB identify it well enough.
MAX_DLQ_VALUE_BYTES = 512 * 1024

KafkaRecord = tuple[bytes | None, bytes, list[tuple[str, bytes]]]
BinaryRecord = tuple[bytes, bytes, list[tuple[str, bytes]]]
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


class _OrjsonFormat(JSONFormat):
    """The SDK's JSON format with relctl's encoder for the data (orjson; see :func:`dumps`)."""

    def write_data(self, data: Any, datacontenttype: str | None) -> bytes:
        return dumps(data)

    def read_data(self, body: bytes, datacontenttype: str | None) -> Any:
        return orjson.loads(body) if body else None


FORMAT = _OrjsonFormat()


def sdk_binary(attributes: dict[str, Any], data: Any, key: bytes) -> BinaryRecord:
    """(key, value, headers) of a binary-mode CloudEvent built and validated by the SDK (a
    missing or malformed attribute raises ``CloudEventValidationError``)."""
    event = CloudEvent({"specversion": SPEC_VERSION, **attributes, "datacontenttype": JSON},
                       data)
    message = sdk_kafka.to_binary(event, FORMAT, key_mapper=lambda _: key)
    return key, message.value, list(message.headers.items())


def to_kafka(domain_event: Any, sequence: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of a control event for the Kafka binary content mode."""
    timestamp: datetime = domain_event.timestamp
    ce_type = event_type(type(domain_event))
    subject = str(domain_event.originator_id)
    attributes = {
        "id": f"{domain_event.originator_id}:{domain_event.originator_version}",
        "source": SOURCE, "type": ce_type, "subject": subject,
        "time": timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC),
        "dataschema": f"urn:relctl:schema:{ce_type}", "sequence": str(sequence),
    }
    return sdk_binary(attributes, event_data(domain_event), subject.encode())


def alert_record(alert: Mapping[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """An alert's wire form (:meth:`relctl.domain.alerts.Alert.wire`) as a CloudEvent with a
    stable id, keyed by its scope."""
    kind = alert["kind"]
    identity = alert.get("decision_id") or f"{alert['scope']}:{alert['rule']}:" \
        f"{alert.get('fired_at') or alert.get('at')}:{kind}"
    attributes = {"id": identity, "source": GUARD_SOURCE, "type": f"io.relctl.alert.{kind}.v1",
                  "subject": str(alert["scope"]), "time": datetime.now(UTC)}
    return sdk_binary(attributes, dict(alert), str(alert["scope"]).encode())


def decision_record(command: Mapping[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """A decision's wire form (:meth:`relctl.domain.decisions.Decision.wire`) as a CloudEvent
    on ``relctl.commands``: id = the decision id, keyed by rollout."""
    attributes = {"id": command["decision_id"], "source": GUARD_SOURCE,
                  "type": f"io.relctl.command.{command['action']}.v1",
                  "subject": command["rollout_id"], "time": datetime.now(UTC)}
    return sdk_binary(attributes, dict(command), str(command["rollout_id"]).encode())


def verdict_record(verdict: Mapping[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """A rule's changed verdict (:class:`relctl.domain.verdicts.RuleVerdict` as JSON) as a
    CloudEvent on ``relctl.verdicts``, keyed by rollout; id = rollout, rule and instant."""
    rollout = str(verdict["rollout_id"])
    attributes = {"id": f"{rollout}:{verdict['rule']}:{verdict['at']}", "source": GUARD_SOURCE,
                  "type": VERDICT_TYPE, "subject": rollout,
                  "time": datetime.fromisoformat(str(verdict["at"]))}
    return sdk_binary(attributes, dict(verdict), rollout.encode())


def truncate_utf8(text: str, max_bytes: int) -> bytes:
    """``text`` as UTF-8, cut to at most ``max_bytes`` on a character boundary."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return raw
    # A continuation byte is 0b10xxxxxx: back off until the cut starts a character.
    end = max_bytes
    while end > 0 and raw[end] & 0xC0 == 0x80:
        end -= 1
    return raw[:end]


def dead_letter(value: bytes, reason: str, source: str, kind: str | None = None,
                index: int | None = None) -> KafkaRecord:
    """(key, value, headers) for ``relctl.dlq``: the original bytes, and why they were refused.

    The one dead-letter helper (HTTP ingest, worker stage 1 and grace expiry, stage 2, the
    command consumer): the reason is cut on a UTF-8 boundary, an oversize value to
    MAX_DLQ_VALUE_BYTES (its full size in ``relctl_dlq_original_bytes``)."""
    headers = [
        ("relctl_dlq_reason", truncate_utf8(reason, MAX_REASON_BYTES)),
        ("relctl_dlq_source", source.encode("utf-8", "replace")),
        ("relctl_dlq_time", datetime.now(UTC).isoformat().encode()),
    ]
    if kind is not None:
        headers.append(("relctl_dlq_kind", kind.encode()))
    if index is not None:
        headers.append(("relctl_dlq_index", str(index).encode()))
    if len(value) > MAX_DLQ_VALUE_BYTES:
        headers.append(("relctl_dlq_original_bytes", str(len(value)).encode()))
        value = value[:MAX_DLQ_VALUE_BYTES]
    return None, value, headers


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
    # The role the actor acted in (admin, operator, service ...); events recorded before roles
    # were recorded, and commands issued outside the API, have none.
    fields["role"] = (str | None, None)
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
