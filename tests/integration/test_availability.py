"""Availability: a slow or huge command never blocks a concurrent small one.

The regression behind these tests: a command whose event was bigger than the socket's send
buffer (a 1 MB reason) stalled inside the write transaction, holding the events table's lock,
and every later write on any aggregate waited behind it.
"""

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from relctl.adapters.config import Settings
from relctl.entrypoints.api.limits import MAX_COMMAND_BODY_BYTES
from relctl.infra.bootstrap import Runtime

from tests.integration.conftest import SPEC, Server
from tests.integration.test_api import ok

pytestmark = pytest.mark.integration

BIG_PROMPT = "Score the call. " * 12_000  # 192,000 characters: an event of about 200 KB


def test_big_events_are_stored_while_small_commands_go_on(server: Server,
                                                         runtime: Runtime) -> None:
    results: dict[str, Any] = {}

    def big() -> None:
        with server.client() as client:
            results["big"] = [client.post("/v1/releases", json={
                "task": f"big{i}", "reason": "a long prompt",
                "spec": {**SPEC, "prompt_template": BIG_PROMPT}}).status_code for i in range(3)]

    thread = threading.Thread(target=big)
    thread.start()
    with server.client() as small:
        statuses = [small.post("/v1/tenants", json={"key": f"t{i}", "reason": "onboard"})
                    .status_code for i in range(10)]
    thread.join(60)
    assert not thread.is_alive(), "the big commands finished"
    assert statuses == [201] * 10
    assert results["big"] == [201, 201, 201]
    stored = runtime.app.release("big2", 1)
    assert stored.content["prompt_template"] == BIG_PROMPT


def test_the_event_store_bounds_how_long_a_write_waits_for_the_lock(settings: Settings) -> None:
    env = settings.eventsourcing_env()
    assert int(env["POSTGRES_LOCK_TIMEOUT"]) > 0
    assert int(env["POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"]) > 0
    assert env["APPLICATION_RECORDER_TOPIC"] == "relctl.adapters.postgres:EventRecorder"


def test_an_oversized_command_is_refused_before_its_body_is_read(server: Server) -> None:
    request = (
        "POST /v1/tenants/acme/flags/enable_blueprints HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {server.admin_token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 20000000\r\n\r\n"
        '{"enabled": true, "reason": "'
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(request)  # 20 MB announced, a few bytes sent: the answer comes anyway
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"payload_too_large"' in body and str(MAX_COMMAND_BODY_BYTES).encode() in body


def test_a_slow_upload_does_not_hold_up_other_commands(server: Server) -> None:
    small_done = threading.Event()
    outcome: dict[str, Any] = {}

    def slow_body() -> Iterator[bytes]:
        yield b'{"enabled": true, "reason": "'
        # the upload stays open, unfinished, until a small command has been served
        small_done.wait(60)
        yield b"slow upload" + b'"}'

    def slow() -> None:
        with server.client() as client:
            outcome["slow"] = client.post(
                "/v1/tenants/acme/flags/enable_blueprints", content=slow_body(),
                headers={"Content-Type": "application/json"}).status_code

    with server.client() as api:
        ok(api.post("/v1/tenants", json={"key": "acme", "reason": "onboard"}), 201)
        thread = threading.Thread(target=slow)
        thread.start()
        try:
            small = api.post("/v1/tenants", json={"key": "other", "reason": "onboard"})
            outcome["small"] = small.status_code
        finally:
            small_done.set()
        thread.join(60)
    assert outcome == {"small": 201, "slow": 200}


def test_a_chunked_body_over_the_limit_gets_413(server: Server) -> None:
    def endless() -> Iterator[bytes]:
        yield b'{"enabled": true, "reason": "'
        for _ in range(MAX_COMMAND_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536

    with server.client() as api:
        response = api.post("/v1/tenants/acme/flags/enable_blueprints", content=endless(),
                            headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert ok(api.get("/healthz")) == {"status": "ok"}
