"""The Alertmanager webhook sender against a local HTTP server speaking Alertmanager's API."""

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from relctl.adapters.alertmanager import AlertmanagerSender

pytestmark = pytest.mark.integration


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        Receiver.received.append((self.path, json.loads(self.rfile.read(length))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture
def alertmanager() -> Iterator[str]:
    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fired_and_resolved_alerts_are_posted_as_one_label_set(alertmanager: str) -> None:
    fired = {"kind": "fired", "rule": "llm-error-rate", "scope": "release|csat|2",
             "severity": "critical", "task": "csat", "summary": "LLM error rate > 1%",
             "at": "2026-11-21T10:00:00+00:00", "fired_at": "2026-11-21T10:00:00+00:00",
             "evidence": {"value": 0.03, "samples": 500}}
    resolved = {**fired, "kind": "resolved", "at": "2026-11-21T10:20:00+00:00"}

    async def send() -> None:
        sender = AlertmanagerSender(alertmanager)
        await sender.send([fired])
        await sender.send([resolved])
        await sender.close()

    asyncio.run(send())
    assert [path for path, _ in Receiver.received] == ["/api/v2/alerts"] * 2
    first, second = Receiver.received[0][1][0], Receiver.received[1][1][0]
    assert first["labels"] == second["labels"] == {
        "alertname": "llm-error-rate", "scope": "release|csat|2", "severity": "critical",
        "source": "relctl", "task": "csat"}
    assert first["startsAt"] == "2026-11-21T10:00:00+00:00" and "endsAt" not in first
    assert second["endsAt"] == "2026-11-21T10:20:00+00:00"
    assert "0.03" in first["annotations"]["evidence"]


def test_an_unreachable_alertmanager_does_not_raise() -> None:
    async def send() -> None:
        sender = AlertmanagerSender("http://127.0.0.1:9")  # nothing listens on the discard port
        await sender.send([{"kind": "fired", "rule": "x", "scope": "release|t|1"}])
        await sender.close()

    asyncio.run(send())
