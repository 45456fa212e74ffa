"""Faust's aiokafka transport with adaptive fetch waits.

Faust hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer. On a broker that does not
answer a waiting fetch as soon as data arrives (the embedded Tansu broker holds a fetch naming
several partitions for a good part of its wait), that wait is added to every hop and the guard
reacts in seconds instead of milliseconds; a short wait on an idle worker, though, keeps the
broker answering empty fetches. This transport's worker consumer uses a short wait while
records flow and a longer one once it has been idle for a moment
(:class:`~relctl.adapters.fetch_wait.AdaptiveFetchWait`). The broker URL scheme
``relctl-kafka://`` selects it; everything else is Faust's own.
"""

from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from relctl.adapters.fetch_wait import QUIET_WAIT_MS, AdaptiveFetchWait, Quiet

SCHEME = "relctl-kafka"


class LowLatencyConsumerThread(AIOKafkaConsumerThread):
    fetch_max_wait_ms = 10
    fetch_idle_wait_ms = 10
    quiet: Quiet | None = None
    fetch_quiet_wait_ms = QUIET_WAIT_MS

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms  # read by aiokafka at start()
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        AdaptiveFetchWait(self.fetch_max_wait_ms, self.fetch_idle_wait_ms,
                          name="worker", quiet=self.quiet,
                          quiet_ms=self.fetch_quiet_wait_ms).install(self._consumer)


class LowLatencyConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return LowLatencyConsumerThread(self, loop=self.loop, beacon=self.beacon)


class LowLatencyTransport(Transport):
    Consumer = LowLatencyConsumer
    default_port = 9092
    driver_version = Transport.driver_version


def register(fetch_max_wait_ms: int = 10, fetch_idle_wait_ms: int | None = None,
             quiet: Quiet | None = None, fetch_quiet_wait_ms: int = QUIET_WAIT_MS) -> str:
    """Make ``relctl-kafka://`` resolve to this transport; returns the scheme.

    ``fetch_max_wait_ms`` is the wait while records flow, ``fetch_idle_wait_ms`` (default: the
    same) the wait once the worker has been idle; see the README's "Idle CPU" for what each
    costs in latency and CPU. With ``quiet`` the idle worker waits longer still while no
    rollout is guarded."""
    LowLatencyConsumerThread.quiet = quiet
    LowLatencyConsumerThread.fetch_quiet_wait_ms = fetch_quiet_wait_ms
    LowLatencyConsumerThread.fetch_max_wait_ms = fetch_max_wait_ms
    LowLatencyConsumerThread.fetch_idle_wait_ms = fetch_idle_wait_ms or fetch_max_wait_ms
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:LowLatencyTransport"
    return SCHEME
