"""Hop tracing (``RELCTL_HOP_TRACE``): what the stack marks is what bench_latency --hops reads."""

from pathlib import Path

import pytest
from relctl.adapters import hop_trace
from relctl.domain.hops import Hop

from bench.hop_report import TrialMarks, hop_times, read_marks, report


@pytest.fixture
def trace_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hops.jsonl"
    monkeypatch.setattr(hop_trace, "_path", str(path))
    return path


def test_off_by_default_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hop_trace, "_path", None)
    hop_trace.mark(Hop.DECIDED, "r1", 1.0)
    assert not hop_trace.enabled()
    assert list(tmp_path.iterdir()) == []


def test_marks_are_read_back_by_key_and_hop(trace_file: Path) -> None:
    hop_trace.mark(Hop.STAGE1_BATCH, "t1", 10.0)
    hop_trace.mark(Hop.DECIDED, "r1", 10.5)
    assert read_marks(trace_file) == {("stage1_batch", "t1"): [10.0], ("decided", "r1"): [10.5]}


def test_task_hops_take_the_last_mark_rollout_hops_the_first(trace_file: Path) -> None:
    """The breach is its task's last record; a decision may be re-sent later."""
    for at in (1.0, 2.0):  # the 19 before, then the breach
        hop_trace.mark(Hop.PARTIAL_SENT, "t1", at)
    for at in (2.5, 4.0):  # the decision, then a re-send
        hop_trace.mark(Hop.DECISION_SENT, "r1", at)
    times = hop_times(TrialMarks("t1", "r1", 1.9, 5.0), read_marks(trace_file))
    assert times[Hop.PARTIAL_SENT] == 2.0
    assert times[Hop.DECISION_SENT] == 2.5
    assert Hop.DECIDED not in times  # no mark: missing, not guessed


def test_report_gives_each_hop_the_time_since_the_previous_marked_one(trace_file: Path
                                                                       ) -> None:
    hop_trace.mark(Hop.STAGE1_BATCH, "t1", 1.010)
    hop_trace.mark(Hop.COMMAND_EXECUTED, "r1", 1.050)
    lines = report("x", [TrialMarks("t1", "r1", 1.000, 1.100)], trace_file)
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["stage1_batch"][0] == "10.0"
    assert rows["command_executed"][0] == "40.0"  # since stage1_batch, the last marked hop
    assert rows["resolved"][0] == "50.0"
    assert rows["decided"] == ["(no", "marks)"]
