"""`relctl up` as a subprocess, and the CLI against it, as a new user runs them."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
from relctl.infra.embedded import free_port

from tests.conftest import wait_until

RELCTL = [sys.executable, "-m", "relctl.entrypoints.cli"]


def clean_env(state_home: Path) -> dict[str, str]:
    """The caller's environment without relctl settings, with a private per-user state
    directory (where `relctl up` leaves the pointer to the running stack)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELCTL_")}
    env["XDG_STATE_HOME"] = str(state_home)
    return env


class Stack:
    def __init__(self, data_dir: Path, cwd: Path | None = None,
                 pass_data_dir: bool = True) -> None:
        self.data_dir = data_dir
        self.cwd = cwd
        self.pass_data_dir = pass_data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_home = data_dir.parent / "state"
        self.env = clean_env(self.state_home)
        self.process: subprocess.Popen[str] | None = None
        self.output = ""

    def start(self) -> subprocess.Popen[str]:
        data_dir = ["--data-dir", str(self.data_dir)] if self.pass_data_dir else []
        self.process = subprocess.Popen(
            [*RELCTL, "up", *data_dir, "--api-port", str(self.port)], cwd=self.cwd,
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self.process

    def up(self) -> None:
        self.start()
        wait_until(self._healthy, timeout=60, interval=0.2, what="relctl up")

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"relctl up exited: {self.process.stdout.read()}")  # type: ignore[union-attr]
        try:
            return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def down(self, timeout: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=timeout)
        self.output += out
        return self.process.returncode

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def cli(self, *args: str, token: str | None = None) -> tuple[int, Any, str]:
        env = {**self.env, "RELCTL_API_URL": self.url, "RELCTL_TOKEN": token or self.token}
        done = subprocess.run([*RELCTL, *args, "-o", "json"],
                              env=env, capture_output=True, text=True, timeout=60, check=False)
        try:
            payload = json.loads(done.stdout) if done.stdout.strip() else None
        except ValueError:
            payload = done.stdout
        return done.returncode, payload, done.stderr

    def processes(self) -> list[psutil.Process]:
        """Every process of this run: `relctl up`, its descendants, and the daemonized
        PostgreSQL of its data directory with its backends."""
        assert self.process is not None
        found: list[psutil.Process] = []
        try:
            root = psutil.Process(self.process.pid)
            found = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
        try:
            pid = int((self.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
            postmaster = psutil.Process(pid)
            if postmaster.name() == "postgres":
                found += [postmaster, *postmaster.children(recursive=True)]
        except (OSError, ValueError, IndexError, psutil.Error):
            pass
        return found


def gone(process: psutil.Process) -> bool:
    """Ended (or a zombie its parent has yet to reap); a reused pid counts as gone."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
