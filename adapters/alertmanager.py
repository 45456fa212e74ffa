"""An Alertmanager-compatible webhook sender (``POST /api/v2/alerts``).

Enabled by ``RELCTL_ALERTMANAGER_URL``. Alertmanager de-duplicates on the label set, so the
labels carry the rule and scope; a resolved alert is the same label set with ``endsAt``.
"""

import logging
from typing import Any

import httpx
from relctl.domain.alerts import AlertKind

logger = logging.getLogger(__name__)


def to_alertmanager(alert: dict[str, Any]) -> dict[str, Any]:
    labels = {"alertname": str(alert.get("rule", "relctl")), "scope": str(alert.get("scope")),
              "severity": str(alert.get("severity", "warning")), "source": "relctl"}
    if alert.get("task"):
        labels["task"] = str(alert["task"])
    body: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": str(alert.get("summary") or alert.get("reason") or ""),
                        "evidence": str(alert.get("evidence"))},
        "startsAt": alert.get("fired_at") or alert.get("at"),
    }
    if alert.get("kind") == AlertKind.RESOLVED:
        body["endsAt"] = alert.get("at")
    return body


class AlertmanagerSender:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.client = httpx.AsyncClient(timeout=5)

    async def send(self, alerts: list[dict[str, Any]]) -> None:
        try:
            response = await self.client.post(self.url, json=[to_alertmanager(a) for a in alerts])
            response.raise_for_status()
        except httpx.HTTPError as exc:  # alert delivery must never stop the guard
            logger.warning("alertmanager webhook failed: %s", exc)

    async def close(self) -> None:
        await self.client.aclose()
