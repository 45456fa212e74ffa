"""The README's by-hand walkthrough, run as written against a real `relctl up`."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.support import Stack, clean_env

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def walkthrough() -> str:
    """The sh block between the walkthrough markers of README.md."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- walkthrough -->", 1)[1].split("<!-- /walkthrough -->", 1)[0]
    match = re.search(r"```sh\n(.*?)```", block, re.DOTALL)
    assert match, "the walkthrough holds one sh block"
    return match.group(1)


def repository_layout(tmp_path: Path) -> Path:
    """A directory laid out like the repository root for the block: ``examples/`` is the
    repository's own, ``.venv/bin/relctl`` runs the relctl under test."""
    root = tmp_path / "repo"
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / "examples").symlink_to(ROOT / "examples")
    script = root / ".venv" / "bin" / "relctl"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m relctl.entrypoints.cli "$@"\n')
    script.chmod(0o700)
    return root


def test_the_readme_walkthrough_runs_as_written(stack: Stack, tmp_path: Path) -> None:
    stack.up()
    bash = shutil.which("bash")
    assert bash, "the README's shell"
    done = subprocess.run([bash, "-e", "-u", "-o", "pipefail", "-c", walkthrough()],
                          cwd=repository_layout(tmp_path), env=clean_env(stack.state_home),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "\x1b[" not in out, "no terminal escapes into a pipe"
    assert "recorded: release csat 1: Draft" in out and "recorded: release csat 2: Beta" in out
    assert "acme runs csat release" in out and "why:" in out and "pipeline:" in out
    assert "flags:" in out

    # Every step took effect: read the state back over the JSON interface.
    def ok(*args: str) -> dict:
        code, payload, err = stack.cli(*args)
        assert code == 0, err
        return payload

    task = ok("task", "show", "csat")
    assert task["default_release"] == 1 and task["releases"] == [1, 2]
    assert ok("release", "show", "csat", "1")["stage"] == "Stable"
    assert ok("release", "show", "csat", "2")["stage"] == "Beta"
    rollout_id = task["rollouts"][-1]
    rollout = ok("rollout", "show", rollout_id)
    assert rollout["state"] == "RolledBack" and rollout["steps"] == [10, 25, 50, 100]
    assert [r["name"] for r in rollout["guard_rules"]] == ["llm-errors"]
    evidence = json.loads((ROOT / "examples" / "evidence.json").read_text())
    assert rollout["decisions"][-1]["evidence"] == evidence
    history = ok("rollout", "history", rollout_id)["events"]
    assert [e["type"].split(".")[-2] for e in history] == [
        "planned", "started", "step_advanced", "rolled_back"]

    # The history, for people: one aligned line per event, full timestamp and full reason.
    lines = [line for line in out.splitlines() if TIMESTAMP.search(line)]
    assert len(lines) == len(history)
    for line, event in zip(lines, history, strict=True):
        assert TIMESTAMP.search(line).group(0) == event["time"]  # type: ignore[union-attr]
        assert line.rstrip().endswith(event["data"]["reason"])
    assert len({line.index(TIMESTAMP.search(line).group(0)) for line in lines}) == 1  # type: ignore[union-attr]


def test_the_demo_is_rolled_back_by_the_guard_on_its_own(stack: Stack) -> None:
    """`relctl demo`, as the README promises: the worker rolls the rollout back itself (the
    demo's producers stamp what resolve told them, so the trace contract accepts them)."""
    stack.up()
    env = {**stack.env, "RELCTL_API_URL": stack.url, "RELCTL_TOKEN": stack.token}
    done = subprocess.run([sys.executable, "-m", "relctl.entrypoints.cli", "demo"], env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "rolled back automatically by relctl-guard" in text, done.stdout
    # v2 passed its gates on real evidence: a bundle run through the local model server
    assert "through the local model server: bundle gb-" in text, done.stdout
    assert "category-agreement Block Passed" in text, done.stdout
    assert "a second rollback changes nothing: changed=False" in text
    assert stack.down() == 0
