"""An alerts projector process for the SIGKILL test (``-m tests.integration.alerts_child``)."""

import asyncio
import sys
import threading

from relctl.projections.alerts import AlertProjector


def main() -> None:
    url, schema, bootstrap, topic, batch = sys.argv[1:6]
    projector = AlertProjector(url, schema, bootstrap, topic, batch_size=int(batch))
    asyncio.run(projector.run(threading.Event(), poll_ms=100))


if __name__ == "__main__":
    main()
