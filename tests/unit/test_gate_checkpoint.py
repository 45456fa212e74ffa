"""The gate runner's checkpoint is written in batches; what was written is what resumes."""

from pathlib import Path

from relctl.adapters.gate_runner import CheckpointBuffer, load_checkpoint
from relctl.domain.gates import Arm, CallTrace


def trace(call_id: str, error: str | None = None) -> str:
    return CallTrace(call_id=call_id, arm=Arm.CANDIDATE, release_id="csat@2",
                     prompt_hash="sha256:" + "0" * 64, requested_model="m", temperature=0,
                     seed=1, error=error).model_dump_json()


def test_lines_are_written_per_batch_and_on_flush(tmp_path: Path) -> None:
    path = tmp_path / "candidate.jsonl"
    with path.open("a", encoding="utf-8") as sink:
        lines = CheckpointBuffer(sink, max_lines=3, max_delay_s=3600)
        lines.add(trace("c1"))
        lines.add(trace("c2"))
        # finished but not yet written: a crash now re-sends c1 and c2 on resume
        assert path.read_text() == "" and set(load_checkpoint(path)) == set()
        lines.add(trace("c3"))
        assert set(load_checkpoint(path)) == {"c1", "c2", "c3"}
        lines.add(trace("c4", error="HTTP 500: InternalServerError"))
        lines.add(trace("c5"))
        lines.flush()
    assert set(load_checkpoint(path)) == {"c1", "c2", "c3", "c5"}  # failed calls are re-sent
    assert len(path.read_text().splitlines()) == 5


def test_a_batch_is_written_once_it_is_old_enough(tmp_path: Path) -> None:
    path = tmp_path / "baseline.jsonl"
    with path.open("a", encoding="utf-8") as sink:
        lines = CheckpointBuffer(sink, max_lines=1_000, max_delay_s=0)
        lines.add(trace("c1"))
        assert set(load_checkpoint(path)) == {"c1"}
