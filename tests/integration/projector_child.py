"""A projector process for the SIGKILL test: ``python -m tests.integration.projector_child``."""

import sys
import threading

from relctl.adapters.config import Settings
from relctl.application.service import ControlPlane
from relctl.projections.runner import ProjectorSet


def main() -> None:
    url, schema, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    app = ControlPlane(env=Settings(database_url=url, database_schema=schema).eventsourcing_env())
    with ProjectorSet(app, url, schema, batch_size=batch) as projectors:
        projectors.run(threading.Event(), idle_wait=0.2)


if __name__ == "__main__":
    main()
