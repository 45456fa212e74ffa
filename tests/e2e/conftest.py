import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.support import Stack


@pytest.fixture
def stack_root() -> Iterator[Path]:
    """A directory for data directories outside pytest's /tmp/pytest-of-<user>: every pytest
    session starting on the machine takes group and other access away from that one, and as
    root the embedded PostgreSQL runs as its own system user, which must traverse the path."""
    root = Path(tempfile.mkdtemp(prefix="relctl-e2e-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stack(stack_root: Path) -> Iterator[Stack]:
    instance = Stack(stack_root / "data")
    yield instance
    if instance.process and instance.process.poll() is None:
        instance.process.kill()
