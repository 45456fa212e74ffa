"""Settings from the environment (``RELCTL_...``), with the embedded default when unset.

With neither ``RELCTL_DATABASE_URL`` nor ``RELCTL_KAFKA_BOOTSTRAP`` set, ``relctl up`` starts a
private PostgreSQL and a Kafka-protocol broker itself; with them set, the same code runs against
any PostgreSQL and any Kafka cluster.
"""

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

WRITE_LOCK_TIMEOUT_SECONDS = 5


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".relctl")
    database_url: str | None = None
    database_schema: str = "relctl"
    kafka_bootstrap: str | None = None
    topic_prefix: str = "relctl"
    control_partitions: int = 4
    # relctl.commands: one partition, so the control plane's single consumer-group member
    # fetches one partition (see adapters/commands.py for why that is faster on the broker).
    command_partitions: int = 1
    evaluation_partitions: int = 4
    api_host: str = "127.0.0.1"
    api_port: int = 8750
    relay_batch_size: int = 500
    relay_check_interval: float = 2.0
    alert_rules_file: str | None = None
    alertmanager_url: str | None = None
    worker_metrics_port: int | None = None
    fetch_max_wait_ms: int = 10
    # The wait of a consumer on the decision path once it has been idle (adapters/fetch_wait.py).
    fetch_idle_wait_ms: int = 50
    # ... and once no rollout has been guarded for a while (no decision can come).
    fetch_quiet_wait_ms: int = 1000
    unknown_release_grace_seconds: float = 10.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides: Any) -> "Settings":
        settings = cls(
            data_dir=Path(os.environ.get("RELCTL_DATA_DIR", ".relctl")),
            database_url=os.environ.get("RELCTL_DATABASE_URL") or None,
            database_schema=os.environ.get("RELCTL_DATABASE_SCHEMA", "relctl"),
            kafka_bootstrap=os.environ.get("RELCTL_KAFKA_BOOTSTRAP") or None,
            topic_prefix=os.environ.get("RELCTL_TOPIC_PREFIX", "relctl"),
            control_partitions=_int("RELCTL_CONTROL_PARTITIONS", 4),
            command_partitions=_int("RELCTL_COMMAND_PARTITIONS", 1),
            evaluation_partitions=_int("RELCTL_EVALUATION_PARTITIONS", 4),
            api_host=os.environ.get("RELCTL_API_HOST", "127.0.0.1"),
            api_port=_int("RELCTL_API_PORT", 8750),
            relay_batch_size=_int("RELCTL_RELAY_BATCH_SIZE", 500),
            alert_rules_file=os.environ.get("RELCTL_ALERT_RULES") or None,
            alertmanager_url=os.environ.get("RELCTL_ALERTMANAGER_URL") or None,
            worker_metrics_port=_int("RELCTL_WORKER_METRICS_PORT", 0) or None,
            fetch_max_wait_ms=_int("RELCTL_FETCH_MAX_WAIT_MS", 10),
            fetch_idle_wait_ms=_int("RELCTL_FETCH_IDLE_WAIT_MS", 50),
            fetch_quiet_wait_ms=_int("RELCTL_FETCH_QUIET_WAIT_MS", 1000),
            unknown_release_grace_seconds=float(
                os.environ.get("RELCTL_UNKNOWN_RELEASE_GRACE_SECONDS") or 10.0),
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **clean)

    def topic(self, name: str) -> str:
        """Topic names: ``<prefix>.<name>`` (``relctl.control``, ``relctl.evaluations`` ...)."""
        return f"{self.topic_prefix}.{name}"

    def eventsourcing_env(self) -> dict[str, str]:
        """The eventsourcing library's PostgreSQL settings derived from ``database_url``."""
        if not self.database_url:
            raise RuntimeError("no database configured")
        info = conninfo_to_dict(self.database_url)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(info.get("dbname", "postgres")),
            "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
            "POSTGRES_PORT": str(info.get("port", "5432")),
            "POSTGRES_USER": str(info.get("user", "postgres")),
            "POSTGRES_PASSWORD": str(info.get("password", "")),
            "POSTGRES_SCHEMA": self.database_schema,
            "POSTGRES_POOL_SIZE": "8",
            "POSTGRES_MAX_OVERFLOW": "8",
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_PRE_PING": "y",
            # A command waits at most this long (s) for the events table's write lock, and a
            # transaction left idle is ended by the server after this long: no request can
            # hold every other write up for longer.
            "POSTGRES_LOCK_TIMEOUT": str(WRITE_LOCK_TIMEOUT_SECONDS),
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": str(WRITE_LOCK_TIMEOUT_SECONDS),
            # relctl's recorder writes each decision without pipeline mode (see its docstring).
            "APPLICATION_RECORDER_TOPIC": "relctl.adapters.postgres:EventRecorder",
            "CREATE_TABLE": "y",
        }
