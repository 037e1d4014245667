"""Waiting for executions to finish: what a webhook's sync response waits on.

A commit made in this process (the server's embedded worker shares the API's Store) is heard
at once through ``Store.listeners``: no read of the database, no polling loop. An execution
run by a worker in another process is noticed by reads of its status: every second when
this process runs a worker (the execution is most likely its own), else from 10 ms up,
doubling to half a second, so a server without an embedded worker still answers within
about a tenth of the execution's time. A sync response never waits on a wake-up that
cannot come.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any

from conveyor.engine.interfaces import EventRecord
from conveyor.engine.state import TERMINAL
from conveyor.store import Store, triggers

TERMINAL_EVENTS = frozenset(f"execution.{s.value}" for s in TERMINAL)
TERMINAL_STATUSES = frozenset(s.value for s in TERMINAL)
CHECK_SECONDS = 1.0  # how often the status is read while waiting (other processes' workers)
FIRST_CHECK_SECONDS = 0.01  # without a worker in this process: the first read, then doubling
MAX_CHECK_SECONDS = 0.5
RECENT = 10_000  # finished executions remembered: one may finish before its waiter comes


class Finishes:
    """Created on the API's event loop (listeners run on the loop that added them)."""

    def __init__(self, store: Store, *, local_worker: bool = True) -> None:
        self.store = store
        self.local_worker = local_worker
        self._waiting: dict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._recent: dict[str, None] = {}
        store.listeners.append(self._on_records)

    def close(self) -> None:
        if self._on_records in self.store.listeners:
            self.store.listeners.remove(self._on_records)

    def _on_records(self, records: list[EventRecord]) -> None:
        for record in records:
            if record.type in TERMINAL_EVENTS:
                self._recent[record.execution_id] = None
                if len(self._recent) > RECENT:
                    del self._recent[next(iter(self._recent))]
                for future in self._waiting.get(record.execution_id, ()):
                    if not future.done():
                        future.set_result(None)

    async def wait(
        self, execution_id: str, within: float, node: str | None = None
    ) -> dict[str, Any] | None:
        """The execution's status, result and error (and ``node``'s output) once it is
        finished, or None after ``within`` seconds.

        The embedded worker's commit may be heard before the waiter comes (its records are
        handed to this loop while the enqueue's answer is on its way): finished executions
        are remembered a while for that."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if execution_id in self._recent:
            future.set_result(None)
        self._waiting[execution_id].add(future)
        deadline = loop.time() + within
        check = CHECK_SECONDS if self.local_worker else FIRST_CHECK_SECONDS
        try:
            while True:
                remaining = deadline - loop.time()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, min(remaining, check))):
                        await asyncio.shield(future)
                if not self.local_worker:
                    check = min(check * 2, MAX_CHECK_SECONDS)
                row = await self.store.read(triggers.finished, execution_id, node)
                if row["status"] in TERMINAL_STATUSES:
                    return row
                if loop.time() >= deadline:
                    return None
                if future.done():  # heard, yet not finished: never spin on a done future
                    self._waiting[execution_id].discard(future)
                    future = loop.create_future()
                    self._waiting[execution_id].add(future)
        finally:
            waiting = self._waiting.get(execution_id)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._waiting[execution_id]
