"""Live delivery of events: in-process fan-out, cross-process wake-ups, and the feed that
streams read from.

Events are always read from the database (so a stream resumes exactly where it left off);
what this module delivers is *when* to read: at once for commits in this process, on
PostgreSQL NOTIFY for commits elsewhere, and after a short poll on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from conveyor.store import Store
from conveyor.store.controls import EVENTS_CHANNEL
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


class Feed:
    """Wake-ups per execution and per workspace, from this process and from others."""

    def __init__(self, store: Store, poll_seconds: float = 0.25) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.cross_process = False

    async def start(self) -> None:
        self.store.listeners.append(self._on_records)
        listener = self.store.listener(self._on_notify, EVENTS_CHANNEL)
        if listener is not None:
            self.cross_process = True
            self._task = asyncio.create_task(listener)

    async def stop(self) -> None:
        if self._on_records in self.store.listeners:
            self.store.listeners.remove(self._on_records)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _wake(self, *keys: str) -> None:
        for key in keys:
            for event in self._waiters.get(key, ()):
                event.set()

    def _on_records(self, records: list[EventRecord]) -> None:
        for record in records:
            self._wake(record.execution_id, record.workspace_id)

    def _on_notify(self, payload: str) -> None:
        """``<workspace>:<execution>``, several separated by spaces."""
        for item in payload.split():
            workspace_id, _, execution_id = item.partition(":")
            if execution_id:
                self._wake(execution_id, workspace_id)

    @contextlib.asynccontextmanager
    async def watch(self, key: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever something new may exist for ``key``."""
        event = asyncio.Event()
        self._waiters[key].add(event)
        try:
            yield event
        finally:
            self._waiters[key].discard(event)
            if not self._waiters[key]:
                del self._waiters[key]

    async def wait(self, event: asyncio.Event, at_most: float) -> bool:
        """Wait for a wake-up (or the poll interval where there is no notification bus)."""
        limit = at_most if self.cross_process else min(at_most, self.poll_seconds)
        try:
            async with asyncio.timeout(limit):
                await event.wait()
        except TimeoutError:
            return False
        finally:
            event.clear()
        return True
