"""Bare names: a capitalised word on the shipped name list is redacted without any context."""

import pytest
from relctl.adapters.redaction import Redactor, known_names
from relctl.domain.golden import parse_golden_lines

from tests.integration.gate_support import GOLDEN_PATH


@pytest.mark.parametrize(("text", "redacted", "names"), [
    ("Okafor called yesterday about the bill.", "[NAME] called yesterday about the bill.", 1),
    ("I spoke with Amara Okafor and Kowalski.", "I spoke with [NAME] and [NAME].", 2),
    # a common word that is also a name counts only next to an unambiguous one
    ("Hannah Walsh rang. Will you help? May I ask?", "[NAME] rang. Will you help? May I ask?", 1),
    ("Agent: Thank you for calling on Monday.", "Agent: Thank you for calling on Monday.", 0),
])
def test_bare_names_are_redacted(text: str, redacted: str, names: int) -> None:
    result = Redactor().redact(text)
    assert result.text == redacted
    assert result.counts.get("NAME", 0) == names


def test_without_the_list_a_bare_name_stays_as_before() -> None:
    assert Redactor(bare_names=False).redact("Okafor called.").text == "Okafor called."


def test_the_list_marks_common_words_ambiguous() -> None:
    names = known_names()
    assert names["Okafor"] is True and names["Nakamura"] is True
    assert names["Will"] is False and names["May"] is False and names["Smith"] is False
    assert "Thank" not in names or names["Thank"] is False


def test_the_example_set_redacts_the_same_with_and_without_the_list() -> None:
    calls = parse_golden_lines(GOLDEN_PATH.read_text("utf-8").splitlines())
    with_list, without = Redactor(), Redactor(bare_names=False)
    assert all(with_list.redact(c.transcript) == without.redact(c.transcript) for c in calls)
