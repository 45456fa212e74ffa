"""adapters/retrying.py: the tenacity policy the relay, the command consumer and the control
follower run under."""

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
from relctl.adapters.retrying import backoff, fixed, retry_forever, stop_aware_sleep


class Flaky:
    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.failures = failures
        self.calls = 0
        self.error = error or ConnectionError("broker down")

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_backoff_doubles_up_to_the_cap_and_the_call_succeeds() -> None:
    flaky, waits = Flaky(5), []
    result = asyncio.run(retry_forever(flaky, backoff(0.001, 0.004), asyncio.Event(),
                                       lambda exc, wait: waits.append((type(exc), wait))))
    assert result == "ok" and flaky.calls == 6
    assert waits == [(ConnectionError, w) for w in (0.001, 0.002, 0.004, 0.004, 0.004)]


def test_fixed_delay_and_no_stop_retries_for_ever() -> None:
    flaky, waits = Flaky(3), []
    assert asyncio.run(retry_forever(flaky, fixed(0.001), None,
                                     lambda _, wait: waits.append(wait))) == "ok"
    assert waits == [0.001, 0.001, 0.001]


def test_once_stopped_a_failure_ends_the_retries_without_raising() -> None:
    async def scenario() -> tuple[object, int]:
        stop = asyncio.Event()
        stop.set()
        flaky = Flaky(100)
        return await retry_forever(flaky, fixed(3600), stop), flaky.calls

    assert asyncio.run(scenario()) == (None, 1)


def test_the_wait_wakes_up_when_stop_is_set() -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        sleeping = asyncio.create_task(stop_aware_sleep(stop)(3600))
        await asyncio.sleep(0)
        stop.set()
        await asyncio.wait_for(sleeping, timeout=30)

    asyncio.run(scenario())


def test_a_cancellation_is_not_retried() -> None:
    flaky = Flaky(100, asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(retry_forever(flaky, fixed(0.001), None))
    assert flaky.calls == 1


def test_a_lambda_returning_a_coroutine_is_awaited_and_retried() -> None:
    flaky = Flaky(2)

    def start() -> Coroutine[Any, Any, str]:  # a plain function that returns a coroutine
        return flaky()

    assert asyncio.run(retry_forever(start, fixed(0.001), None)) == "ok"
    assert flaky.calls == 3
