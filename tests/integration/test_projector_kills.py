"""Exactly once under faults: a projector SIGKILLed again and again during a burst of
commands ends with the same rows as a clean rebuild, no event missing and none doubled."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from relctl.infra.bootstrap import Runtime
from relctl.projections import queries
from relctl.projections.runner import ProjectorSet

from tests.conftest import wait_until
from tests.integration.read_support import random_commands, seed_tasks, stored_events

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KILLS = 22


def start_child(url: str, schema: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.projector_child", url, schema, "7"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkilled_projector_ends_equal_to_a_clean_rebuild(runtime: Runtime) -> None:
    settings = runtime.settings
    url, schema = settings.database_url, settings.database_schema
    assert url
    seed_tasks(runtime.app)
    stop = threading.Event()
    issued: list[int] = []

    def burst() -> None:
        rng = random.Random(42)
        while not stop.is_set():
            issued.append(random_commands(runtime.app, rng, 10))

    commands = threading.Thread(target=burst)
    commands.start()
    projectors = ProjectorSet(runtime.app, url, schema).open()
    progress = []
    rng = random.Random(7)
    try:
        for _ in range(KILLS):
            before = projectors.position()
            child = start_child(url, schema)
            # Kill it while it works: once it has committed a batch, at a random later instant.
            wait_until(lambda before=before: projectors.position() > before, timeout=60,
                       interval=0.01, what="the projector to commit a batch")
            time.sleep(rng.uniform(0, 0.15))
            child.send_signal(signal.SIGKILL)
            assert child.wait(10) == -signal.SIGKILL
            progress.append(projectors.position())
    finally:
        stop.set()
        commands.join(60)
    assert sum(issued) > 0
    assert progress == sorted(progress)
    child = start_child(url, schema)
    try:
        head = projectors.head()
        wait_until(lambda: projectors.position() >= head, timeout=120,
                   what="the restarted projector to reach the store's head")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    survived = projectors.content_hash()
    verdict = queries.verify_audit(runtime.db)
    assert verdict.ok
    assert verdict.rows == len(stored_events(runtime.app))
    projectors.rebuild()
    assert projectors.content_hash() == survived
    projectors.close()
