"""The guard-state table: a changelogged Faust table behind the guard's StateStore."""

from typing import Any

from relctl.adapters.config import Settings
from relctl.adapters.kafka import TopicSpec

TABLE_NAME = "guard-state"


def guard_table(app: Any, partitions: int) -> Any:
    """The table (co-partitioned with the evaluations and partials topics)."""
    return app.Table(TABLE_NAME, default=None, partitions=partitions, key_type=bytes,
                     value_type=bytes)


def changelog_spec(app: Any, table: Any, settings: Settings) -> TopicSpec:
    """The table's changelog topic, created up front like every other topic."""
    changelog = f"{app.conf.id}-{table.name}-changelog"
    return TopicSpec(changelog, settings.evaluation_partitions, compact=True)


class TableStore:
    """The guard's StateStore backed by a changelogged Faust table (recovered on restart)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str) -> bytes | None:
        value = self.table.get(key.encode())
        return bytes(value) if value is not None else None

    def set(self, key: str, value: bytes) -> None:
        self.table[key.encode()] = value

    def delete(self, key: str) -> None:
        if key.encode() in self.table:
            del self.table[key.encode()]

    def keys(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix`` (a scan of this worker's partitions: used when a
        scope is loaded after a start or rebalance, not per evaluation)."""
        wanted = prefix.encode()
        return [bytes(key).decode() for key in list(self.table.keys())
                if bytes(key).startswith(wanted)]
