"""Decoding producer input: every content mode, every rejection, and that nothing raises."""

from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from relctl.adapters.cloudevents import MAX_DLQ_VALUE_BYTES
from relctl.adapters.ingest import (
    BATCH,
    STRUCTURED,
    Decoded,
    Rejected,
    batch_to_kafka,
    check_producer,
    check_releases,
    count_accepted,
    count_rejected,
    decode,
    dlq_record,
    screen,
    structured_event,
    to_kafka,
)
from relctl.adapters.postgres import Principal
from relctl.domain.evaluation import (
    EVALUATION_TYPE,
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    MAX_RECORD_BYTES,
    EvaluationRecord,
)

from tests.unit.evaluation_support import evaluation, json_values, records

KAFKA_BINARY = [(b"ce_specversion", b"1.0")]


def record(**changes: Any) -> EvaluationRecord:
    return EvaluationRecord.from_mapping(evaluation(**changes))


def binary_headers(ce_type: str = EVALUATION_TYPE, http: bool = False) -> dict[str, str]:
    if http:
        return {"Ce-Specversion": "1.0", "Ce-Type": ce_type, "Ce-Id": "x",
                "Content-Type": "application/json"}
    return {"ce_specversion": "1.0", "ce_type": ce_type, "content-type": "application/json"}


def envelope(data: Any, ce_type: str = EVALUATION_TYPE, **extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "e1", "source": "test", "type": ce_type, "data": data,
            **extra}


def only(decoded: Decoded) -> EvaluationRecord:
    assert decoded.rejected == [], decoded.rejected
    assert len(decoded.records) == 1
    return decoded.records[0]


def refused(decoded: Decoded) -> Rejected:
    assert decoded.records == []
    assert len(decoded.rejected) == 1, decoded.rejected
    return decoded.rejected[0]


# ---- content modes ---------------------------------------------------------------------------

def test_plain_json_object_is_one_record() -> None:
    decoded = decode(orjson.dumps(evaluation()), {})
    assert only(decoded) == record()
    assert decoded.indexes == [None]


def test_plain_json_array_is_a_batch() -> None:
    items = [evaluation(call_id=f"c{i}") for i in range(3)]
    decoded = decode(b"  \n" + orjson.dumps(items), {"content-type": "application/json"})
    assert [r.call_id for r in decoded.records] == ["c0", "c1", "c2"]
    assert decoded.indexes == [0, 1, 2] and decoded.rejected == []


@pytest.mark.parametrize("http", [False, True])
def test_binary_mode_value_is_the_data(http: bool) -> None:
    assert only(decode(orjson.dumps(evaluation()), binary_headers(http=http))) == record()


def test_binary_mode_from_kafka_header_tuples() -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_type", EVALUATION_TYPE.encode()),
               ("ce_id", b"acme:c:production"), ("other", None)]
    assert only(decode(orjson.dumps(evaluation()), headers)) == record()


@pytest.mark.parametrize("http", [False, True])
def test_binary_mode_needs_the_evaluation_type(http: bool) -> None:
    value = orjson.dumps(evaluation())
    bad = refused(decode(value, binary_headers("io.relctl.rollout.started.v1", http)))
    assert bad.reason.startswith("unsupported CloudEvents type 'io.relctl.rollout.started.v1'")
    assert (bad.kind, bad.original, bad.index) == ("type", value, None)
    missing = refused(decode(value, {"ce-specversion": "1.0"}))
    assert missing.reason.startswith("unsupported CloudEvents type None") and missing.kind == "type"


def test_binary_mode_needs_specversion_1_0() -> None:
    headers = {**binary_headers(), "ce_specversion": "0.3"}
    bad = refused(decode(orjson.dumps(evaluation()), headers))
    assert "specversion '0.3'" in bad.reason and bad.kind == "type"


def test_binary_mode_data_must_be_an_object() -> None:
    value = orjson.dumps([evaluation()])
    bad = refused(decode(value, binary_headers()))
    assert bad.kind == "schema" and "got an array" in bad.reason and bad.original == value


@pytest.mark.parametrize("content_type", [STRUCTURED, "Application/CloudEvents+JSON",
                                          f"{STRUCTURED}; charset=utf-8"])
def test_structured_mode(content_type: str) -> None:
    value = orjson.dumps(envelope(evaluation()))
    assert only(decode(value, {"Content-Type": content_type})) == record()


@pytest.mark.parametrize(("event", "kind", "fragment"), [
    (envelope(evaluation(), "com.example.other"), "type", "unsupported CloudEvents type"),
    (envelope(evaluation(), specversion="1.1"), "type", "unsupported CloudEvents specversion"),
    ({"type": EVALUATION_TYPE, "data": evaluation()}, "type", "specversion None"),
    (envelope(None), "schema", "data must be a JSON object, got null"),
    (envelope(orjson.dumps(evaluation()).decode()), "schema", "got a string"),
    (envelope(evaluation(tokens=-1)), "schema", "tokens: Input should be greater than"),
    ([envelope(evaluation())], "schema", "expected a CloudEvent (JSON object), got an array"),
])
def test_structured_mode_rejections(event: Any, kind: str, fragment: str) -> None:
    value = orjson.dumps(event)
    bad = refused(decode(value, {"content-type": STRUCTURED}))
    assert (bad.kind, bad.original, bad.index) == (kind, value, None)
    assert fragment in bad.reason


def test_cloudevents_batch() -> None:
    events = [envelope(evaluation(call_id=f"c{i}")) for i in range(4)]
    decoded = decode(orjson.dumps(events), {"content-type": BATCH})
    assert [r.call_id for r in decoded.records] == ["c0", "c1", "c2", "c3"]
    assert decoded.rejected == []


def test_cloudevents_batch_with_bad_items_keeps_the_good_ones() -> None:
    events = [
        envelope(evaluation(call_id="good-0")),
        envelope(evaluation(call_id="bad-type"), "com.example.other"),
        envelope(evaluation(call_id="bad-field", latency_ms=-3)),
        "not an event",
        envelope(evaluation(call_id="good-4")),
    ]
    decoded = decode(orjson.dumps(events), {"content-type": BATCH})
    assert [r.call_id for r in decoded.records] == ["good-0", "good-4"]
    assert decoded.indexes == [0, 4]
    assert [(r.index, r.kind) for r in decoded.rejected] == [
        (1, "type"), (2, "schema"), (3, "schema")]
    assert [orjson.loads(r.original) for r in decoded.rejected] == events[1:4]
    assert decoded.rejected[1].reason == "latency_ms: Input should be greater than or equal to 0"


@pytest.mark.parametrize("value", [orjson.dumps(envelope(evaluation())), b'"x"'])
def test_cloudevents_batch_must_be_an_array(value: bytes) -> None:
    bad = refused(decode(value, {"content-type": BATCH}))
    assert bad.kind == "schema" and "must be a JSON array" in bad.reason


# ---- plain batches with bad items, and the reasons ---------------------------------------------

def test_plain_batch_with_bad_items() -> None:
    items: list[Any] = [
        evaluation(call_id="c0"),
        evaluation(call_id="c1", latency_ms=-1),
        evaluation(call_id="c2"),
        evaluation(call_id="c3", tokens="many", model_version="latest", extra=1),
        17,
        evaluation(call_id="c5", occurred_at="2026-11-21T10:00:00"),
    ]
    decoded = decode(orjson.dumps(items), {})
    assert [r.call_id for r in decoded.records] == ["c0", "c2"]
    assert decoded.indexes == [0, 2]
    reasons = {r.index: r.reason for r in decoded.rejected}
    assert reasons[1] == "latency_ms: Input should be greater than or equal to 0"
    assert reasons[3].split("; ")[0].startswith("model_version: Value error, 'latest' is an alias")
    assert "tokens: Input should be a valid integer" in reasons[3]
    assert "extra: Extra inputs are not permitted" in reasons[3]
    assert reasons[4] == "expected a JSON object, got a number"
    assert reasons[5].startswith("occurred_at: Input should have timezone info")
    for rejected in decoded.rejected:
        assert rejected.original == orjson.dumps(items[rejected.index or 0])


def test_a_single_bad_record_keeps_the_exact_original_bytes() -> None:
    value = orjson.dumps(evaluation(latency_ms=-1, task=...), option=orjson.OPT_INDENT_2)
    bad = refused(decode(value, {}))
    assert bad.original == value and bad.index is None and bad.kind == "schema"
    assert bad.reason == ("task: Field required; "
                          "latency_ms: Input should be greater than or equal to 0")


def test_long_reasons_list_the_first_errors_only() -> None:
    bad = refused(decode(b"{}", {}))
    assert bad.reason.count("Field required") == 8 and bad.reason.endswith("and 6 more")


@pytest.mark.parametrize("value", [b"{not json", b"", b"\xff\xfe", b"[1,", b"nul",
                                   b'{"a": NaN}', b'{"tenant": "\\ud800"}'])
@pytest.mark.parametrize("headers", [{}, {"content-type": STRUCTURED},
                                     {"content-type": BATCH}, binary_headers()])
def test_bad_json_is_one_rejection_with_the_original(value: bytes,
                                                     headers: dict[str, str]) -> None:
    bad = refused(decode(value, headers))
    assert bad.reason.startswith("not valid JSON: ")
    assert (bad.kind, bad.original, bad.index) == ("json", value, None)


@pytest.mark.parametrize("value", [b"42", b'"record"', b"null", b"true"])
def test_json_that_is_not_an_object_or_array(value: bytes) -> None:
    bad = refused(decode(value, {}))
    assert bad.kind == "schema" and "expected a JSON object or an array" in bad.reason


def test_no_value_at_all() -> None:
    bad = refused(decode(None, {}))  # type: ignore[arg-type]  # a Kafka tombstone
    assert bad.kind == "json" and bad.original == b""


def test_an_empty_batch_is_nothing() -> None:
    assert decode(b"[]", {}) == Decoded([], [])
    assert decode(b"[]", {"content-type": BATCH}) == Decoded([], [])


# ---- oversize ----------------------------------------------------------------------------------

def big(**changes: Any) -> dict[str, Any]:
    return evaluation(correlation_id="x" * MAX_RECORD_BYTES, **changes)


@pytest.mark.parametrize("headers", [{}, binary_headers()])
def test_oversize_record(headers: dict[str, str]) -> None:
    value = orjson.dumps(big())
    bad = refused(decode(value, headers))
    assert bad.kind == "oversize" and bad.original == value
    assert bad.reason == f"oversize: record is {len(value)} bytes, the limit is 65536"


def test_a_record_just_under_the_limit_is_fine() -> None:
    padding = MAX_RECORD_BYTES - len(orjson.dumps(evaluation(correlation_id="")))
    value = orjson.dumps(evaluation(correlation_id="x" * padding))
    assert len(value) == MAX_RECORD_BYTES
    assert only(decode(value, {})).correlation_id == "x" * padding


def test_oversize_structured_event() -> None:
    bad = refused(decode(orjson.dumps(envelope(big())), {"content-type": STRUCTURED}))
    assert bad.kind == "oversize"


@pytest.mark.parametrize("headers", [{}, {"content-type": BATCH}])
def test_oversize_item_in_a_batch(headers: dict[str, str]) -> None:
    wrap: Any = envelope if headers else (lambda d: d)
    items = [wrap(evaluation(call_id="c0")), wrap(big(call_id="c1")),
             wrap(evaluation(call_id="c2"))]
    decoded = decode(orjson.dumps(items), headers)
    assert [r.call_id for r in decoded.records] == ["c0", "c2"]
    [bad] = decoded.rejected
    assert (bad.index, bad.kind) == (1, "oversize") and bad.original == orjson.dumps(items[1])


def test_too_many_records_in_a_batch() -> None:
    value = orjson.dumps([evaluation(call_id=f"c{i}") for i in range(MAX_BATCH_RECORDS + 1)])
    bad = refused(decode(value, {}))
    assert bad.kind == "oversize" and bad.original == value
    assert bad.reason == "oversize: batch of 1001 records, the limit is 1000"
    full = decode(orjson.dumps([evaluation(call_id=f"c{i}") for i in range(MAX_BATCH_RECORDS)]),
                  {})
    assert len(full.records) == MAX_BATCH_RECORDS and full.rejected == []


def test_too_many_bytes() -> None:
    value = b"[" + b" " * MAX_BATCH_BYTES + b"]"
    bad = refused(decode(value, {}))
    assert bad.kind == "oversize" and bad.reason.startswith(f"oversize: {len(value)} bytes")


# ---- producer and release checks ----------------------------------------------------------------

def test_producers_write_only_for_their_tenants() -> None:
    batch = [record(tenant="acme"), record(tenant="other"), record(tenant="acme", call_id="2")]
    producer = Principal("acme-pipeline", "producer", ("acme",))
    ok, rejected = check_producer(batch, producer)
    assert ok == [batch[0], batch[2]]
    [bad] = rejected
    assert bad.reason == "producer acme-pipeline may not write for tenant other"
    assert bad.kind == "unauthorized" and bad.index is None
    assert EvaluationRecord.model_validate_json(bad.original) == batch[1]
    assert check_producer(batch, producer, indexes=[4, 5, 6])[1][0].index == 5
    for anyone in (Principal("root", "admin"), Principal("all", "producer", ("*",))):
        assert check_producer(batch, anyone) == (batch, [])
    assert check_producer(batch, Principal("none", "producer"))[0] == []


def test_unknown_releases_are_rejected() -> None:
    batch = [record(task="csat", release=1), record(task="csat", release=9),
             record(task="qa", release=1)]
    ok, rejected = check_releases(batch, lambda task, n: (task, n) == ("csat", 1))
    assert ok == batch[:1]
    assert [(r.reason, r.kind) for r in rejected] == [
        ("unknown release csat v9", "unknown_release"), ("unknown release qa v1",
                                                         "unknown_release")]


def test_screen_applies_both_checks_and_keeps_positions() -> None:
    items: list[Any] = [evaluation(call_id="c0"), evaluation(tenant="other"), "junk",
                        evaluation(release=9), evaluation(call_id="c4")]
    decoded = decode(orjson.dumps(items), {})
    result = screen(decoded, Principal("p", "producer", ("acme",)),
                    lambda _task, n: n == 1)
    assert [r.call_id for r in result.records] == ["c0", "c4"] and result.indexes == [0, 4]
    assert [(r.index, r.kind) for r in result.rejected] == [
        (1, "unauthorized"), (2, "schema"), (3, "unknown_release")]
    assert screen(decoded, None, None).records == decoded.records


# ---- encoding for Kafka and the DLQ --------------------------------------------------------------

def test_to_kafka_is_a_binary_mode_cloudevent() -> None:
    rec = record(arm="shadow", call_id="call-7")
    key, value, headers = to_kafka(rec)
    assert key == b"acme"
    assert dict(headers) == {
        "ce_specversion": b"1.0", "ce_id": b"acme:call-7:shadow",
        "ce_source": b"urn:relctl:producer", "ce_type": EVALUATION_TYPE.encode(),
        "ce_subject": b"acme", "ce_time": b"2026-11-21T10:00:00+00:00",
        "ce_dataschema": b"urn:relctl:schema:io.relctl.evaluation.recorded.v1",
        "content-type": b"application/json",
    }
    assert orjson.loads(value) == rec.model_dump(mode="json")
    assert only(decode(value, headers)) == rec


def test_batch_to_kafka_is_one_cloudevents_batch() -> None:
    batch = [record(call_id=f"c{i}") for i in range(3)]
    key, value, headers = batch_to_kafka(batch)
    assert key == b"acme" and headers == [("content-type", BATCH.encode())]
    events = orjson.loads(value)
    assert [e["id"] for e in events] == ["acme:c0:production", "acme:c1:production",
                                         "acme:c2:production"]
    assert events[0] == structured_event(batch[0]) | {"data": batch[0].model_dump(mode="json")}
    assert decode(value, headers).records == batch


def test_batch_to_kafka_refuses_what_decode_would() -> None:
    with pytest.raises(ValueError, match="one tenant"):
        batch_to_kafka([record(), record(tenant="other")])
    with pytest.raises(ValueError, match="at least one"):
        batch_to_kafka([])
    with pytest.raises(ValueError, match="at most 1000"):
        batch_to_kafka([record()] * (MAX_BATCH_RECORDS + 1))


def test_dlq_record_keeps_the_bytes_and_says_why() -> None:
    rejected = Rejected("tokens: bad; " + "x" * 2000, b"\x00original", 3, "schema")
    key, value, headers = dlq_record(rejected, "http:acme-pipeline")
    found = dict(headers)
    assert key is None and value == b"\x00original"
    assert found["relctl_dlq_reason"].decode() == rejected.reason[:1000]
    assert found["relctl_dlq_source"] == b"http:acme-pipeline"
    assert datetime.fromisoformat(found["relctl_dlq_time"].decode()).tzinfo is not None
    assert (found["relctl_dlq_kind"], found["relctl_dlq_index"]) == (b"schema", b"3")
    assert "relctl_dlq_original_bytes" not in found


def test_dlq_record_of_a_huge_body_is_cut_to_fit_a_message() -> None:
    original = b"x" * (MAX_DLQ_VALUE_BYTES + 10)
    _, value, headers = dlq_record(Rejected("oversize", original, None, "oversize"), "kafka")
    assert value == original[:MAX_DLQ_VALUE_BYTES]
    assert dict(headers)["relctl_dlq_original_bytes"] == str(len(original)).encode()
    assert "relctl_dlq_index" not in dict(headers)


def test_counters() -> None:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("relctl_evaluations_rejected_total", source="unit", reason_kind="json")
    before_ok = value("relctl_evaluations_accepted_total", source="unit")
    count_rejected([Rejected("a", b"", None, "json"), Rejected("b", b"", 1, "json"),
                    Rejected("c", b"", 2, "oversize")], "unit")
    count_accepted(5, "unit")
    assert value("relctl_evaluations_rejected_total", source="unit",
                 reason_kind="json") == before + 2
    assert value("relctl_evaluations_rejected_total", source="unit",
                 reason_kind="oversize") >= 1
    assert value("relctl_evaluations_accepted_total", source="unit") == before_ok + 5


# ---- properties ---------------------------------------------------------------------------------

MODES = st.sampled_from([{}, {"content-type": STRUCTURED}, {"content-type": BATCH},
                         binary_headers(), binary_headers(http=True),
                         {"ce_specversion": "1.0", "ce_type": "other"}])


def robust(decoded: Decoded) -> None:
    """Every outcome is an answer, never the last-resort catch of an unexpected exception."""
    assert isinstance(decoded, Decoded)
    assert not any(r.reason.startswith("could not decode") for r in decoded.rejected)
    assert len(decoded.indexes) == len(decoded.records)
    for rec in decoded.records:  # whatever is accepted can be produced again
        assert only(decode(*to_kafka(rec)[1:])) == rec


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), MODES)
def test_arbitrary_bytes_never_raise(value: bytes, headers: dict[str, str]) -> None:
    robust(decode(value, headers))


@settings(max_examples=300, deadline=None)
@given(json_values, MODES)
def test_arbitrary_json_never_raises(value: Any, headers: dict[str, str]) -> None:
    robust(decode(orjson.dumps(value), headers))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.sampled_from(sorted(evaluation())), json_values,
       st.sampled_from(["plain", "structured", "batch"]))
def test_records_with_one_arbitrary_field_never_raise(
    data: dict[str, Any], name: str, replacement: Any, mode: str,
) -> None:
    data = {**data, name: replacement}
    if mode == "plain":
        decoded = decode(orjson.dumps(data), {})
    elif mode == "structured":
        decoded = decode(orjson.dumps(envelope(data)), {"content-type": STRUCTURED})
    else:
        decoded = decode(orjson.dumps([envelope(data), envelope(evaluation())]),
                         {"content-type": BATCH})
        assert decoded.records[-1] == record()
    robust(decoded)


@settings(max_examples=150, deadline=None)
@given(records)
def test_to_kafka_round_trip(data: dict[str, Any]) -> None:
    rec = EvaluationRecord.from_mapping(data)
    key, value, headers = to_kafka(rec)
    assert key == rec.tenant.encode()
    assert only(decode(value, headers)) == rec
    http_headers = {k.replace("ce_", "ce-").title(): v for k, v in headers}
    assert only(decode(value, http_headers)) == rec


@settings(max_examples=60, deadline=None)
@given(st.lists(records, min_size=1, max_size=8), st.from_regex(r"^[a-z]{1,8}$", fullmatch=True))
def test_batch_to_kafka_round_trip(items: list[dict[str, Any]], tenant: str) -> None:
    batch = [EvaluationRecord.from_mapping({**item, "tenant": tenant}) for item in items]
    key, value, headers = batch_to_kafka(batch)
    decoded = decode(value, headers)
    assert key == tenant.encode() and decoded.rejected == []
    assert decoded.records == batch and decoded.indexes == list(range(len(batch)))
