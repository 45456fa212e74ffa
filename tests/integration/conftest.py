import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from relctl.adapters.config import Settings
from relctl.entrypoints.api.app import create_api
from relctl.infra.bootstrap import Runtime, bootstrap
from relctl.infra.embedded import free_port

from bench.harness import SPEC, ControlPlaneThread, WorkerProcess
from tests.conftest import wait_until

# Re-exported: the integration tests import SPEC from here (it lives in bench.harness).
__all__ = ["SPEC", "Server"]

pytestmark = pytest.mark.integration


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    instance = bootstrap(settings)
    yield instance
    instance.close()


@pytest.fixture
def plane(runtime: Runtime) -> Iterator[ControlPlaneThread]:
    """The relay and command consumer in a thread: what turns guard decisions into events."""
    control = ControlPlaneThread(runtime).start()
    yield control
    control.stop()


@pytest.fixture
def worker(runtime: Runtime, tmp_path: Path, plane: ControlPlaneThread) -> Iterator[WorkerProcess]:
    """A guard worker subprocess (started by the test), beside a running control plane."""
    process = WorkerProcess(runtime, tmp_path)
    yield process
    process.stop()


class Server:
    """The real API served by uvicorn on a loopback port, in a background thread."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = runtime.tokens.create("root", "admin", created_by="tests")
        self.server = uvicorn.Server(uvicorn.Config(
            create_api(runtime), host="127.0.0.1", port=self.port, log_level="warning",
            lifespan="off"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()),
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=10, what="uvicorn start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def token(self, actor: str, role: str, tenants: tuple[str, ...] = ()) -> str:
        return self.runtime.tokens.create(actor, role, created_by="tests", tenants=tenants)


@pytest.fixture
def server(runtime: Runtime) -> Iterator[Server]:
    instance = Server(runtime)
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client
