"""The CLI's own behaviour, without a stack: help, output formats, errors, exit codes, the
examples the README uses, and how it finds a running `relctl up`."""

import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from relctl.domain.guards import normalize_rules
from relctl.domain.release import ReleaseSpec
from relctl.entrypoints import cli, cli_base
from relctl.infra.embedded import free_port
from relctl.infra.stackfile import LOCK_FILE, STACK_FILE, find_stack, stack_is_running
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No relctl settings, no stack in the working directory, no per-user pointer."""
    for name in list(os.environ):
        if name.startswith("RELCTL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _commands(command: Any, path: str = "relctl") -> list[tuple[str, Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, f"{path} {name}")
    return found


def test_every_command_argument_and_option_has_help() -> None:
    missing = []
    commands = _commands(typer.main.get_command(cli.app))
    assert len(commands) > 50 and "relctl rollout rollback" in dict(commands)
    for path, command in commands:
        if not (command.help or "").strip():
            missing.append(path)
        for param in command.params:
            if not (getattr(param, "help", None) or "").strip():
                missing.append(f"{path} {param.name}")
    assert missing == []


def test_an_unknown_output_format_is_a_usage_error() -> None:
    result = runner.invoke(cli.app, ["whoami", "-o", "yaml"])
    assert result.exit_code == cli.ExitCode.USAGE
    assert "yaml" in result.stderr


def _unreachable(monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("RELCTL_API_URL", url)
    monkeypatch.setenv("RELCTL_TOKEN", "rk_test")
    return url


def test_errors_are_json_on_stderr_with_o_json(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = _unreachable(monkeypatch)
    result = runner.invoke(cli.app, ["task", "show", "csat", "-o", "json"])
    assert result.exit_code == cli.ExitCode.UNAVAILABLE
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "unavailable" and url in error["message"]
    assert error["exit_code"] == cli.ExitCode.UNAVAILABLE


def test_errors_are_one_readable_line_in_text(
    nowhere: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = _unreachable(monkeypatch)
    result = runner.invoke(cli.app, ["task", "show", "csat"])
    assert result.exit_code == cli.ExitCode.UNAVAILABLE
    assert result.stderr.startswith("error (unavailable): ")
    assert url in result.stderr and "{" not in result.stderr


def test_an_unreadable_json_file_is_invalid_input(nowhere: Path) -> None:
    bad = nowhere / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(cli.app, ["release", "create", "csat", "-f", str(bad), "-r", "x",
                                     "-o", "json"])
    assert result.exit_code == cli.ExitCode.INVALID
    assert json.loads(result.stderr)["error"]["code"] == "invalid_file"


def test_without_a_token_or_a_stack_it_says_exactly_what_to_set(nowhere: Path) -> None:
    result = runner.invoke(cli.app, ["whoami"])
    assert result.exit_code == cli.ExitCode.UNAUTHORIZED
    assert "RELCTL_TOKEN" in result.stderr and "RELCTL_DATA_DIR" in result.stderr


def test_http_statuses_map_to_distinct_exit_codes() -> None:
    assert {cli_base.EXIT[s] for s in (400, 409, 404, 401, 503)} == {
        cli.ExitCode.INVALID, cli.ExitCode.CONFLICT, cli.ExitCode.NOT_FOUND,
        cli.ExitCode.UNAUTHORIZED, cli.ExitCode.UNAVAILABLE}
    assert len(set(cli.ExitCode)) == len(cli.ExitCode.__members__)


# ---- text output ---------------------------------------------------------------------

RESOLUTION: dict[str, Any] = {
    "tenant": "acme", "task": "csat", "release": 2, "release_detail": {"stage": "Beta"},
    "source": "rollout", "shadow_release": None, "rollout": {"id": "r1"},
    "pipeline": "standard", "flags": {"auto_qa": True, "coaching": False}, "overrides": {},
    "explanation": ["acme is in the 25 % bucket of rollout r1", "candidate release 2"],
}


def test_resolve_prints_release_why_pipeline_and_flags_not_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli_base.show(RESOLUTION, cli.OutputFormat.text)
    out = capsys.readouterr().out
    assert "acme runs csat release 2 (source: rollout)" in out
    assert "- acme is in the 25 % bucket of rollout r1" in out
    assert "pipeline: standard" in out and "flags: auto_qa on, coaching off" in out
    assert "{" not in out


def test_history_is_one_aligned_line_per_event_with_full_time_and_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reason = "scores shifted by seven points for acme after the candidate; " * 3
    events = [{"time": f"2026-12-02T16:0{i}:00.123456+00:00", "type": f"io.relctl.rollout.e{i}.v1",
               "data": {"actor": "admin" if i else "relctl-guard", "reason": reason.strip()}}
              for i in range(3)]
    cli_base.show({"aggregate_id": "r1", "events": events}, cli.OutputFormat.text)
    lines = [line for line in capsys.readouterr().out.splitlines() if "2026-12-02T" in line]
    assert len(lines) == 3
    assert all(line.rstrip().endswith(reason.strip()) for line in lines)
    assert len({line.index("rollout.e") for line in lines}) == 1


def test_json_output_is_the_api_answer(capsys: pytest.CaptureFixture[str]) -> None:
    cli_base.show(RESOLUTION, cli.OutputFormat.json)
    assert json.loads(capsys.readouterr().out) == RESOLUTION


# ---- the examples and the README walkthrough -------------------------------------------

def _walkthrough() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- walkthrough -->", 1)[1].split("<!-- /walkthrough -->", 1)[0]
    body = re.search(r"```sh\n(.*?)```", block, re.DOTALL)
    assert body
    return [line for line in body.group(1).replace("\\\n", " ").splitlines() if line.strip()]


def test_the_examples_are_valid_for_the_domain() -> None:
    for name in ("release-v1.json", "release-v2.json"):
        ReleaseSpec.from_dict(json.loads((ROOT / "examples" / name).read_text()))
    assert normalize_rules(json.loads((ROOT / "examples" / "guards.json").read_text()))
    assert isinstance(json.loads((ROOT / "examples" / "evidence.json").read_text()), dict)


def test_the_walkthrough_uses_one_invocation_and_only_shipped_examples() -> None:
    lines = _walkthrough()
    invocations = {m.group(1) for line in lines for m in re.finditer(r"([^\s(]*relctl) ", line)}
    assert invocations == {".venv/bin/relctl"}
    files = {m.group(0) for line in lines for m in re.finditer(r"examples/[\w.-]+", line)}
    assert files and all((ROOT / f).is_file() for f in files)
    shipped = {f"examples/{p.name}" for p in (ROOT / "examples").glob("*.json")}
    assert files == shipped


# ---- finding a running stack -----------------------------------------------------------

def _running(data_dir: Path) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / STACK_FILE).write_text(json.dumps({"api_url": f"http://{data_dir.name}"}))
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_a_stack_runs_while_its_lock_is_held(tmp_path: Path) -> None:
    assert not stack_is_running(tmp_path)
    fd = _running(tmp_path)
    assert stack_is_running(tmp_path)
    os.close(fd)
    assert not stack_is_running(tmp_path)


def test_the_working_directory_wins_over_the_pointer_and_a_dead_stack_is_reported(
    nowhere: Path,
) -> None:
    pointed = nowhere / "pointed"
    fd = _running(pointed)
    pointer = nowhere / "state" / "relctl" / "current-stack"
    pointer.parent.mkdir(parents=True)
    pointer.write_text(str(pointed))
    assert find_stack(None) == (pointed.resolve(), {"api_url": "http://pointed"})
    local = _running(nowhere / ".relctl")
    assert find_stack(None)[0] == (nowhere / ".relctl").resolve()
    os.close(local)
    os.close(fd)
    assert find_stack(None) == ((nowhere / ".relctl").resolve(), None)
    assert find_stack(nowhere / "other") == (None, None)


def test_rollout_show_prints_each_rules_latest_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    """The API returns ``verdicts`` (RuleVerdict JSON) with a rollout; show says them plainly."""
    pending = {"rule": "errors", "outcome": "Pending", "metric": "llm_error_rate",
               "comparator": ">", "threshold": 0.05, "value": 0.2, "samples": 60,
               "min_samples": 50, "window_seconds": 120.0, "for_seconds": 30.0,
               "candidate": {"value": 0.2, "samples": 60},
               "baseline": {"value": None, "samples": 0},
               "breach_since": "2026-12-02T16:30:00+00:00", "time_left_seconds": 12.4,
               "at": "2026-12-02T16:30:18+00:00"}
    few = {**pending, "rule": "latency", "outcome": "Inconclusive", "samples": 20,
           "breach_since": None, "time_left_seconds": None}
    cli_base.show({"kind": "Rollout", "id": "r1", "task": "csat", "baseline": 1, "candidate": 2,
              "state": "Running", "steps": [50, 100], "step_index": 0,
              "verdicts": [pending, few]}, cli_base.OutputFormat.text)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "  verdict errors: Pending, llm_error_rate 0.2 > 0.05, 60 of 50 samples over 120 s, "
        "candidate 0.2 (60), baseline - (0), breached since 2026-12-02T16:30:00+00:00, 12 s "
        "left (as of 2026-12-02T16:30:18+00:00)",
        "  verdict latency: Inconclusive, llm_error_rate 0.2 > 0.05, 20 of 50 samples over "
        "120 s, candidate 0.2 (60), baseline - (0) (as of 2026-12-02T16:30:18+00:00)"]
