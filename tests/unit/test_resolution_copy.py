"""The resolution view's memory of stored rows, and the in-memory copy /v1/resolve reads."""

import threading
from datetime import UTC, datetime, timedelta

from relctl.domain.read_models import Cause, ChangeKind
from relctl.projections.control_state import CurrentResolutions
from relctl.projections.views import Interval, ResolutionHistory

T0 = datetime(2026, 12, 1, tzinfo=UTC)
CAUSE = Cause(ChangeKind.EVENT, 1, "Tenant.FlagFlipped", "ops", "unit test")


def _stored(start: datetime, end: datetime | None) -> Interval:
    return Interval(start, end, b"{}", "e", CAUSE)


def test_an_event_truncates_the_open_stored_row_and_deletes_later_ones_by_key() -> None:
    history = ResolutionHistory()
    expiry = T0 + timedelta(days=1)
    history.stored[("acme", "csat")] = [_stored(T0, expiry), _stored(expiry, None)]
    at = T0 + timedelta(hours=2)
    history._rewrite_stored("acme", "csat", at)
    assert history.truncations == {("acme", "csat", T0): at}
    assert list(history.deletes) == [("acme", "csat", expiry)]
    assert ("acme", "csat") not in history.stored  # nothing stored can change any more
    history._rewrite_stored("acme", "csat", at + timedelta(hours=1))
    assert len(history.truncations) == 1 and len(history.deletes) == 1


def test_a_stored_row_ending_before_the_event_is_left_alone() -> None:
    history = ResolutionHistory()
    history.stored[("acme", "csat")] = [_stored(T0, T0 + timedelta(hours=1))]
    history._rewrite_stored("acme", "csat", T0 + timedelta(hours=1))
    assert not history.truncations and not history.deletes


def test_the_copy_answers_from_the_interval_containing_the_instant() -> None:
    copy = CurrentResolutions()
    expiry = T0 + timedelta(days=1)
    copy.replace({("acme", "csat"): [(T0, expiry, b'{"release":2}', "pin"),
                                     (expiry, None, b'{"release":1}', "after")]}, 5)
    assert copy.get("acme", "csat", T0) == (b'{"release":2}', "pin")
    assert copy.get("acme", "csat", expiry) == (b'{"release":1}', "after")
    assert copy.get("acme", "csat", T0 - timedelta(seconds=1)) is None
    assert copy.get("acme", "qa", T0) is None
    copy.update({("acme", "csat"): [(T0, None, b'{"release":3}', "new")]}, 9)
    assert copy.get("acme", "csat", expiry) == (b'{"release":3}', "new")
    assert copy.position == 9


def test_waiting_for_a_position_returns_once_a_commit_reaches_it() -> None:
    copy = CurrentResolutions()
    assert copy.wait_for(0, 0.01) is False  # nothing loaded yet
    copy.replace({}, 3)
    assert copy.wait_for(3, 0.01) is True and copy.wait_for(4, 0.01) is False
    timer = threading.Timer(0.05, copy.update, args=({}, 4))
    timer.start()
    assert copy.wait_for(4, 5.0) is True
    timer.join()
    copy.replace({}, 1)  # the view was dropped and is being rebuilt: the position goes back
    assert copy.wait_for(2, 0.01) is False
