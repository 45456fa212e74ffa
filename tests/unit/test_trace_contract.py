"""The trace contract and the time limits evaluations are checked against."""

import pytest
from relctl.domain.evaluation import EvaluationRecord
from relctl.domain.release import prompt_hash
from relctl.domain.timeliness import (
    CLOCK_SKEW_SECONDS,
    TimeProblem,
    explain,
    retention_seconds,
    time_problem,
)
from relctl.domain.trace_contract import ReleaseTrace, TraceField, describe, violations

from tests.unit.evaluation_support import evaluation

TRACE = ReleaseTrace(prompt_hash=prompt_hash("Score the call."), model_provider="openai",
                     model_version="gpt-4o-2024-08-06", temperature=0.0, seed=7,
                     blueprint_version_id="qa-default@v3")


def record(**changes: object) -> EvaluationRecord:
    return EvaluationRecord.from_mapping(evaluation(
        **{"release": 2, "prompt_hash": TRACE.prompt_hash, **changes}))


def test_a_record_that_ran_its_release_honours_the_contract() -> None:
    assert violations(record(), TRACE) == ()
    assert violations(record(blueprint_version_id="qa-default@v3"), TRACE) == ()


def test_the_issue_s_record_breaks_every_field() -> None:
    bad = record(prompt_hash=prompt_hash("an older prompt"), model_provider="anthropic",
                 model_version="claude-3-5-sonnet-20241022", temperature=1.7, seed=999,
                 blueprint_version_id="qa-default@v2")
    assert violations(bad, TRACE) == tuple(TraceField)
    reason = describe(bad, TRACE, violations(bad, TRACE))
    assert reason.startswith("trace contract: the record claims csat v2 but ran ")
    assert "temperature 1.7 (release has 0.0)" in reason and "seed 999" in reason


@pytest.mark.parametrize(("change", "field"), [
    ({"prompt_hash": "sha256:other"}, TraceField.PROMPT_HASH),
    ({"model_provider": "azure"}, TraceField.MODEL_PROVIDER),
    ({"model_version": "gpt-4o-2024-11-20"}, TraceField.MODEL_VERSION),
    ({"temperature": 0.2}, TraceField.TEMPERATURE),
    ({"seed": 8}, TraceField.SEED),
    ({"blueprint_version_id": "qa-default@v4"}, TraceField.BLUEPRINT_VERSION),
])
def test_each_field_is_compared(change: dict[str, object], field: TraceField) -> None:
    assert violations(record(**change), TRACE) == (field,)


def test_the_trace_is_read_from_the_release_event() -> None:
    data = {"task": "csat", "number": 2, "prompt_hash": TRACE.prompt_hash,
            "content": {"prompt_template": "Score the call.", "model_provider": "openai",
                        "model_version": "gpt-4o-2024-08-06", "temperature": 0, "seed": 7,
                        "blueprint_version_id": "qa-default@v3"}}
    assert ReleaseTrace.from_event(data) == TRACE


def test_time_limits() -> None:
    now, retention = 1_800_000_000.0, retention_seconds([600.0, 3600.0], 5.0)
    assert retention == 3605.0
    assert retention_seconds([], 5.0) == 1205.0
    assert time_problem(now, now, retention) is None
    assert time_problem(now + CLOCK_SKEW_SECONDS, now, retention) is None
    assert time_problem(now + CLOCK_SKEW_SECONDS + 1, now, retention) is TimeProblem.FUTURE
    assert time_problem(now - retention, now, retention) is None
    assert time_problem(now - retention - 1, now, retention) is TimeProblem.STALE
    assert "ahead" in explain(TimeProblem.FUTURE, now + 3600, now, retention)
    assert "3605s" in explain(TimeProblem.STALE, now - 10**8, now, retention)
