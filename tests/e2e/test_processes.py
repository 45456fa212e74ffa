"""`relctl up` as an operating system process: what it leaves behind, how it stops, what it
cleans up after a crash, and who may read its files."""

import contextlib
import os
import re
import signal
import stat
import subprocess
import threading
from pathlib import Path

import httpx
import psutil
import pytest
from relctl.infra.embedded import free_port
from relctl.infra.stack import SHUTDOWN_BOUND

from tests.conftest import wait_until
from tests.e2e.support import RELCTL, Stack, clean_env, gone

pytestmark = pytest.mark.e2e

LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \d+ \S+: ")


def private(path: Path) -> list[str]:
    """Every directory under ``path`` (itself included) that is not 0700 and every regular
    file that is not 0600. Sockets are left out: one in a 0700 directory is unreachable."""
    wrong = []
    for directory, _subdirs, files in os.walk(path):
        if stat.S_IMODE(os.stat(directory).st_mode) != 0o700:
            wrong.append(f"{directory} {oct(os.stat(directory).st_mode)}")
        for name in files:
            info = os.lstat(Path(directory) / name)
            if stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) != 0o600:
                wrong.append(f"{directory}/{name} {oct(info.st_mode)}")
    return wrong


def test_up_from_a_directory_leaves_only_its_data_directory_private_and_plain_logs(
    stack_root: Path,
) -> None:
    cwd = stack_root / "work"
    cwd.mkdir()
    stack = Stack(cwd / ".relctl", cwd=cwd, pass_data_dir=False)
    stack.state_home = stack_root / "state"
    stack.env = clean_env(stack.state_home)
    stack.up()
    try:
        wait_until((stack.data_dir / "faust").exists, timeout=60,
                   what="the guard worker's Faust data")
        # The CLI finds the running stack (URL and token) from any directory, by itself.
        elsewhere = stack_root / "elsewhere"
        elsewhere.mkdir()
        whoami = subprocess.run([*RELCTL, "whoami", "-o", "json"], cwd=elsewhere,
                                env=clean_env(stack.state_home), capture_output=True,
                                text=True, timeout=60, check=False)
        assert whoami.returncode == 0, whoami.stderr
        assert '"role": "admin"' in whoami.stdout
        pointer = stack.state_home / "relctl" / "current-stack"
        assert pointer.read_text().strip() == str(stack.data_dir.resolve())
        assert stat.S_IMODE(pointer.stat().st_mode) == 0o600
        assert stat.S_IMODE(pointer.parent.stat().st_mode) == 0o700
        assert private(stack.data_dir) == []
    finally:
        assert stack.down() == 0
    assert sorted(os.listdir(cwd)) == [".relctl"]
    assert private(stack.data_dir) == []
    assert not pointer.exists(), "a clean stop removes the pointer to it"

    # After the stop, the CLI says the stack is not running, and what to do.
    down = subprocess.run([*RELCTL, "whoami"], cwd=cwd, env=clean_env(stack.state_home),
                          capture_output=True, text=True, timeout=60, check=False)
    assert down.returncode == 7
    assert "is not running" in down.stderr and "relctl up" in down.stderr

    # One log format for relctl up and its workers, no terminal escapes in files or pipes.
    worker_log = (stack.data_dir / "worker.log").read_text()
    assert "\x1b" not in worker_log and "\x1b" not in stack.output
    for text in (worker_log, stack.output):
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines
        starts = [line for line in lines if not line.startswith((" ", "\t", "Traceback"))]
        assert all(LOG_LINE.match(line) for line in starts), starts


def test_sigkill_five_times_then_nothing_of_those_runs_remains_and_the_sixth_start_works(
    stack: Stack,
) -> None:
    killed: list[psutil.Process] = []
    for _ in range(5):
        stack.up()
        processes = stack.processes()
        names = {p.name() for p in processes}
        assert "postgres" in names and len(processes) >= 4, names  # up, broker, worker, db
        killed += processes
        assert stack.process is not None
        stack.process.kill()
        stack.process.wait(10)
    stack.up()
    try:
        survivors = lambda: [p for p in killed if not gone(p)]  # noqa: E731
        wait_until(lambda: not survivors(), timeout=60, interval=0.2,
                   what="the processes of the killed runs to end")
        code, task, err = stack.cli("whoami")
        assert code == 0 and task["role"] == "admin", err
        spec = Path(__file__).resolve().parents[2] / "examples" / "release-v1.json"
        code, created, err = stack.cli("release", "create", "csat", "-f", str(spec), "-r", "6th")
        assert code == 0 and created["aggregate"]["number"] == 1, err
        # A second `relctl up` on the same data directory is refused and disturbs nothing.
        second = subprocess.run(
            [*RELCTL, "up", "--data-dir", str(stack.data_dir), "--api-port", str(free_port())],
            env=stack.env, capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1
        assert "another relctl up" in second.stderr and str(stack.process.pid) in second.stderr
        assert stack.cli("whoami")[0] == 0
        pointer = stack.state_home / "relctl" / "current-stack"
        assert pointer.read_text().strip() == str(stack.data_dir.resolve())
    finally:
        assert stack.down() == 0


def test_sigterm_stops_within_the_bound_while_the_database_hangs(stack: Stack) -> None:
    stack.up()
    assert stack.process is not None
    database = [p for p in stack.processes() if p.name() == "postgres"]
    run = stack.processes()
    for process in database:
        process.suspend()  # the database stops answering, mid-flight
    try:
        token = stack.token

        def hanging_request() -> None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(stack.url + "/v1/tasks/csat", timeout=120,
                          headers={"Authorization": f"Bearer {token}"})

        requests = [threading.Thread(target=hanging_request, daemon=True) for _ in range(3)]
        for request in requests:
            request.start()
        server = psutil.Process(stack.process.pid)
        wait_until(lambda: sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == stack.port
                               for c in server.net_connections("tcp")) >= 3,
                   timeout=30, what="requests in flight")
        stack.process.send_signal(signal.SIGTERM)
        # Bounded: the watchdog ends it SHUTDOWN_BOUND seconds after the stop began.
        out, _ = stack.process.communicate(timeout=SHUTDOWN_BOUND + 10)
        stack.output += out
    finally:
        for process in database:
            if not gone(process):
                process.resume()
    wait_until(lambda: all(gone(p) for p in run), timeout=60, interval=0.2,
               what="every process of the stopped run to end")
