"""Waiting for an execution to finish (``Conveyor.wait``) is told by the finishing commit:
a NOTIFY carrying the status on PostgreSQL, the ``<database>-finished`` file (holding the
same payloads) on SQLite, and this process's own commits at once. The status read every
``RECHECK_SECONDS`` is only a safety net: these tests set it to a minute, so a wait that
ends sooner was told.

A second Conveyor on the same database stands for another process (its own connections,
its own Store): nothing but the database tells one of the other's commits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import pytest

from conveyor import Conveyor, build_registry
from conveyor.engine.interfaces import SystemClock
from conveyor.engine.state import ExecutionStatus
from conveyor.errors import NotFound
from conveyor.store import waits
from conveyor.worker import Worker

WORKFLOW = {"name": "w", "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}]}
WITHIN = 30  # seconds: far below the one-minute safety net, far above any machine's delay


class Reads:
    """Counts the waiter's status reads; ``first`` is set once the first one returned."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.first = threading.Event()
        real = waits.statuses

        def counted(conn: Any, ids: Sequence[str], workspace_id: str | None = None) -> Any:
            found = real(conn, ids, workspace_id)
            self.count += 1
            self.first.set()
            return found

        monkeypatch.setattr(waits, "statuses", counted)


@pytest.fixture
async def apps(database_url: str) -> AsyncIterator[tuple[Conveyor, Conveyor]]:
    """The waiting side and the "other process" that runs executions."""
    mine = await Conveyor.open(database_url, build_registry())
    other = await Conveyor.open(database_url, build_registry(), migrate=False)
    try:
        await mine.apply(WORKFLOW)
        yield mine, other
    finally:
        mine.close()
        other.close()


async def _serving(app: Conveyor, stop: asyncio.Event) -> None:
    worker = Worker(app.store, app.registry, SystemClock(), poll=timedelta(seconds=60))
    await worker.serve(stop)


async def test_a_finish_in_another_process_is_told_not_polled(
    apps: tuple[Conveyor, Conveyor], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, other = apps
    monkeypatch.setattr(waits, "RECHECK_SECONDS", 60.0)
    reads = Reads(monkeypatch)
    queued = await mine.execute("w")
    waiting = asyncio.create_task(mine.wait(queued.execution_id))
    await asyncio.to_thread(reads.first.wait, WITHIN)  # registered, and seen queued
    assert not waiting.done()
    stop = asyncio.Event()
    serving = asyncio.create_task(_serving(other, stop))
    try:
        async with asyncio.timeout(WITHIN):
            assert await waiting == ExecutionStatus.SUCCEEDED
    finally:
        stop.set()
        await serving
    # The notification says the status (SQLite: the file holds it): no read after the first.
    assert reads.count == 1


async def test_a_cancel_of_a_queued_execution_is_told(
    apps: tuple[Conveyor, Conveyor], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, other = apps
    monkeypatch.setattr(waits, "RECHECK_SECONDS", 60.0)
    reads = Reads(monkeypatch)
    queued = await mine.execute("w")
    waiting = asyncio.create_task(mine.wait(queued.execution_id))
    await asyncio.to_thread(reads.first.wait, WITHIN)
    assert await other.cancel(queued.execution_id) == "cancelled"
    async with asyncio.timeout(WITHIN):
        assert await waiting == ExecutionStatus.CANCELLED


async def test_this_process_s_own_finishes_need_no_notification(
    apps: tuple[Conveyor, Conveyor], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, _ = apps
    monkeypatch.setattr(waits, "RECHECK_SECONDS", 60.0)
    # No cross-process listener at all: only Store.listeners can tell.
    monkeypatch.setattr(mine.store, "listener", lambda *_args: None)
    reads = Reads(monkeypatch)
    queued = await mine.execute("w")
    waiting = asyncio.create_task(mine.wait(queued.execution_id))
    await asyncio.to_thread(reads.first.wait, WITHIN)
    stop = asyncio.Event()
    serving = asyncio.create_task(_serving(mine, stop))
    try:
        async with asyncio.timeout(WITHIN):
            assert await waiting == ExecutionStatus.SUCCEEDED
    finally:
        stop.set()
        await serving


async def test_a_finished_execution_answers_at_once(apps: tuple[Conveyor, Conveyor]) -> None:
    mine, other = apps
    queued = await mine.execute("w")
    assert await other.cancel(queued.execution_id) == "cancelled"
    async with asyncio.timeout(WITHIN):
        assert await mine.wait(queued.execution_id) == ExecutionStatus.CANCELLED


async def test_unknown_and_foreign_executions_are_not_found(
    apps: tuple[Conveyor, Conveyor],
) -> None:
    mine, other = apps
    with pytest.raises(NotFound):
        await mine.wait("0" * 32)
    queued = await mine.execute("w")
    elsewhere = other.scoped(await other.store.workspace("elsewhere"))
    with pytest.raises(NotFound):
        await elsewhere.wait(queued.execution_id)
