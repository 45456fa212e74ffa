"""The guard judges a rollout as soon as a worker learns it, not only on traffic or a tick."""

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from relctl.infra.bootstrap import Runtime
from relctl.streams.app import GUARD_TICK_ENV

from bench.builders import waive_gates
from tests.conftest import wait_until
from tests.integration.conftest import SPEC
from tests.integration.guard_helpers import (
    PROMPTS,
    ControlPlaneThread,
    WorkerProcess,
    evaluation,
    produce,
    rule,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(runtime: Runtime, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A worker with its guard tick off: only traffic or the learn hook can judge."""
    process = WorkerProcess(runtime, tmp_path)
    process.env[GUARD_TICK_ENV] = "0"
    yield process
    process.stop()


def test_evaluations_that_beat_the_rollout_start_are_judged_when_it_is_learned(
    runtime: Runtime, worker: WorkerProcess,
) -> None:
    app = runtime.app
    app.create_release("hook", SPEC, "ops", "first release")
    waive_gates(app, "hook")
    app.promote_release("hook", 1, "Stable", "ops", "regression ok")
    app.set_default_release("hook", 1, "ops", "launch it")
    app.create_release("hook", {**SPEC, "prompt_template": PROMPTS[2]}, "ops", "stricter")
    app.promote_release("hook", 2, "Beta", "ops", "bundle ok")
    rollout = str(app.plan_rollout("hook", 2, "ops", "progressive", steps=[50, 100],
                                   guard_rules=[rule(threshold=0.05, min_samples=20)],
                                   shadow=False)["aggregate"]["id"])
    plane = ControlPlaneThread(runtime).start()
    worker.start()
    wait_until(lambda: worker.metric("relctl_worker_rollout_state", rollout=rollout) == 0,
               timeout=60, what="the worker knows the planned rollout")
    plane.stop()  # from here the control topic shows nothing new
    try:
        app.start_rollout(UUID(rollout), "ops", "canary now")  # stored, not yet published
        produce(runtime.settings.kafka_bootstrap or "", runtime.settings.topic("evaluations"),
                [evaluation("hook", 2, i, error=True) for i in range(30)])
        wait_until(lambda: (worker.metric("relctl_guard_window_evaluations", task="hook",
                                          release="2", arm="production") or 0) >= 30,
                   timeout=60, what="stage 2 counted the evaluations")
        assert worker.metric("relctl_worker_rollout_state", rollout=rollout) == 0
        assert not worker.metric("relctl_guard_decisions_total", action="rollback")
        plane = ControlPlaneThread(runtime).start()  # the start reaches the worker
        wait_until(lambda: str(app.rollout(UUID(rollout)).state) == "RolledBack", timeout=60,
                   what="automatic rollback without further traffic or a tick")
    finally:
        plane.stop()
    assert worker.metric("relctl_guard_decisions_total", action="rollback") == 1
    assert (worker.metric("relctl_worker_evaluations_processed_total") or 0) == 30
