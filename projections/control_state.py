"""The control-state read model behind ``/v1/resolve``.

It follows the notification log (total order) and applies each event to in-memory aggregates,
catching up before every resolution so a caller reads its own writes even across API
processes. Resolving "as of" an earlier instant folds only the events recorded up to then:
control events are few (thousands, not millions), so keeping them in memory is cheap, and the
fold is the same pure code the live view uses.
"""

import threading
from datetime import UTC, datetime
from typing import Any

from relctl.application.service import ControlPlane
from relctl.domain.resolution import ControlView, Resolution, resolve

BATCH = 1000


class ControlState:
    def __init__(self, app: ControlPlane) -> None:
        self.app = app
        self.view = ControlView()
        self.events: list[Any] = []
        self.position = 0
        self._lock = threading.Lock()

    def catch_up(self) -> int:
        """Apply every event stored since the last call; return how many were applied."""
        applied = 0
        with self._lock:
            while True:
                notifications = self.app.recorder.select_notifications(
                    start=self.position + 1, limit=BATCH)
                for notification in notifications:
                    domain_event = self.app.mapper.to_domain_event(notification)
                    self.view.apply(domain_event)
                    self.events.append(domain_event)
                    self.position = notification.id
                applied += len(notifications)
                if len(notifications) < BATCH:
                    return applied

    def view_at(self, at: datetime) -> ControlView:
        """The state as it was at ``at``: a fold of the events recorded up to then."""
        view = ControlView()
        with self._lock:
            events = list(self.events)
        for domain_event in events:
            if domain_event.timestamp <= at:
                view.apply(domain_event)
        return view

    def resolve(self, tenant: str, task: str, at: datetime | None = None) -> Resolution:
        self.catch_up()
        now = datetime.now(UTC)
        if at is None or at >= now:
            with self._lock:
                return resolve(self.view, tenant, task, at or now)
        return resolve(self.view_at(at), tenant, task, at)
