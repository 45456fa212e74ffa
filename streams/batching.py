"""Stage 1's batches: sleep until an evaluation arrives, then gather more for up to ``within``.

Faust's ``Stream.take_events(max, within)`` wakes every ``within`` even when nothing is
buffered: with stage 1's 5 ms window that is ~200 wake-ups a second on an idle worker, and
profiling put most of the idle worker's main-thread CPU there (README, "Idle CPU"). Here the
first event of a batch is awaited without a timer; only then does the ``within`` window start
(as a producer's linger), so a busy worker batches as before and an idle one sleeps.

The acknowledgement contract is Faust's own for ``take_events``: acks are off for the stream
while batching, and a batch's events are acked only after the consumer of the batch has
finished with it (the code after ``yield`` runs when the ``async for`` body asks for the next
batch), so an offset is never committed for an evaluation that was not yet processed.
"""

from collections.abc import AsyncIterator
from typing import Any

from faust.streams import Stream
from faust.types import EventT
from mode.utils.locks import Event


async def take_batches(stream: Stream[Any], max_: int, within: float
                       ) -> AsyncIterator[list[EventT]]:
    """Batches of at most ``max_`` events: each starts with the first event to arrive (no
    timer while idle) and is handed over when full or ``within`` seconds after that event."""
    events: list[EventT] = []
    first = Event()  # the batch has its first event
    full = Event()  # the batch has max_ events
    accepting = Event()  # cleared while a batch is handed out, or full
    accepting.set()

    async def buffer(value: Any) -> Any:
        # Backpressure: while a batch is being processed (or is full) the stream's passive
        # reader waits here, so no event is buffered that the batch's acks could skip.
        if not accepting.is_set():
            await stream.wait(accepting)
        event = stream.current_event
        if event is None:
            raise RuntimeError("stage-1 batching found no current event")
        events.append(event)
        first.set()
        if len(events) >= max_:
            accepting.clear()
            full.set()
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(buffer)
    # The same passive reading that take_events uses: the stream is iterated in the
    # background, each value going through ``buffer``.
    channel: Any = stream.channel.__aiter__()
    stream._enable_passive(channel)
    try:
        while not stream.should_stop:
            if await stream.wait_for_stopped(first):
                break
            if not full.is_set():
                await stream.wait_for_stopped(full, timeout=within)
            accepting.clear()
            batch = list(events)
            try:
                yield batch
            finally:
                events.clear()
                for event in batch:
                    await stream.ack(event)
                first.clear()
                full.clear()
                accepting.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(buffer)
