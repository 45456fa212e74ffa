"""Running the read models: beside the API in ``relctl up``, or alone in ``relctl project``."""

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from relctl.adapters.config import Settings
from relctl.application.service import ControlPlane
from relctl.domain.read_models import ProjectionName, ReplayReport
from relctl.projections.alerts import AlertProjector
from relctl.projections.runner import ProjectorSet, replay
from relctl.projections.views import ResolutionListener

logger = logging.getLogger(__name__)
ONCE_SECONDS = 60.0  # relctl project --once: how long the alerts projection may take


@dataclass
class RunningProjectors:
    """A projector loop in a background thread; ``stop`` ends it."""

    projectors: ProjectorSet
    thread: threading.Thread
    stop_event: threading.Event

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)
        self.projectors.close()


def start_projectors(app: ControlPlane, settings: Settings, idle_wait: float = 1.0,
                     listener: ResolutionListener | None = None) -> RunningProjectors:
    """Start the projectors in a daemon thread (what ``relctl up`` runs beside the API);
    ``listener`` receives every committed change of the resolution read model."""
    if not settings.database_url:
        raise RuntimeError("the projectors need settings.database_url")
    projectors = ProjectorSet(app, settings.database_url, settings.database_schema,
                              listener=listener).open()
    stop = threading.Event()
    thread = threading.Thread(target=projectors.run, args=(stop,),
                              kwargs={"idle_wait": idle_wait}, name="relctl-projectors",
                              daemon=True)
    thread.start()
    return RunningProjectors(projectors, thread, stop)


def alert_projector(settings: Settings) -> AlertProjector | None:
    """The alerts read model's consumer, when there is a broker to consume from."""
    if not settings.database_url or not settings.kafka_bootstrap:
        return None
    return AlertProjector(settings.database_url, settings.database_schema,
                          settings.kafka_bootstrap, settings.topic("alerts"))


@contextlib.contextmanager
def alerts_beside(settings: Settings, stop: threading.Event, once: bool) -> Iterator[None]:
    """``relctl project``: the alerts projection in a thread of its own (it is asyncio)."""
    projector = alert_projector(settings)
    if projector is None:
        yield
        return
    if once:
        try:
            asyncio.run(asyncio.wait_for(projector.catch_up(), ONCE_SECONDS))
        except Exception as exc:
            logger.warning("alerts projection did not catch up: %s", exc)
        projector.close()
        yield
        return
    thread = threading.Thread(target=lambda: asyncio.run(projector.run(stop)),
                              name="relctl-alerts", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def drop_alerts(settings: Settings) -> None:
    """Drop the alerts read model, so it is consumed again from the start of ``relctl.alerts``
    (all the topic still retains: alerts past its retention are gone from the rebuild)."""
    projector = alert_projector(settings)
    if projector is not None:
        try:
            projector.drop()
        finally:
            projector.close()


def run_projectors(settings: Settings, rebuild: list[ProjectionName] | None = None,
                   once: bool = False, rebuild_alerts: bool = False) -> int:
    """``relctl project``: (optionally rebuild, then) project until SIGINT/SIGTERM, or once."""
    if not settings.database_url:
        raise SystemExit("relctl project needs RELCTL_DATABASE_URL")
    if rebuild_alerts:
        drop_alerts(settings)
    app = ControlPlane(env=settings.eventsourcing_env())
    stop = threading.Event()
    try:
        with ProjectorSet(app, settings.database_url, settings.database_schema) as projectors:
            if rebuild is not None:
                projectors.drop(rebuild or None)
            if once:
                with alerts_beside(settings, stop, once=True):
                    return projectors.catch_up()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            with alerts_beside(settings, stop, once=False):
                projectors.run(stop)
            return projectors.position()
    finally:
        app.close()


def replay_projections(settings: Settings, names: list[ProjectionName] | None,
                       on_progress: Callable[[int, int], None], keep: bool = False
                       ) -> ReplayReport:
    """``relctl replay``: rebuild read models aside and compare them with the live ones."""
    if not settings.database_url:
        raise SystemExit("relctl replay needs RELCTL_DATABASE_URL")
    app = ControlPlane(env=settings.eventsourcing_env())
    try:
        return replay(app, settings.database_url, settings.database_schema, names,
                      on_progress, keep)
    finally:
        app.close()
