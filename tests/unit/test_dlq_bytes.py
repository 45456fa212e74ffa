"""Every dead letter carries the bytes as received, whichever check refused the record."""

import orjson
import pytest
from relctl.adapters.ingest import BATCH, Origin, decode, item_bytes, screen

from tests.unit.evaluation_support import evaluation


@pytest.mark.parametrize(("value", "items"), [
    (b"[1, 2 ,3]", [b"1", b"2", b"3"]),
    (b'[ {"a": "x,]}\\"", "b": [1, {"c": 2}]} , "s,", [] ]',
     [b'{"a": "x,]}\\"", "b": [1, {"c": 2}]}', b'"s,"', b"[]"]),
    (b"[]", []),
])
def test_item_bytes_are_the_exact_slice(value: bytes, items: list[bytes]) -> None:
    assert [item_bytes(value, i) for i in range(len(items))] == items
    assert item_bytes(value, len(items)) == b""


def test_a_bad_batch_item_is_dead_lettered_as_it_was_sent() -> None:
    good = orjson.dumps(evaluation(call_id="a"), option=orjson.OPT_INDENT_2)
    bad = b'{  "tenant" : "acme",\n "task": 3 }'
    decoded = decode(b"[" + good + b" ,\n" + bad + b"]", {})
    [rejected] = decoded.rejected
    assert (rejected.index, rejected.original) == (1, bad)


def test_records_refused_after_decoding_keep_their_bytes_as_received() -> None:
    first = orjson.dumps(evaluation(call_id="a", release=1), option=orjson.OPT_INDENT_2)
    second = orjson.dumps(evaluation(call_id="b", release=9), option=orjson.OPT_SORT_KEYS)
    events = b"[" + b",".join(
        b'{"specversion": "1.0", "id": "x", "source": "s", '
        b'"type": "io.relctl.evaluation.recorded.v1", "data": ' + item + b"}"
        for item in (first, second)) + b"]"
    decoded = decode(events, {"content-type": BATCH})
    screened = screen(decoded, None, lambda task, release: release == 1)
    [rejected] = screened.rejected
    assert rejected.kind == "unknown_release" and rejected.index == 1
    assert rejected.original == item_bytes(events, 1)
    assert second in rejected.original
    single = orjson.dumps(evaluation(release=9), option=orjson.OPT_INDENT_2)
    [alone] = screen(decode(single, {}), None, lambda task, release: False).rejected
    assert alone.original == single


def test_an_origin_points_at_its_record() -> None:
    decoded = decode(b"[" + orjson.dumps(evaluation(call_id="a")) + b", " +
                     orjson.dumps(evaluation(call_id="b")) + b"]", {})
    origins = decoded.origins("kafka:t/0@5")
    assert [o.index for o in origins] == [0, 1]
    assert orjson.loads(origins[1].received())["call_id"] == "b"
    assert Origin("s", b"{}").received() == b"{}"
