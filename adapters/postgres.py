"""relctl's own PostgreSQL tables beside the event store: relay positions and API tokens.

Both live in the same schema as the events, so one database (and one backup) holds everything
relctl needs to resume: the relay's confirmed position and who may call the API. Tokens are
stored only as SHA-256 digests; the plaintext is shown once, when it is created.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from relctl.domain.base import text_problem
from relctl.domain.errors import NotFoundError, UnavailableError, ValidationError


class Role(StrEnum):
    """What a token may do: admin everything, operator commands, producer write evaluations
    and resolve for its tenants, auditor read."""

    ADMIN = "admin"
    OPERATOR = "operator"
    PRODUCER = "producer"
    AUDITOR = "auditor"


ROLES = tuple(r.value for r in Role)


class EventRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, writing each decision without psycopg's pipeline mode.

    The library sends LOCK TABLE, NOTIFY and the INSERT in one pipeline. With psycopg 3.3 a
    pipeline stops flushing once its command queue is empty, even when libpq still holds the
    rest of a message bigger than the socket's send buffer (about 200 KB over a unix socket),
    and then only waits to read: the server, holding the table's EXCLUSIVE lock, waits for the
    rest of the INSERT, and every later write waits behind it (a 1 MB reason did it). Plain
    statements in one transaction flush each message completely; the lock, the notification
    and the insert are the same, so readers still never pass over a gap.
    """

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Any, **kwargs: Any) -> Any:
        events: list[StoredEvent] = list(stored_events)
        with self.datastore.get_connection() as conn, conn.transaction(), \
                conn.cursor() as curs:
            self._insert_events(curs, events, **kwargs)
            if not events:
                return None
            self._insert_stored_events(curs, events, **kwargs)
            return self._fetch_ids_after_insert_events(curs, events, **kwargs)


class Database:
    """A small connection pool pinned to relctl's schema."""

    def __init__(self, url: str, schema: str, max_size: int = 4) -> None:
        self.schema = schema
        self.pool = ConnectionPool(
            url, min_size=1, max_size=max_size, open=False,
            kwargs={"autocommit": True, "row_factory": dict_row,
                    "options": f"-c search_path={schema}"},
        )

    def open(self) -> None:
        self.pool.open(wait=True, timeout=15)
        with self.pool.connection() as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(self.schema)))

    def close(self) -> None:
        self.pool.close()

    def execute(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        try:
            with self.pool.connection() as conn, conn.cursor() as cur:
                cur.execute(query, params)  # type: ignore[arg-type]
                return list(cur.fetchall()) if cur.description else []  # type: ignore[arg-type]
        except (psycopg.OperationalError, TimeoutError) as exc:
            raise UnavailableError(f"database unavailable: {exc}") from exc

    def ping(self) -> bool:
        try:
            self.execute("SELECT 1")
        except UnavailableError:
            return False
        return True


class RelayPositions:
    """Where each relay has got to, confirmed by the broker.

    ``position`` is the last notification id the broker acknowledged, ``published`` how many
    events that took, and ``marks`` the (offset, event id) of the last acknowledged record on
    each partition: if a mark is no longer readable at its offset, the broker lost the log.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        db.execute(
            "CREATE TABLE IF NOT EXISTS relctl_relay_position ("
            " name text PRIMARY KEY, position bigint NOT NULL, published bigint NOT NULL,"
            " marks jsonb NOT NULL DEFAULT '{}', updated_at timestamptz NOT NULL DEFAULT now())"
        )

    def load(self, name: str) -> tuple[int, int]:
        position, published, _ = self.load_all(name)
        return position, published

    def load_all(self, name: str) -> tuple[int, int, dict[int, tuple[int, str]]]:
        rows = self.db.execute(
            "SELECT position, published, marks FROM relctl_relay_position WHERE name = %s",
            (name,))
        if not rows:
            return 0, 0, {}
        marks = {int(p): (int(m[0]), str(m[1])) for p, m in rows[0]["marks"].items()}
        return int(rows[0]["position"]), int(rows[0]["published"]), marks

    def save(self, name: str, position: int, published: int,
             marks: dict[int, tuple[int, str]] | None = None) -> None:
        self.db.execute(
            "INSERT INTO relctl_relay_position (name, position, published, marks) "
            "VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, "
            "published = EXCLUDED.published, marks = EXCLUDED.marks, updated_at = now()",
            (name, position, published, Jsonb({str(p): list(m) for p, m in (marks or {}).items()})),
        )


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: who, in which role, and (producers) for which tenants."""

    actor: str
    role: str
    tenants: tuple[str, ...] = ()

    def may_act_for(self, tenant: str) -> bool:
        return self.role != "producer" or "*" in self.tenants or tenant in self.tenants


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.execute(
            "CREATE TABLE IF NOT EXISTS relctl_tokens ("
            " digest text PRIMARY KEY, actor text NOT NULL, role text NOT NULL,"
            " tenants text[] NOT NULL DEFAULT '{}', created_by text NOT NULL,"
            " created_at timestamptz NOT NULL, revoked_at timestamptz)"
        )

    def create(self, actor: str, role: str, created_by: str,
               tenants: tuple[str, ...] = ()) -> str:
        if role not in ROLES:
            raise ValidationError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if not actor or not actor.strip():
            raise ValidationError("a token needs an actor name")
        for name in (actor, *tenants):
            if text_problem(name):
                raise ValidationError(f"token actor or tenant {name!r} {text_problem(name)}")
        if role == "producer" and not tenants:
            raise ValidationError("a producer token names the tenants it may write for "
                                  "(or '*' for all)")
        token = "rk_" + secrets.token_urlsafe(32)
        self.db.execute(
            "INSERT INTO relctl_tokens (digest, actor, role, tenants, created_by, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (_digest(token), actor, role, list(tenants), created_by, datetime.now(UTC)),
        )
        return token

    def authenticate(self, token: str) -> Principal | None:
        rows = self.db.execute(
            "SELECT actor, role, tenants FROM relctl_tokens "
            "WHERE digest = %s AND revoked_at IS NULL", (_digest(token),))
        if not rows:
            return None
        row = rows[0]
        return Principal(row["actor"], row["role"], tuple(row["tenants"]))

    def revoke(self, actor: str) -> int:
        rows = self.db.execute(
            "UPDATE relctl_tokens SET revoked_at = now() WHERE actor = %s "
            "AND revoked_at IS NULL RETURNING actor", (actor,))
        if not rows:
            raise NotFoundError(f"no active token for {actor!r}")
        return len(rows)

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) AS n FROM relctl_tokens")[0]["n"])
