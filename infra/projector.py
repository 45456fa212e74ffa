"""Running the read models: beside the API in ``relctl up``, or alone in ``relctl project``."""

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

from relctl.adapters.config import Settings
from relctl.application.service import ControlPlane
from relctl.domain.read_models import ProjectionName, ReplayReport
from relctl.projections.runner import ProjectorSet, replay
from relctl.projections.views import ResolutionListener


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


def run_projectors(settings: Settings, rebuild: list[ProjectionName] | None = None,
                   once: bool = False) -> int:
    """``relctl project``: (optionally rebuild, then) project until SIGINT/SIGTERM, or once."""
    if not settings.database_url:
        raise SystemExit("relctl project needs RELCTL_DATABASE_URL")
    app = ControlPlane(env=settings.eventsourcing_env())
    stop = threading.Event()
    try:
        with ProjectorSet(app, settings.database_url, settings.database_schema) as projectors:
            if rebuild is not None:
                projectors.drop(rebuild or None)
            if once:
                return projectors.catch_up()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
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
