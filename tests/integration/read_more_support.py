"""The API with the projectors running beside it (as in ``relctl up``), for the read-side
feature tests: roles in audit rows, reset plans, release notes, alerts."""

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from relctl.entrypoints.api.app import create_api
from relctl.infra.bootstrap import Runtime
from relctl.infra.embedded import free_port
from relctl.projections.runner import ProjectorSet

from tests.conftest import wait_until


@dataclass
class ReadStack:
    runtime: Runtime
    url: str
    admin_token: str

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers={
            "Authorization": f"Bearer {token or self.admin_token}"})

    def token(self, actor: str, role: str, tenants: tuple[str, ...] = ()) -> str:
        return self.runtime.tokens.create(actor, role, created_by="tests", tenants=tenants)


@contextmanager
def read_stack(runtime: Runtime) -> Iterator[ReadStack]:
    settings = runtime.settings
    assert settings.database_url
    projectors = ProjectorSet(runtime.app, settings.database_url, settings.database_schema)
    projectors.open()
    stop = threading.Event()
    thread = threading.Thread(target=projectors.run, args=(stop,), kwargs={"idle_wait": 0.2})
    thread.start()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_api(runtime), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    serving = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    serving.start()
    try:
        wait_until(lambda: server.started, timeout=10, what="uvicorn start")
        yield ReadStack(runtime, f"http://127.0.0.1:{port}",
                        runtime.tokens.create("root", "admin", created_by="tests"))
    finally:
        server.should_exit = True
        serving.join(10)
        stop.set()
        thread.join(30)
        projectors.close()
