"""The control state behind ``/v1/resolve``: the resolution read model, and the old fold.

``CurrentResolutions`` is an in-memory copy of the resolution read model's current intervals,
kept by an in-process projector (``relctl up``): the projector hands it every committed batch
(and the whole table when it loads), so an answer is a dictionary lookup, and a caller waits
only until the copy has reached the store's head (read-your-writes).

``ControlState`` also keeps the original fold: it follows the notification log and applies
each event to in-memory aggregates, catching up before every resolution. An API process with no
projector beside it (a bare test server) still answers from it, and the resolve benchmark
measures it as the baseline. Resolving "as of" an instant folds the events recorded up to then.
"""

import hashlib
import threading
import time
from datetime import UTC, datetime
from typing import Any

from relctl.adapters import hop_trace
from relctl.application.service import ControlPlane
from relctl.domain.hops import Hop
from relctl.domain.resolution import ControlView, Resolution, resolve
from relctl.projections.views import Pair, Published, ResolutionListener, canonical

BATCH = 1000


def etag_of(body: bytes) -> str:
    """The version stamp of an answer: the same hash the resolution read model stores."""
    return hashlib.sha256(body).hexdigest()[:20]


class CurrentResolutions(ResolutionListener):
    """Each pair's current (and known future) intervals, as the projector committed them."""

    def __init__(self) -> None:
        self._pairs: Published = {}
        self.position = 0
        self.loaded = False
        self._changed = threading.Condition()

    def replace(self, current: Published, position: int) -> None:
        # The position may go back: the view was dropped and is being rebuilt.
        with self._changed:
            self._pairs = dict(current)
            self.position = position
            self.loaded = True

    def update(self, changed: Published, position: int) -> None:
        with self._changed:
            self._pairs.update(changed)
            self.position = max(self.position, position)
            self._changed.notify_all()
        if hop_trace.enabled():
            for _, task in changed:
                hop_trace.mark(Hop.READ_MODEL, task)

    def wait_for(self, position: int, timeout: float) -> bool:
        """Wait until every event up to ``position`` is in the copy; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (self.loaded and self.position >= position):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def get(self, tenant: str, task: str, at: datetime) -> tuple[bytes, str] | None:
        """The answer (canonical JSON) and ETag of the interval containing ``at``, if known."""
        pair: Pair = (tenant, task)
        for start, end, body, etag in self._pairs.get(pair, ()):
            if start <= at and (end is None or end > at):
                return body, etag
        return None


class ControlState:
    def __init__(self, app: ControlPlane) -> None:
        self.app = app
        self.view = ControlView()
        self.events: list[Any] = []
        self.position = 0
        self._lock = threading.Lock()
        # Set when a projector runs in this process and keeps the copy current.
        self.current: CurrentResolutions | None = None

    def projected(self) -> CurrentResolutions:
        """The in-memory copy for an in-process projector to keep (``/v1/resolve`` then
        answers from the resolution read model)."""
        if self.current is None:
            self.current = CurrentResolutions()
        return self.current

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

    def resolve_body(self, tenant: str, task: str, at: datetime | None = None
                     ) -> tuple[bytes, str]:
        """The fold's answer as canonical JSON, with its ETag."""
        body = canonical(self.resolve(tenant, task, at).as_dict())
        return body, etag_of(body)
