"""Retries with tenacity, for the loops that must outlive a broker or database outage.

Every long-running client (the relay, the command consumer, the workers' control follower)
runs one step or session at a time under :func:`retry_forever`: on an exception it waits (a
fixed delay, or an exponential backoff that starts afresh after every success) and tries
again, until ``stop`` is set. The wait wakes up early when ``stop`` is set, so shutting down
never waits for a backoff to run out.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, stop_never, wait_exponential, wait_fixed
from tenacity.wait import wait_base

T = TypeVar("T")


def stop_aware_sleep(stop: asyncio.Event | None) -> Callable[[float], Awaitable[None]]:
    """A sleep that returns as soon as ``stop`` is set."""

    async def sleep(seconds: float) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)

    return sleep


def backoff(initial: float, maximum: float) -> wait_base:
    """initial, 2 x initial, 4 x initial, ... capped at maximum."""
    return wait_exponential(multiplier=initial, exp_base=2, max=maximum)


def fixed(seconds: float) -> wait_base:
    return wait_fixed(seconds)


def retrying(wait: wait_base, stop: asyncio.Event | None = None,
             on_retry: Callable[[BaseException, float], None] | None = None) -> AsyncRetrying:
    """Retry on any Exception (never on cancellation) until ``stop`` is set; ``on_retry`` is
    told the exception and the wait before the next attempt. Once ``stop`` is set, a failing
    call returns None instead of raising."""

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            exc = state.outcome.exception()
            if exc is not None:
                on_retry(exc, state.next_action.sleep)

    def stopped(_: RetryCallState) -> bool:
        return stop is not None and stop.is_set()

    return AsyncRetrying(
        wait=wait, stop=stopped if stop is not None else stop_never,
        sleep=stop_aware_sleep(stop), before_sleep=before_sleep,
        retry_error_callback=lambda _: None,
    )


async def retry_forever(call: Callable[[], Awaitable[T]], wait: wait_base,
                        stop: asyncio.Event | None = None,
                        on_retry: Callable[[BaseException, float], None] | None = None,
                        ) -> T | None:
    """``await call()`` until it succeeds (its result) or ``stop`` is set after a failure."""

    async def attempt() -> T:
        # A coroutine function, whatever ``call`` is: tenacity calls anything else (a lambda
        # returning a coroutine) synchronously and would never await what it returns.
        return await call()

    result: Any = await retrying(wait, stop, on_retry)(attempt)
    return result  # type: ignore[no-any-return]
