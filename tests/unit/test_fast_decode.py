"""The worker's schema-compiled decoder against the contract (pydantic's EvaluationRecord).

The rule: the fast path may refuse what the contract accepts (the contract then decodes it),
but whatever it accepts, the contract accepts too, with the same values. And what
``ingest.decode(..., fast=True)`` returns (records, rejections, reasons, positions) is what the
contract's path returns for the same bytes.
"""

import json
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from relctl.adapters import ingest
from relctl.domain.evaluation import (
    MAX_BATCH_RECORDS,
    MAX_RECORD_BYTES,
    DecodedEvaluation,
    EvaluationRecord,
    decode_fast,
)

from tests.unit.evaluation_support import evaluation, json_values, records
from tests.unit.test_evaluation import BAD_VALUES, GOOD_VALUES


def _json(data: Any) -> bytes:
    return json.dumps(data, default=str).encode()


def _contract(value: bytes) -> EvaluationRecord | None:
    try:
        return EvaluationRecord.model_validate_json(value)
    except ValidationError:
        return None


def _same(fast: DecodedEvaluation, record: EvaluationRecord) -> None:
    """Every field equal; the timestamp the same instant with the same offset."""
    for name in EvaluationRecord.model_fields:
        mine, theirs = getattr(fast, name), getattr(record, name)
        if name == "occurred_at":
            assert mine.timestamp() == theirs.timestamp()
            assert mine.utcoffset() == theirs.utcoffset()
            assert mine.isoformat() == theirs.isoformat()
        else:
            assert mine == theirs, name
            assert type(mine) is type(theirs), name


def _agrees(value: bytes) -> bool:
    """The rule for one plain record; True if the fast path accepted it."""
    decoded = decode_fast(value, envelopes=None)
    if decoded is None:
        return False
    record = _contract(value)
    assert record is not None, f"fast path accepted what the contract refuses: {value!r}"
    _same(decoded[0], record)
    return True


def test_the_fields_and_defaults_are_the_contracts() -> None:
    fields = msgspec.structs.fields(DecodedEvaluation)
    assert {f.name for f in fields} == set(EvaluationRecord.model_fields)
    for f in fields:
        contract = EvaluationRecord.model_fields[f.name]
        if contract.is_required():
            assert f.required, f.name
        else:
            default = f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
            assert default == contract.get_default(call_default_factory=True), f.name


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_what_the_contract_refuses_the_fast_path_refuses(name: str, value: Any) -> None:
    try:
        payload = json.dumps(evaluation(**{name: value}), allow_nan=False, default=str)
    except ValueError:
        return  # NaN and infinities have no JSON form
    assert decode_fast(payload.encode(), envelopes=None) is None


@pytest.mark.parametrize(("name", "value"), GOOD_VALUES)
def test_boundary_values_take_the_fast_path(name: str, value: Any) -> None:
    assert _agrees(_json(evaluation(**{name: value})))


@pytest.mark.parametrize("text", [
    b'{"tenant": "acme\\n"}', b"1e999", b'"\\ud83d"', b"[]",
])
def test_hostile_bytes_are_left_to_the_contract(text: bytes) -> None:
    good = _json(evaluation())
    assert decode_fast(good.replace(b'"acme"', text), envelopes=None) is None


@pytest.mark.parametrize("moment", [
    "2026-11-21T10:00:00Z", "2026-11-21T10:00:00+05:30", "2026-11-21T10:00:00.5-03:00",
    "2026-11-21T10:00:00.123456+00:00",
])
def test_canonical_timestamps_take_the_fast_path(moment: str) -> None:
    assert _agrees(_json(evaluation(occurred_at=moment)))


@pytest.mark.parametrize("moment", [
    "2026-11-21 10:00:00Z", "2026-11-21t10:00:00z", "2026-11-21T10:00Z",
    "2026-11-21T10:00:00.1234567Z", "2026-11-21T10:00:00", "2026-11-21T10:00:60Z",
    "2026-02-30T10:00:00Z", "2026-11-21T10:00:00+0530", "2026-11-21T10:00:00+24:00",
    "20261121T100000Z", "0000-01-01T00:00:00Z",
])
def test_other_timestamps_are_left_to_the_contract(moment: str) -> None:
    assert decode_fast(_json(evaluation(occurred_at=moment)), envelopes=None) is None


@settings(max_examples=150, deadline=None)
@given(records)
def test_any_conforming_record_takes_the_fast_path_with_the_same_values(
        data: dict[str, Any]) -> None:
    assert _agrees(orjson.dumps(data))


timestamp_parts = st.tuples(
    st.sampled_from(["2026", "0001", "9999", "1999"]), st.sampled_from(["01", "02", "12", "13"]),
    st.sampled_from(["01", "28", "29", "31", "00"]), st.sampled_from(["T", "t", " "]),
    st.sampled_from(["00", "23", "24"]), st.sampled_from(["00", "59", "60"]),
    st.sampled_from(["", ".5", ".123456", ".1234567", ".0"]),
    st.sampled_from(["Z", "z", "+00:00", "-00:00", "+23:59", "-12:30", "+24:00", "", "+0530"]))


@settings(max_examples=300, deadline=None)
@given(timestamp_parts)
def test_no_timestamp_is_read_more_leniently(parts: tuple[str, ...]) -> None:
    year, month, day, sep, hour, second, fraction, offset = parts
    moment = f"{year}-{month}-{day}{sep}{hour}:00:{second}{fraction}{offset}"
    _agrees(_json(evaluation(occurred_at=moment)))


@settings(max_examples=300, deadline=None)
@given(records, st.data())
def test_no_mutated_record_is_read_more_leniently(data: dict[str, Any],
                                                  draw: st.DataObject) -> None:
    """One field replaced by any JSON value, dropped, or one unknown field added."""
    mutated = dict(data)
    change = draw.draw(st.sampled_from(["replace", "drop", "add"]))
    name = draw.draw(st.sampled_from(sorted(EvaluationRecord.model_fields)))
    if change == "replace":
        mutated[name] = draw.draw(json_values)
    elif change == "drop":
        mutated.pop(name, None)
    else:
        mutated[draw.draw(st.text(max_size=10))] = draw.draw(json_values)
    _agrees(orjson.dumps(mutated))


# ---- whole inputs: ingest.decode with and without the fast path ---------------------------

def _outcome(decoded: ingest.Decoded) -> tuple[Any, ...]:
    return ([record.model_dump(mode="json") for record in decoded.records],
            [(r.reason, r.original, r.index, r.kind) for r in decoded.rejected],
            decoded.indexes)


def _assert_same_decoding(value: bytes, headers: dict[str, bytes]) -> ingest.Decoded:
    fast, contract = ingest.decode(value, headers, fast=True), ingest.decode(value, headers)
    mine, theirs = _outcome(fast), _outcome(contract)
    assert mine[1:] == theirs[1:]
    assert len(mine[0]) == len(theirs[0])
    for got, want in zip(fast.records, contract.records, strict=True):
        if isinstance(got, DecodedEvaluation):
            assert isinstance(want, EvaluationRecord)
            _same(got, want)
        else:
            assert got == want
    return fast


BATCH = {"content-type": ingest.BATCH.encode()}


@settings(max_examples=60, deadline=None)
@given(st.lists(records, min_size=1, max_size=5), st.data())
def test_batches_decode_the_same_with_and_without_the_fast_path(
        items: list[dict[str, Any]], draw: st.DataObject) -> None:
    events = [{"specversion": "1.0", "id": str(i), "source": "s",
               "type": "io.relctl.evaluation.recorded.v1", "data": item}
              for i, item in enumerate(items)]
    if draw.draw(st.booleans()):  # spoil one item: the whole batch takes the contract's path
        where = draw.draw(st.integers(0, len(events) - 1))
        spoil = draw.draw(st.sampled_from(["type", "data", "field", "item"]))
        if spoil == "type":
            events[where]["type"] = "io.other.v1"
        elif spoil == "data":
            events[where]["data"] = draw.draw(json_values)
        elif spoil == "field":
            events[where]["data"] = {**items[where], "tenant": draw.draw(json_values)}
        else:
            events[where] = draw.draw(json_values)  # type: ignore[call-overload]
    _assert_same_decoding(orjson.dumps(events), BATCH)
    _assert_same_decoding(orjson.dumps(items), {})


def test_a_clean_batch_takes_the_fast_path_and_a_spoilt_one_does_not() -> None:
    good = [ingest.structured_event(EvaluationRecord.from_mapping(
        evaluation(call_id=f"c{i}"))) for i in range(3)]
    clean = _assert_same_decoding(orjson.dumps(good), BATCH)
    assert all(isinstance(r, DecodedEvaluation) for r in clean.records)
    assert clean.indexes == [0, 1, 2]
    spoilt = _assert_same_decoding(orjson.dumps([*good, {"specversion": "0.3"}]), BATCH)
    assert all(isinstance(r, EvaluationRecord) for r in spoilt.records)
    assert [r.index for r in spoilt.rejected] == [3]


def test_binary_single_records_take_the_fast_path() -> None:
    _, value, headers = ingest.to_kafka(EvaluationRecord.from_mapping(evaluation()))
    decoded = _assert_same_decoding(value, dict(headers))
    assert isinstance(decoded.records[0], DecodedEvaluation)
    wrong = {**dict(headers), "ce_type": b"io.other.v1"}
    assert _assert_same_decoding(value, wrong).rejected[0].kind == "type"


def test_limits_send_a_batch_to_the_contract() -> None:
    item = ingest.structured_event(EvaluationRecord.from_mapping(evaluation()))
    too_many = orjson.dumps([item] * (MAX_BATCH_RECORDS + 1))
    assert decode_fast(too_many, envelopes=True) is None
    _assert_same_decoding(too_many, BATCH)
    # An item close to the limit (its compact form is what the limit measures).
    big = {**item, "data": {**item["data"], "category_scores": {
        f"k{i}": 1e9 for i in range(MAX_RECORD_BYTES // 20)}}}
    value = json.dumps([item, big]).encode()
    assert decode_fast(value, envelopes=True) is None
    decoded = _assert_same_decoding(value, BATCH)
    assert [r.kind for r in decoded.rejected] == ["oversize"]
