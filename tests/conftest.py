"""Session-wide real infrastructure: one PostgreSQL and one Kafka-protocol broker per run.

Each test gets its own database schema and topic prefix, so tests never see each other's data
and the services start only once. Set RELCTL_TEST_DATABASE_URL to use an existing PostgreSQL
(e.g. postgresql://postgres@127.0.0.1:5432/test) instead of the embedded one.
"""

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from relctl.adapters.config import Settings
from relctl.infra.embedded import EmbeddedBroker, EmbeddedPostgres

from bench.common import wait_until

# Re-exported: the tests import wait_until from here (it lives in bench.common).
__all__ = ["wait_until"]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    external = os.environ.get("RELCTL_TEST_DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's basetemp: every pytest session that starts on the machine makes
    # /tmp/pytest-of-<user> private again, which locks out the embedded PostgreSQL's own system
    # user (it runs as that user when the tests run as root).
    root = Path(tempfile.mkdtemp(prefix="relctl-test-pg-"))
    server = EmbeddedPostgres(root / "data")
    url = server.start()
    yield url
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    instance = EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "broker.log")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(
    pg_url: str, broker: EmbeddedBroker, unique: str, tmp_path: Path,
) -> Iterator[Settings]:
    schema = f"t_{unique}"
    yield Settings(
        data_dir=tmp_path, database_url=pg_url, database_schema=schema,
        kafka_bootstrap=broker.bootstrap, topic_prefix=f"t{unique}", relay_check_interval=0.5,
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
