"""The API with the projectors running beside it (as in ``relctl up``), for the read-side
feature tests: roles in audit rows, reset plans, release notes, alerts, the console."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from relctl.infra.bootstrap import Runtime
from relctl.projections.runner import ProjectorSet

from tests.integration.conftest import Server

# The read-side tests' name for the API server they talk to (it has the projectors beside it).
ReadStack = Server


@contextmanager
def projecting(runtime: Runtime) -> Iterator[ProjectorSet]:
    """The projectors following the store in a background thread, until the block ends."""
    settings = runtime.settings
    assert settings.database_url
    projectors = ProjectorSet(runtime.app, settings.database_url, settings.database_schema)
    projectors.open()
    stop = threading.Event()
    thread = threading.Thread(target=projectors.run, args=(stop,), kwargs={"idle_wait": 0.2})
    thread.start()
    try:
        yield projectors
    finally:
        stop.set()
        thread.join(30)
        projectors.close()


@contextmanager
def read_stack(runtime: Runtime) -> Iterator[ReadStack]:
    """The real API on a loopback port, with the projectors running beside it."""
    with projecting(runtime):
        server = Server(runtime)
        server.start()
        try:
            yield server
        finally:
            server.stop()
