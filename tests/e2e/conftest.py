from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.support import Stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    instance = Stack(tmp_path / "data")
    yield instance
    if instance.process and instance.process.poll() is None:
        instance.process.kill()
