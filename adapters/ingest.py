"""Decoding producer input into evaluation records; shared by the Kafka worker and HTTP ingest.

Producers send CloudEvents 1.0 (binary mode: ``ce_*`` / ``ce-*`` headers and the record as the
value; structured mode: ``application/cloudevents+json``; a batch:
``application/cloudevents-batch+json``) or plain JSON (an object, or an array of objects).
Whatever arrives, :func:`decode` returns the good records and, for everything else, a
:class:`Rejected` with a reason a person can act on and the original bytes for the DLQ. It
never raises: one bad record must not stop a worker that serves every tenant.

Speed matters here (every evaluation passes through): a single record is validated straight
from its bytes by pydantic-core, and a batch is parsed once with orjson and validated as a list
in one call; only when that fails does it fall back to one item at a time to find the bad ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import Counter
from pydantic import TypeAdapter
from pydantic import ValidationError as SchemaError
from relctl.adapters.cloudevents import (
    SPEC_VERSION,
    binary_headers,
    dead_letter,
)
from relctl.domain.evaluation import (
    EVALUATION_SCHEMA_ID,
    EVALUATION_TYPE,
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    MAX_RECORD_BYTES,
    DecodedEvaluation,
    EvaluationRecord,
    decode_fast,
)

if TYPE_CHECKING:
    from relctl.adapters.postgres import Principal

SOURCE = "urn:relctl:producer"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
REASON_KINDS = ("json", "schema", "oversize", "unauthorized", "unknown_release", "type",
                "stale", "future", "trace_contract")
MAX_LISTED_ERRORS = 8

ACCEPTED = Counter("relctl_evaluations_accepted_total",
                   "Evaluation records accepted from producers", ["source"])
REJECTED = Counter("relctl_evaluations_rejected_total",
                   "Producer input rejected to the DLQ", ["source", "reason_kind"])

_RECORDS = TypeAdapter(list[EvaluationRecord])

Headers = Mapping[str, bytes | str | None] | Iterable[tuple[str, bytes | str | None]]
KafkaRecord = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


@dataclass
class Rejected:
    """Input that did not become a record: why, the bytes to dead-letter, and where it was."""

    reason: str
    original: bytes
    index: int | None
    kind: str = "schema"  # one of REASON_KINDS: the metric label


@dataclass
class Decoded:
    records: list[EvaluationRecord]
    rejected: list[Rejected]
    # Position of each record in the producer's input (None for a single record), so later
    # checks (tenant, release) can still tell a producer which item of its batch failed.
    indexes: list[int | None] = field(default_factory=list)
    # The input as received: what a later rejection dead-letters (see Origin).
    raw: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.indexes) != len(self.records):
            self.indexes = [None] * len(self.records)

    def origins(self, source: str) -> list[Origin]:
        raw = self.raw
        return [Origin(source, raw, index) for index in self.indexes]


class Origin:
    """Where a record came from: the input it was in (a Kafka record's value, an HTTP body)
    and its position there, so a later rejection dead-letters the bytes as received. A plain
    class with slots: the worker makes one per evaluation (a frozen dataclass took twice as
    long to build), and only a rejection reads it."""

    __slots__ = ("index", "raw", "source")

    def __init__(self, source: str, raw: bytes, index: int | None = None) -> None:
        self.source = source
        self.raw = raw
        self.index = index

    def received(self) -> bytes:
        return self.raw if self.index is None else item_bytes(self.raw, self.index)


# JSON strings (with their escapes) and the structural characters outside them.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]')


def item_bytes(value: bytes, index: int) -> bytes:
    """The exact bytes of element ``index`` of the JSON array ``value`` (b"" if absent).
    Only rejections call it, so the scan costs nothing on the accepting path."""
    depth, current, begin = 0, 0, 0
    for match in _TOKENS.finditer(value):
        token = match.group()
        if token[:1] == b'"':
            continue
        if token in (b"[", b"{"):
            if depth == 0:
                begin = match.end()
            depth += 1
        elif token in (b"]", b"}"):
            depth -= 1
            if depth == 0:
                return value[begin:match.start()].strip() if current == index else b""
        elif depth == 1:
            if current == index:
                return value[begin:match.start()].strip()
            current += 1
            begin = match.end()
    return b""


# ---- decoding ------------------------------------------------------------------------------

def decode(value: bytes, headers: Headers, *, fast: bool = False) -> Decoded:
    """Every record ``value`` holds, and a :class:`Rejected` for each part that is not one.

    ``fast`` (the guard worker): records may come back as
    :class:`~relctl.domain.evaluation.DecodedEvaluation`, decoded by the schema-compiled fast
    path when it accepts the whole input; anything it does not accept takes the contract's
    path below, so what is accepted and refused, and why, is the same either way."""
    try:
        raw = bytes(value) if value is not None else b""
    except Exception:  # not even bytes-like: nothing to parse and nothing faithful to keep
        return Decoded([], [Rejected(f"not valid JSON: value is a {type(value).__name__}",
                                     b"", None, "json")])
    try:
        decoded = _decode(raw, _normalize(headers), fast)
        decoded.raw = raw
        return decoded
    except Exception as exc:  # a bug here must cost one message, never the worker
        return Decoded([], [Rejected(f"could not decode: {type(exc).__name__}: {exc}",
                                     raw, None, "schema")])


# The only headers decoding looks at, under both bindings' names.
_WANTED = {"ce_specversion": "ce_specversion", "ce-specversion": "ce_specversion",
           "ce_type": "ce_type", "ce-type": "ce_type", "content-type": "content-type"}


def _normalize(headers: Headers) -> dict[str, str]:
    """The headers decoding needs, ``ce-`` (HTTP binding) read as ``ce_`` (Kafka binding)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    result: dict[str, str] = {}
    for name, raw in items:
        key = _WANTED.get(name)
        if key is None and not name.islower():  # HTTP clients may send Ce-Type, Content-Type
            key = _WANTED.get(name.lower())
        if key is None or raw is None:
            continue
        result[key] = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) \
            else str(raw)
    return result


def _decode(value: bytes, headers: dict[str, str], fast: bool = False) -> Decoded:
    if len(value) > MAX_BATCH_BYTES:
        return _reject(value, None, "oversize",
                       f"oversize: {len(value)} bytes, the limit is {MAX_BATCH_BYTES}")
    if "ce_specversion" in headers:
        return _binary(value, headers, fast)
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == STRUCTURED:
        return _structured(value)
    if content_type == BATCH:
        return (fast and _fast(value, True)) or _batch(value, envelopes=True)
    if value.lstrip()[:1] == b"[":
        return (fast and _fast(value, False)) or _batch(value, envelopes=False)
    return (fast and _fast(value, None)) or _single(value)


def _fast(value: bytes, envelopes: bool | None) -> Decoded | None:
    """All of ``value`` through the schema-compiled decoder, or None if it refuses any part."""
    records = decode_fast(value, envelopes=envelopes)
    if records is None:
        return None
    indexes: list[int | None] = [None] if envelopes is None else list(range(len(records)))
    return Decoded(records, [], indexes)  # type: ignore[arg-type]


def _binary(value: bytes, headers: dict[str, str], fast: bool = False) -> Decoded:
    problem = _envelope_problem(headers.get("ce_specversion"), headers.get("ce_type"))
    if problem:
        return _reject(value, None, "type", problem)
    return (fast and _fast(value, None)) or _single(value)


def _single(value: bytes) -> Decoded:
    """One record: validated straight from the bytes; re-parsed only to explain a failure."""
    if len(value) > MAX_RECORD_BYTES:
        return _reject(value, None, "oversize", _record_too_big(len(value)))
    try:
        return Decoded([EvaluationRecord.model_validate_json(value)], [])
    except SchemaError:
        pass
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return _reject(value, None, "json", f"not valid JSON: {exc}")
    if not isinstance(data, dict):
        return _reject(value, None, "schema", "expected a JSON object or an array of objects, "
                       f"got {_json_kind(data)}")
    return _validate_one(data, value, None)


def _structured(value: bytes) -> Decoded:
    if len(value) > MAX_RECORD_BYTES:
        return _reject(value, None, "oversize", _record_too_big(len(value)))
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return _reject(value, None, "json", f"not valid JSON: {exc}")
    data, kind, problem = _unwrap(event)
    if data is None:
        return _reject(value, None, kind, problem)
    return _validate_one(data, value, None)


def _batch(value: bytes, envelopes: bool) -> Decoded:
    try:
        items = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return _reject(value, None, "json", f"not valid JSON: {exc}")
    if not isinstance(items, list):
        what = "a CloudEvents batch must be a JSON array" if envelopes else "expected a JSON array"
        return _reject(value, None, "schema", f"{what}, got {_json_kind(items)}")
    if len(items) > MAX_BATCH_RECORDS:
        return _reject(value, None, "oversize", f"oversize: batch of {len(items)} records, "
                       f"the limit is {MAX_BATCH_RECORDS}")
    check_sizes = len(value) > MAX_RECORD_BYTES  # else no item can be over the limit
    rejected: list[Rejected] = []
    data: list[dict[str, Any]] = []
    positions: list[int] = []
    for index, item in enumerate(items):
        record, problem = _batch_item(item, index, envelopes, check_sizes, value)
        if record is not None:
            data.append(record)
            positions.append(index)
        elif problem is not None:
            rejected.append(problem)
    return _validate_many(value, data, positions, rejected)


def _batch_item(item: Any, index: int, envelopes: bool, check_size: bool,
                value: bytes) -> tuple[dict[str, Any] | None, Rejected | None]:
    """The record data of one batch item, or why it is not one."""
    if check_size:
        size = len(orjson.dumps(item))
        if size > MAX_RECORD_BYTES:
            return None, Rejected(_record_too_big(size), item_bytes(value, index), index,
                                  "oversize")
    if envelopes:
        data, kind, problem = _unwrap(item)
        if data is None:
            return None, Rejected(problem, item_bytes(value, index), index, kind)
        return data, None
    if not isinstance(item, dict):
        return None, Rejected(f"expected a JSON object, got {_json_kind(item)}",
                              item_bytes(value, index), index, "schema")
    return item, None


def _validate_many(value: bytes, data: list[dict[str, Any]], positions: list[int],
                   rejected: list[Rejected]) -> Decoded:
    """All of ``data`` validated in one call; one at a time only if some item is bad."""
    try:
        records: list[EvaluationRecord] = _RECORDS.validate_json(orjson.dumps(data))
    except SchemaError:
        pass
    else:
        indexes: list[int | None] = list(positions)
        return Decoded(records, rejected, indexes)
    records = []
    kept: list[int | None] = []
    for index, item in zip(positions, data, strict=True):
        try:
            records.append(EvaluationRecord.from_mapping(item))
            kept.append(index)
        except SchemaError as exc:
            rejected.append(Rejected(_explain(exc), item_bytes(value, index), index, "schema"))
    rejected.sort(key=_position)
    return Decoded(records, rejected, kept)


def _validate_one(data: dict[str, Any], original: bytes, index: int | None) -> Decoded:
    try:
        return Decoded([EvaluationRecord.from_mapping(data)], [], [index])
    except SchemaError as exc:
        return _reject(original, index, "schema", _explain(exc))


def _envelope_problem(specversion: Any, ce_type: Any) -> str:
    if specversion != SPEC_VERSION:
        return f"unsupported CloudEvents specversion {specversion!r}; expected {SPEC_VERSION}"
    if ce_type != EVALUATION_TYPE:
        return f"unsupported CloudEvents type {ce_type!r}; expected {EVALUATION_TYPE}"
    return ""


def _unwrap(event: Any) -> tuple[dict[str, Any] | None, str, str]:
    """A structured event's data, or (None, reason kind, reason)."""
    if not isinstance(event, dict):
        return None, "schema", f"expected a CloudEvent (JSON object), got {_json_kind(event)}"
    problem = _envelope_problem(event.get("specversion"), event.get("type"))
    if problem:
        return None, "type", problem
    data = event.get("data")
    if not isinstance(data, dict):
        return None, "schema", f"CloudEvent data must be a JSON object, got {_json_kind(data)}"
    return data, "", ""


def _explain(exc: SchemaError) -> str:
    """``field: message; ...`` — short enough for a header, precise enough to fix the input."""
    problems = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = [f"{'.'.join(str(p) for p in problem['loc']) or 'record'}: {problem['msg']}"
             for problem in problems[:MAX_LISTED_ERRORS]]
    if len(problems) > MAX_LISTED_ERRORS:
        parts.append(f"and {len(problems) - MAX_LISTED_ERRORS} more")
    return "; ".join(parts)


def _reject(original: bytes, index: int | None, kind: str, reason: str) -> Decoded:
    return Decoded([], [Rejected(reason, original, index, kind)])


def _position(rejected: Rejected) -> int:
    return -1 if rejected.index is None else rejected.index


def _record_too_big(size: int) -> str:
    return f"oversize: record is {size} bytes, the limit is {MAX_RECORD_BYTES}"


def _json_kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# ---- checks that need context: who sent it, which releases exist ---------------------------

def _encoded(record: EvaluationRecord | DecodedEvaluation) -> bytes:
    return orjson.dumps(record.model_dump(mode="json"))


def original_bytes(record: EvaluationRecord | DecodedEvaluation) -> bytes:
    """A record's normalised encoding: only where the bytes as received are not at hand."""
    return _encoded(record)


def _split(
    records: Sequence[EvaluationRecord], indexes: Sequence[int | None] | None,
    problem: Callable[[EvaluationRecord], str | None], kind: str, raw: bytes = b"",
) -> tuple[list[EvaluationRecord], list[int | None], list[Rejected]]:
    where = list(indexes) if indexes is not None else [None] * len(records)
    ok: list[EvaluationRecord] = []
    ok_indexes: list[int | None] = []
    rejected: list[Rejected] = []
    for record, index in zip(records, where, strict=True):
        reason = problem(record)
        if reason is None:
            ok.append(record)
            ok_indexes.append(index)
        else:
            original = Origin("", raw, index).received() if raw else _encoded(record)
            rejected.append(Rejected(reason, original, index, kind))
    return ok, ok_indexes, rejected


def _producer_problem(principal: Principal) -> Callable[[EvaluationRecord], str | None]:
    def problem(record: EvaluationRecord) -> str | None:
        if principal.may_act_for(record.tenant):
            return None
        return f"producer {principal.actor} may not write for tenant {record.tenant}"

    return problem


def _release_problem(known: Callable[[str, int], bool]) -> Callable[[EvaluationRecord], str | None]:
    def problem(record: EvaluationRecord) -> str | None:
        return None if known(record.task, record.release) else (
            f"unknown release {record.task} v{record.release}")

    return problem


def check_producer(
    records: Sequence[EvaluationRecord], principal: Principal,
    indexes: Sequence[int | None] | None = None,
) -> tuple[list[EvaluationRecord], list[Rejected]]:
    """Keep the records for tenants ``principal`` may act for; reject the others."""
    ok, _, rejected = _split(records, indexes, _producer_problem(principal), "unauthorized")
    return ok, rejected


def check_releases(
    records: Sequence[EvaluationRecord], known: Callable[[str, int], bool],
    indexes: Sequence[int | None] | None = None,
) -> tuple[list[EvaluationRecord], list[Rejected]]:
    """Keep the records whose (task, release) ``known`` recognises; reject the others."""
    ok, _, rejected = _split(records, indexes, _release_problem(known), "unknown_release")
    return ok, rejected


def screen(decoded: Decoded, principal: Principal | None,
           known: Callable[[str, int], bool] | None) -> Decoded:
    """``decoded`` after the producer and release checks, keeping each item's input position."""
    records, indexes, rejected = decoded.records, decoded.indexes, list(decoded.rejected)
    if principal is not None:
        records, indexes, more = _split(records, indexes, _producer_problem(principal),
                                        "unauthorized", decoded.raw)
        rejected += more
    if known is not None:
        records, indexes, more = _split(records, indexes, _release_problem(known),
                                        "unknown_release", decoded.raw)
        rejected += more
    rejected.sort(key=_position)
    return Decoded(records, rejected, indexes, decoded.raw)


# ---- encoding: what producers send, and what the DLQ keeps ---------------------------------

def _event_id(record: EvaluationRecord) -> str:
    return f"{record.tenant}:{record.call_id}:{record.arm}"


def to_kafka(record: EvaluationRecord) -> KafkaRecord:
    """(key, value, headers): one binary-mode CloudEvent, keyed by tenant.

    The id ``tenant:call_id:arm`` is stable across retries, so a consumer can de-duplicate on
    it (relctl's worker does not yet; see the README's limits).
    """
    headers = binary_headers(id=_event_id(record), source=SOURCE, type=EVALUATION_TYPE,
                             subject=record.tenant, time=record.occurred_at.isoformat(),
                             dataschema=EVALUATION_SCHEMA_ID)
    return record.tenant.encode(), _encoded(record), headers


def structured_event(record: EvaluationRecord) -> dict[str, Any]:
    """The record as a structured-mode CloudEvent (one element of a batch)."""
    return {
        "specversion": SPEC_VERSION, "id": _event_id(record), "source": SOURCE,
        "type": EVALUATION_TYPE, "subject": record.tenant,
        "time": record.occurred_at.isoformat(), "datacontenttype": "application/json",
        "dataschema": EVALUATION_SCHEMA_ID, "data": record.model_dump(mode="json"),
    }


def batch_to_kafka(records: Sequence[EvaluationRecord]) -> KafkaRecord:
    """(key, value, headers): ONE Kafka record holding a CloudEvents batch for one tenant.

    Keyed by the tenant like single records, so a tenant's evaluations stay in one partition
    and in order whichever way they were sent.
    """
    if not records:
        raise ValueError("a batch needs at least one record")
    tenants = {record.tenant for record in records}
    if len(tenants) != 1:
        raise ValueError(f"a batch holds one tenant's records; got {', '.join(sorted(tenants))}")
    if len(records) > MAX_BATCH_RECORDS:
        raise ValueError(f"a batch holds at most {MAX_BATCH_RECORDS} records; got {len(records)}")
    value = orjson.dumps([structured_event(record) for record in records])
    return records[0].tenant.encode(), value, [("content-type", BATCH.encode())]


def dlq_record(rejected: Rejected, source: str) -> KafkaRecord:
    """(key, value, headers) for ``relctl.dlq``: the original bytes, and why they were refused
    (:func:`relctl.adapters.cloudevents.dead_letter`)."""
    return dead_letter(rejected.original, rejected.reason, source, rejected.kind, rejected.index)


# ---- metrics --------------------------------------------------------------------------------

def count_accepted(count: int, source: str) -> None:
    if count:
        ACCEPTED.labels(source).inc(count)


def count_rejected(rejected: Iterable[Rejected], source: str) -> None:
    tally: dict[str, int] = {}
    for item in rejected:
        kind = item.kind if item.kind in REASON_KINDS else "schema"
        tally[kind] = tally.get(kind, 0) + 1
    for kind, count in tally.items():
        REJECTED.labels(source, kind).inc(count)
