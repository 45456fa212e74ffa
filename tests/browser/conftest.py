import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.support import Api, browser_missing, chrome
from tests.e2e.support import Stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One `relctl up` (embedded PostgreSQL, broker, a guard worker) per test module."""
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    root = Path(tempfile.mkdtemp(prefix="relctl-browser-"))
    instance = Stack(root / "data")
    instance.up()
    yield instance
    if instance.process and instance.process.poll() is None:
        instance.down()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def admin(stack: Stack) -> Api:
    return Api(stack.url, stack.token)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    driver = chrome()
    yield driver
    driver.quit()
