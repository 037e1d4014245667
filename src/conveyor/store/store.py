"""Store: the async face of the database. Each method is one transaction run on a small
thread pool, so the event loop never blocks on I/O and no connection is set up per step."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection, insert

from conveyor.engine.interfaces import Changes, ClaimedExecution, Clock, SystemClock
from conveyor.store import executions as queue
from conveyor.store import history, workflows
from conveyor.store.database import Database, new_id
from conveyor.store.executions import EventRecord, NewExecution
from conveyor.store.history import ExecutionFilter
from conveyor.store.tables import notifications
from conveyor.store.workflows import VersionRef

T = TypeVar("T")
EventListener = Callable[[list[EventRecord]], None]


class Store:
    def __init__(self, db: Database, *, clock: Clock | None = None, threads: int = 4) -> None:
        self.db = db
        self.clock: Clock = clock or SystemClock()
        self.listeners: list[EventListener] = []
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="conveyor-db")

    async def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._call(True, fn, *args, **kwargs)

    async def _read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._call(False, fn, *args, **kwargs)

    async def _call(self, write: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def work() -> T:
            with self.db.write() if write else self.db.read() as conn:
                return fn(conn, *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(work))

    def _publish(self, records: list[EventRecord]) -> None:
        if records:
            for listener in self.listeners:
                listener(records)

    # -- the runner's interface ------------------------------------------------------------
    async def apply(self, execution: ClaimedExecution, changes: Changes) -> None:
        records = await self._write(queue.apply, execution, changes, self.clock.now())
        self._publish(records)

    async def notify(self, execution_id: str, node_id: str, payload: dict[str, Any]) -> str:
        def write(conn: Connection) -> str:
            from sqlalchemy import select

            from conveyor.store.tables import executions

            workspace = conn.execute(
                select(executions.c.workspace_id).where(executions.c.id == execution_id)
            ).scalar_one()
            notification_id = new_id()
            conn.execute(
                insert(notifications),
                {
                    "id": notification_id,
                    "workspace_id": workspace,
                    "execution_id": execution_id,
                    "node_id": node_id,
                    "channel": payload.get("channel", "in-app"),
                    "title": payload.get("title", ""),
                    "message": payload.get("message", ""),
                    "data": payload.get("data"),
                    "created_at": self.clock.now(),
                },
            )
            return notification_id

        return await self._write(write)

    # -- the queue ---------------------------------------------------------------------------
    async def enqueue(self, new: NewExecution) -> tuple[str, bool]:
        return await self._write(queue.enqueue, new, self.clock.now())

    async def claim(
        self,
        owner: str,
        *,
        lease_seconds: float,
        limit: int = 1,
        execution_id: str | None = None,
    ) -> list[ClaimedExecution]:
        return await self._write(
            queue.claim,
            self.db.dialect,
            owner=owner,
            lease_seconds=lease_seconds,
            limit=limit,
            now=self.clock.now(),
            execution_id=execution_id,
        )

    async def heartbeat(self, owner: str, lease_seconds: float) -> list[tuple[str, bool]]:
        return await self._write(queue.heartbeat, self.db.dialect, owner, lease_seconds)

    async def release(self, execution: ClaimedExecution) -> bool:
        return await self._write(queue.release, execution)

    # -- workflows ---------------------------------------------------------------------------
    async def workspace(self, name: str) -> str:
        return await self._write(workflows.workspace_id, name, self.clock.now())

    async def apply_definition(self, workspace_id: str, definition: dict[str, Any]) -> VersionRef:
        return await self._write(
            workflows.apply_definition, workspace_id, definition, self.clock.now()
        )

    async def find_version(
        self, workspace_id: str, workflow: str, version: int | None = None
    ) -> VersionRef:
        return await self._read(workflows.find_version, workspace_id, workflow, version)

    async def list_workflows(self, workspace_id: str) -> list[dict[str, Any]]:
        return await self._read(workflows.list_workflows, workspace_id)

    # -- history -----------------------------------------------------------------------------
    async def get_execution(self, workspace_id: str, execution_id: str) -> dict[str, Any]:
        return await self._read(history.get_execution, workspace_id, execution_id)

    async def list_executions(self, f: ExecutionFilter) -> list[dict[str, Any]]:
        return await self._read(history.list_executions, f)

    async def events_after(self, execution_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        return await self._read(history.events_after, execution_id, after_seq)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.db.dispose()
