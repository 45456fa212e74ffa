"""adapters/cloudevents.py: the SDK-built envelopes of alerts and decisions, control events
through the Kafka binding and back, and the one dead-letter helper."""

from datetime import datetime

import orjson
import pytest
from cloudevents.core.exceptions import CloudEventValidationError
from hypothesis import given
from hypothesis import strategies as st
from relctl.adapters import cloudevents
from relctl.adapters.cloudevents import (
    MAX_DLQ_VALUE_BYTES,
    MAX_REASON_BYTES,
    alert_record,
    dead_letter,
    decision_record,
    truncate_utf8,
)
from relctl.domain.alerts import Alert
from relctl.domain.decisions import Decision
from relctl.domain.guards import DecisionAction

from tests.unit.support import new_app, released_task

DECISION = Decision(rollout_id="0b9f5c9e-7a53-4a53-9d0c-1b2b3c4d5e6f",
                    action=DecisionAction.ROLLBACK, decision_id="r:errors:1",
                    reason="guard errors failed", evidence={"value": 0.2})


def test_decision_record_is_a_binary_cloudevent_with_the_decision_as_data() -> None:
    key, value, headers = decision_record(DECISION.wire())
    found = dict(headers)
    assert key == DECISION.rollout_id.encode()
    assert orjson.loads(value) == DECISION.wire()
    assert (found["ce_specversion"], found["ce_id"], found["ce_source"], found["ce_type"],
            found["ce_subject"], found["content-type"]) == (
        b"1.0", b"r:errors:1", b"urn:relctl:guard", b"io.relctl.command.rollback.v1",
        DECISION.rollout_id.encode(), b"application/json")
    assert datetime.fromisoformat(found["ce_time"].decode()).tzinfo is not None
    assert cloudevents.from_kafka(headers, value)["data"] == DECISION.wire()


def test_alert_record_id_is_stable_and_typed_by_kind() -> None:
    alert = Alert.of_decision("task|csat", DECISION).wire()
    first, second = alert_record(alert), alert_record(alert)
    assert dict(first[2])["ce_id"] == dict(second[2])["ce_id"] == b"r:errors:1"
    assert dict(first[2])["ce_type"] == b"io.relctl.alert.decision.v1"
    assert first[0] == b"task|csat" and orjson.loads(first[1]) == alert


def test_an_envelope_without_its_required_attributes_is_refused_by_the_sdk() -> None:
    with pytest.raises(CloudEventValidationError):
        cloudevents.sdk_binary({"id": "", "source": "urn:x", "type": "t"}, {}, b"k")


def test_control_events_round_trip_through_the_kafka_binding() -> None:
    app = new_app()
    released_task(app)
    for notification in app.recorder.select_notifications(start=1, limit=100):
        event = app.mapper.to_domain_event(notification)
        key, value, headers = cloudevents.to_kafka(event, notification.id)
        decoded = cloudevents.from_kafka(headers, value)
        structured = cloudevents.envelope(event, notification.id)
        assert key == structured["subject"].encode()
        assert {k: v for k, v in decoded.items() if k != "time"} == {
            k: v for k, v in structured.items() if k != "time"}
        assert datetime.fromisoformat(decoded["time"]) == datetime.fromisoformat(
            structured["time"])


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("abc", 10, b"abc"),
    ("abc", 2, b"ab"),
    ("é", 1, b""),  # a 2-byte character is never cut in half
    ("aé", 2, b"a"),
    ("a€b", 3, b"a"),  # 3-byte character
    ("a€b", 4, "a€".encode()),
    ("😀x", 3, b""),  # 4-byte character
    ("😀x", 4, "😀".encode()),
])
def test_truncate_utf8_cuts_on_a_character_boundary(text: str, limit: int,
                                                    expected: bytes) -> None:
    assert truncate_utf8(text, limit) == expected


@given(st.text(), st.integers(0, 64))
def test_truncate_utf8_is_always_a_valid_prefix(text: str, limit: int) -> None:
    cut = truncate_utf8(text, limit)
    assert len(cut) <= limit
    assert text.startswith(cut.decode("utf-8"))
    if len(text.encode()) <= limit:
        assert cut == text.encode()


def test_dead_letter_reason_of_multibyte_text_stays_valid_utf8() -> None:
    reason = "ü" * MAX_REASON_BYTES  # 2 bytes each: the byte limit falls inside a character?
    _, _, headers = dead_letter(b"{}", "x" + reason, "kafka:relctl.commands")
    header = dict(headers)["relctl_dlq_reason"]
    assert len(header) <= MAX_REASON_BYTES
    assert header.decode("utf-8") == ("x" + reason)[:len(header.decode("utf-8"))]
    assert len(header) == MAX_REASON_BYTES - 1  # 'x' + 499 ü; the 500th would not fit whole


def test_dead_letter_keeps_the_value_and_cuts_only_an_oversize_one() -> None:
    _, value, headers = dead_letter(b"raw", "why", "http:p", kind="json", index=2)
    found = dict(headers)
    assert value == b"raw" and found["relctl_dlq_kind"] == b"json"
    assert found["relctl_dlq_index"] == b"2" and "relctl_dlq_original_bytes" not in found
    big = b"y" * (MAX_DLQ_VALUE_BYTES + 1)
    _, value, headers = dead_letter(big, "oversize", "http:p")
    assert value == big[:MAX_DLQ_VALUE_BYTES]
    assert dict(headers)["relctl_dlq_original_bytes"] == str(len(big)).encode()
