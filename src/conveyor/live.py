"""In-process fan-out of events to subscribers (CLI display, streams, worker wake-ups)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from conveyor.store.executions import EventRecord


class Hub:
    """Delivers every committed event to each subscriber's queue, in commit order.

    Attach :meth:`publish` to ``Store.listeners``; it runs on the event loop thread.
    """

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[EventRecord]] = set()

    def publish(self, records: list[EventRecord]) -> None:
        for queue in self._queues:
            for record in records:
                queue.put_nowait(record)

    @contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[EventRecord]]:
        queue: asyncio.Queue[EventRecord] = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)
