"""Waiting for executions to finish: told by the finishing commit, not found by polling.

Every transaction that finishes executions announces them on ``FINISHED_CHANNEL`` at
commit (``controls.announce_finished``): on PostgreSQL a NOTIFY whose payload says
``<id>:<status>``, so a waiter learns the outcome without a read; on SQLite the
``<database>-finished`` file is replaced by those payloads, and the waiter reads the
statuses of the executions it still waits for only when another commit replaced the file
before it looked. Commits made by this process reach the waiter through ``Store.listeners``
before either.

A waiter registers first, then reads the status once (the execution may have finished
before), then waits. The status is read again every ``RECHECK_SECONDS`` as a safety net, and
more often while the listener is down (starting, or reconnecting after a lost connection),
so a waiter never depends on a notification that cannot come.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select
from sqlalchemy.exc import SQLAlchemyError

from conveyor.engine.interfaces import EventRecord
from conveyor.engine.state import TERMINAL, ExecutionStatus
from conveyor.errors import ConveyorError, NotFound
from conveyor.store.channels import FINISHED_CHANNEL
from conveyor.store.tables import executions

if TYPE_CHECKING:
    from conveyor.store.store import Store

RECHECK_SECONDS = 1.0  # the status is read this often while waiting (a safety net)
FIRST_RECHECK_SECONDS = 0.01  # while not listening: the first read, then doubling
LISTEN_WAIT_SECONDS = 5.0  # how long the first wait gives the listener to start
RECENT = 10_000  # finishes remembered: one may be heard before its waiter registers
_TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)
_TERMINAL_EVENTS = {f"execution.{s.value}": s for s in TERMINAL}


def statuses(
    conn: Connection, ids: Sequence[str], workspace_id: str | None = None
) -> dict[str, str]:
    """The status of each execution found (in ``workspace_id``, when given)."""
    query = select(executions.c.id, executions.c.status).where(executions.c.id.in_(ids))
    if workspace_id is not None:
        query = query.where(executions.c.workspace_id == workspace_id)
    return {r.id: r.status for r in conn.execute(query)}


class FinishWatch:
    """One per Store and event loop (its listener runs on that loop)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening: asyncio.Event | None = None
        self._waiting: dict[str, set[asyncio.Future[ExecutionStatus]]] = defaultdict(set)
        self._recent: dict[str, ExecutionStatus] = {}
        self._reader: asyncio.Task[None] | None = None
        self._read_again = False

    async def wait(self, execution_id: str, workspace_id: str | None = None) -> ExecutionStatus:
        """The execution's terminal status once it has one; NotFound if there is no such
        execution (in ``workspace_id``)."""
        await self._start()
        future: asyncio.Future[ExecutionStatus] = asyncio.get_running_loop().create_future()
        self._waiting[execution_id].add(future)
        try:
            known = self._recent.get(execution_id)
            if known is not None:
                return known
            found = await self.store.read(statuses, [execution_id], workspace_id)
            if execution_id not in found:
                raise NotFound(f"execution '{execution_id}' not found")
            check = RECHECK_SECONDS if self.listening else FIRST_RECHECK_SECONDS
            status = found[execution_id]
            while status not in _TERMINAL_VALUES:
                if future.done():
                    return future.result()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(check):
                        return await asyncio.shield(future)
                check = RECHECK_SECONDS if self.listening else min(check * 2, RECHECK_SECONDS)
                found = await self.store.read(statuses, [execution_id])
                status = found.get(execution_id, status)
            return ExecutionStatus(status)
        finally:
            waiting = self._waiting.get(execution_id)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._waiting[execution_id]

    @property
    def listening(self) -> bool:
        return self._listening is not None and self._listening.is_set()

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop.is_closed():
            self._loop = None  # a closed loop took its listener with it
        if self._loop is None:
            self._loop = loop
            self._listening = asyncio.Event()
            self.store.listeners.append(self._on_records)
            listener = self.store.listener(self._on_message, FINISHED_CHANNEL)
            if listener is not None:
                self._listener = loop.create_task(listener, name="conveyor-finish-watch")
        if self._listener is not None and self._listening is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LISTEN_WAIT_SECONDS):
                    await self._listening.wait()

    def close(self) -> None:
        if self._listener is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._listener.cancel)
        if self._on_records in self.store.listeners:
            self.store.listeners.remove(self._on_records)

    def _finished(self, execution_id: str, status: ExecutionStatus) -> None:
        self._recent[execution_id] = status
        if len(self._recent) > RECENT:
            del self._recent[next(iter(self._recent))]
        # Told: no longer waiting, so a read of the waited statuses leaves it out.
        for future in self._waiting.pop(execution_id, ()):
            if not future.done():
                future.set_result(status)

    def _on_records(self, records: list[EventRecord]) -> None:
        """This process's commits, at once."""
        for record in records:
            status = _TERMINAL_EVENTS.get(record.type)
            if status is not None:
                self._finished(record.execution_id, status)

    def _on_message(self, message: str) -> None:
        assert self._listening is not None
        if message == "listening":
            self._listening.set()
            self._read_waited()  # finishes announced while the listener was down
        elif message == "not-listening":
            self._listening.clear()
        elif message == "changed":  # SQLite: executions finished; read those still waited for
            self._read_waited()
        else:
            for item in message.split():
                execution_id, _, status = item.rpartition(":")
                if status in _TERMINAL_VALUES:
                    self._finished(execution_id, ExecutionStatus(status))

    def _read_waited(self) -> None:
        """Read the statuses of every waited execution, once more if asked meanwhile."""
        self._read_again = True
        if self._waiting and (self._reader is None or self._reader.done()):
            self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while self._read_again and self._waiting:
            self._read_again = False
            try:
                found = await self.store.read(statuses, list(self._waiting))
            except (ConveyorError, SQLAlchemyError):  # each waiter reads again on its recheck
                return
            for execution_id, status in found.items():
                if status in _TERMINAL_VALUES:
                    self._finished(execution_id, ExecutionStatus(status))
