"""Store -> relay -> relctl.control against the real PostgreSQL and the real broker."""

import asyncio
import os
import signal
import subprocess
import sys
import threading

import pytest
from relctl.adapters.config import Settings
from relctl.adapters.relay import Relay
from relctl.infra.bootstrap import Runtime
from relctl.infra.embedded import EmbeddedBroker

from tests.conftest import wait_until
from tests.integration.kafka_helpers import first_seen_ids_by_key, read_topic

pytestmark = pytest.mark.integration


def store_ids_by_aggregate(runtime: Runtime) -> dict[str, list[str]]:
    notifications = runtime.app.recorder.select_notifications(start=1, limit=100_000)
    by_key: dict[str, list[str]] = {}
    for n in notifications:
        event_id = f"{n.originator_id}:{n.originator_version}"
        by_key.setdefault(str(n.originator_id), []).append(event_id)
    return by_key


def make_events(runtime: Runtime, tenants: int, prefix: str = "tn") -> None:
    for i in range(tenants):
        runtime.app.register_tenant(f"{prefix}{i}", "", "general", "tests", "seed data")
        runtime.app.flip_flag(f"{prefix}{i}", "enable_blueprints", True, "tests", "seed data")


class RelayThread:
    """The in-process relay, run on its own event loop in a thread."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.stop_event = asyncio.Event()
            await self.relay.run(self.stop_event)
        self.loop.run_until_complete(main())
        self.loop.close()

    def __enter__(self) -> "RelayThread":
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(15)


def test_every_stored_event_reaches_the_topic_in_order_with_its_id(runtime: Runtime) -> None:
    make_events(runtime, 30)
    expected = store_ids_by_aggregate(runtime)
    total = sum(len(v) for v in expected.values())
    assert runtime.relay is not None
    with RelayThread(runtime.relay):
        wait_until(lambda: runtime.relay.published >= total, what="relay to publish")  # type: ignore[union-attr]
    settings = runtime.settings
    records = read_topic(settings.kafka_bootstrap or "", settings.topic("control"),
                         settings.control_partitions, total)
    assert first_seen_ids_by_key(records) == expected
    sample = records[0]
    assert sample["specversion"] == "1.0"
    assert sample["type"].startswith("io.relctl.tenant.") and sample["type"].endswith(".v1")
    assert sample["subject"] == sample["_key"]
    assert sample["data"]["actor"] == "tests" and sample["data"]["schema_version"] == 1


@pytest.fixture
def relay_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "RELCTL_DATABASE_URL": settings.database_url or "",
        "RELCTL_DATABASE_SCHEMA": settings.database_schema,
        "RELCTL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "RELCTL_TOPIC_PREFIX": settings.topic_prefix,
        "RELCTL_RELAY_BATCH_SIZE": "20",
    })
    return env


def _start_relay_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "relctl.entrypoints.cli", "relay"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_relay_killed_mid_stream_resumes_with_nothing_missing(
    runtime: Runtime, relay_env: dict[str, str],
) -> None:
    make_events(runtime, 400)
    expected = store_ids_by_aggregate(runtime)
    total = sum(len(v) for v in expected.values())
    positions = runtime.positions

    process = _start_relay_process(relay_env)
    try:
        wait_until(lambda: positions.load("control")[1] >= 100, what="relay to get going")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    _, published_at_kill = positions.load("control")
    assert published_at_kill < total, "the relay finished before it was killed; nothing tested"

    process = _start_relay_process(relay_env)
    try:
        wait_until(lambda: positions.load("control")[1] >= total, timeout=30,
                   what="restarted relay to catch up")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    settings = runtime.settings
    records = read_topic(settings.kafka_bootstrap or "", settings.topic("control"),
                         settings.control_partitions, total)
    assert first_seen_ids_by_key(records) == expected
    duplicates = len(records) - total
    seen = {(r["_partition"], r["_offset"]) for r in records}
    assert len(seen) == len(records), "the reader saw an offset twice"
    assert 0 <= duplicates <= 20, "at most the last unconfirmed batch is repeated"


def test_broker_restarted_empty_gets_control_events_republished(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from dataclasses import replace

    from relctl.infra.bootstrap import bootstrap

    own_broker = EmbeddedBroker(log_path=tmp_path_factory.mktemp("b") / "broker.log")
    own_broker.start()
    runtime = bootstrap(replace(settings, kafka_bootstrap=own_broker.bootstrap))
    try:
        make_events(runtime, 10)
        expected = store_ids_by_aggregate(runtime)
        total = sum(len(v) for v in expected.values())
        assert runtime.relay is not None
        with RelayThread(runtime.relay):
            wait_until(lambda: runtime.relay.published >= total, what="first publication")  # type: ignore[union-attr]
            own_broker.restart()
            wait_until(lambda: runtime.relay.republishes == 1,  # type: ignore[union-attr]
                       what="relay to notice the empty broker")
            make_events(runtime, 2, prefix="late")
            expected = store_ids_by_aggregate(runtime)
            total = sum(len(v) for v in expected.values())
            wait_until(lambda: runtime.relay.published >= total, timeout=30,  # type: ignore[union-attr]
                       what="republication")
        records = read_topic(own_broker.bootstrap, settings.topic("control"),
                             settings.control_partitions, total)
        assert first_seen_ids_by_key(records) == expected
    finally:
        runtime.close()
        own_broker.stop()
