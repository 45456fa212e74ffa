"""One bootstrap: wires the real adapters; the app, the CLI's ``up`` and the tests all use it."""

from dataclasses import dataclass

from relctl.adapters.config import Settings
from relctl.adapters.postgres import Database, RelayPositions, TokenStore
from relctl.adapters.relay import Relay
from relctl.application.service import ControlPlane
from relctl.projections.control_state import ControlState


@dataclass
class Runtime:
    settings: Settings
    app: ControlPlane
    db: Database
    tokens: TokenStore
    positions: RelayPositions
    state: ControlState
    relay: Relay | None

    def close(self) -> None:
        self.db.close()
        self.app.close()


def bootstrap(settings: Settings) -> Runtime:
    """Connect to the configured PostgreSQL (and broker, if any) and build every component."""
    if not settings.database_url:
        raise RuntimeError("bootstrap needs settings.database_url (relctl up starts one)")
    db = Database(settings.database_url, settings.database_schema)
    db.open()
    app = ControlPlane(env=settings.eventsourcing_env())
    positions = RelayPositions(db)
    relay = Relay(app, positions, settings) if settings.kafka_bootstrap else None
    return Runtime(
        settings=settings, app=app, db=db, tokens=TokenStore(db), positions=positions,
        state=ControlState(app), relay=relay,
    )
