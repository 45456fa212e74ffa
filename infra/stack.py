"""``relctl up``: the whole control plane in the foreground.

Starts what is not configured externally (PostgreSQL, broker), then the relay and the API in
one event loop. SIGINT or SIGTERM stops everything in reverse order, child processes included;
the data directory keeps the database and the admin token between runs.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn
from relctl.adapters.commands import CommandConsumer
from relctl.adapters.config import Settings
from relctl.adapters.kafka import ensure_topics, topic_specs
from relctl.infra.bootstrap import Runtime, bootstrap
from relctl.infra.embedded import EmbeddedBroker, EmbeddedPostgres, wait_or_kill

logger = logging.getLogger("relctl")


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` readable by the owner only (0600), never via a world-readable temp."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    path.chmod(0o600)


def ensure_admin_token(runtime: Runtime, data_dir: Path, say: Callable[[str], None]) -> None:
    if runtime.tokens.count() > 0:
        return
    token = runtime.tokens.create("admin", "admin", created_by="relctl up")
    path = data_dir / "admin-token"
    write_secret(path, token)
    say(f"created the first admin token; it is in {path} (mode 0600). "
        f"Use it with: export RELCTL_TOKEN=$(cat {path})")


# Builds the ASGI app over a runtime; the callable wakes the relay after a command.
ApiFactory = Callable[[Runtime, Callable[[], None]], Any]


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal capture: ``relctl up`` owns SIGINT/SIGTERM and stops
    every component in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Stack:
    """The embedded services plus the bootstrapped runtime."""

    def __init__(self, settings: Settings, api_factory: ApiFactory,
                 say: Callable[[str], None] = print, workers: int = 1, relay: bool = True) -> None:
        self.settings = settings
        self.api_factory = api_factory
        self.say = say
        self.workers = workers
        self.relay = relay
        self.worker_processes: list[subprocess.Popen[bytes]] = []
        self.postgres: EmbeddedPostgres | None = None
        self.broker: EmbeddedBroker | None = None
        self.runtime: Runtime | None = None

    def start_services(self) -> Settings:
        data_dir = self.settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        settings = self.settings
        if not settings.database_url:
            self.postgres = EmbeddedPostgres(data_dir / "postgres")
            settings = replace(settings, database_url=self.postgres.start())
            self.say(f"embedded PostgreSQL running (data in {data_dir / 'postgres'})")
        if not settings.kafka_bootstrap:
            self.broker = EmbeddedBroker(log_path=data_dir / "broker.log")
            settings = replace(settings, kafka_bootstrap=self.broker.start())
            self.say(f"embedded Kafka-protocol broker (Tansu, memory storage) on "
                     f"{settings.kafka_bootstrap}")
        self.settings = settings
        stack_file = data_dir / "stack.json"
        stack_file.write_text(json.dumps({
            "api_url": f"http://{settings.api_host}:{settings.api_port}",
            "kafka_bootstrap": settings.kafka_bootstrap,
            "topic_prefix": settings.topic_prefix, "pid": os.getpid(),
        }))
        return settings

    def start_workers(self) -> None:
        """Guard workers as child processes (Faust owns its event loop and signals)."""
        env = {**os.environ, "RELCTL_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap or "",
               "RELCTL_TOPIC_PREFIX": self.settings.topic_prefix,
               "RELCTL_DATA_DIR": str(self.settings.data_dir.resolve()),
               "RELCTL_EVALUATION_PARTITIONS": str(self.settings.evaluation_partitions),
               "RELCTL_CONTROL_PARTITIONS": str(self.settings.control_partitions)}
        log_path = self.settings.data_dir.resolve() / "worker.log"
        for number in range(self.workers):
            if self.settings.worker_metrics_port:  # one metrics port per worker
                env["RELCTL_WORKER_METRICS_PORT"] = str(self.settings.worker_metrics_port + number)
            with open(log_path, "ab") as log:
                self.worker_processes.append(subprocess.Popen(
                    [sys.executable, "-m", "relctl.entrypoints.cli", "worker"], env=env,
                    stdout=log, stderr=log))
            self.say(f"guard worker {number + 1} started (log: {log_path})")

    def stop_workers(self) -> None:
        for process in self.worker_processes:
            process.terminate()
        for process in self.worker_processes:
            wait_or_kill(process, 15)
        self.worker_processes = []

    def stop_services(self) -> None:
        self.stop_workers()
        if self.runtime is not None:
            with contextlib.suppress(Exception):
                self.runtime.close()
            self.runtime = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None

    async def serve(self) -> None:
        settings = self.start_services()
        self.runtime = runtime = bootstrap(settings)
        ensure_admin_token(runtime, settings.data_dir.resolve(), self.say)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        relay = runtime.relay if self.relay else None

        def wake() -> None:
            if relay is not None:
                loop.call_soon_threadsafe(relay.wake)

        await ensure_topics(settings.kafka_bootstrap or "", topic_specs(settings))
        self.start_workers()
        commands = CommandConsumer(runtime.app, settings, on_change=wake)
        api = self.api_factory(runtime, wake)
        server = ApiServer(uvicorn.Config(
            api, host=settings.api_host, port=settings.api_port, log_level="warning",
            access_log=False, lifespan="off"))
        tasks = [asyncio.create_task(server.serve(), name="api")]
        if relay:
            tasks.append(asyncio.create_task(relay.run(stop), name="relay"))
        tasks.append(asyncio.create_task(commands.run(stop), name="commands"))
        self.say(f"relctl API on http://{settings.api_host}:{settings.api_port} "
                 "(OpenAPI at /docs); Ctrl-C stops everything")
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception():
                logger.error("component %s failed: %s", task.get_name(), task.exception())
        stop.set()
        server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        waiter.cancel()
        self.say("relctl stopped")


def _exit_on_sigterm() -> None:
    """Until the event loop installs its own handlers, SIGTERM unwinds like Ctrl-C, so a stop
    during start-up still runs the ``finally`` that stops the embedded services."""

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def run_up(settings: Settings, api_factory: ApiFactory, workers: int = 1,
           relay: bool = True) -> None:
    """Run the whole stack in the foreground; ``api_factory`` builds the HTTP app (the
    entry-point layer owns it, so infra does not import the layer above it)."""
    _exit_on_sigterm()
    stack = Stack(settings, api_factory, workers=workers, relay=relay)
    try:
        asyncio.run(stack.serve())
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop_services()


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

    if not settings.kafka_bootstrap:
        stack_file = settings.data_dir / "stack.json"
        if stack_file.exists():  # next to a running `relctl up` on the embedded default
            stack = json.loads(stack_file.read_text())
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
    Worker(guard.app, loglevel="WARNING", quiet=True).execute_from_commandline()
