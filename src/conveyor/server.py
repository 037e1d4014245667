"""Composition root of ``conveyor server``: the API, an embedded worker, the first admin,
and retention of old executions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import Connection, delete, select

from conveyor.api.app import create_app
from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.settings import Settings
from conveyor.store import accounts
from conveyor.store.accounts import Role
from conveyor.store.tables import events, execution_inputs, executions, signals, steps
from conveyor.store.workflows import DEFAULT_WORKSPACE, workspace_id
from conveyor.worker import Worker, WorkerSettings

log = logging.getLogger(__name__)
RETENTION_EVERY = timedelta(hours=1)
RETENTION_BATCH = 1000


def prune(conn: Connection, status: str, older_than: timedelta, now: datetime) -> int:
    """Delete one batch of finished executions of ``status`` finished before the cutoff,
    with their steps, events and signals."""
    ids = (
        conn.execute(
            select(executions.c.id)
            .where(executions.c.status == status, executions.c.finished_at < now - older_than)
            .limit(RETENTION_BATCH)
        )
        .scalars()
        .all()
    )
    if ids:
        for table in (events, steps, signals, execution_inputs):
            conn.execute(delete(table).where(table.c.execution_id.in_(ids)))
        conn.execute(delete(executions).where(executions.c.id.in_(ids)))
    return len(ids)


async def retention(conveyor: Conveyor, settings: Settings) -> None:
    """Keep successes ``retention_succeeded_days`` and everything else that finished
    ``retention_failed_days``; 0 keeps forever."""
    policy = {"succeeded": settings.retention_succeeded_days}
    for status in ("failed", "cancelled", "timed_out"):
        policy[status] = settings.retention_failed_days
    while True:
        for status, days in policy.items():
            deleted = RETENTION_BATCH if days > 0 else 0
            while deleted == RETENTION_BATCH:
                deleted = await conveyor.store.write(
                    prune, status, timedelta(days=days), conveyor.store.clock.now()
                )
        await asyncio.sleep(RETENTION_EVERY.total_seconds())


async def bootstrap_admin(conveyor: Conveyor, settings: Settings) -> None:
    """Create the first admin from CONVEYOR_ADMIN_EMAIL/_PASSWORD, or say how to."""
    store = conveyor.store
    if await store.read(accounts.count_users):
        return
    if settings.admin_email and settings.admin_password:
        now = store.clock.now()
        user_id = await store.write(
            accounts.create_user, settings.admin_email, settings.admin_password, now, is_admin=True
        )
        ws = await store.write(workspace_id, DEFAULT_WORKSPACE, now)
        await store.write(accounts.set_role, user_id, ws, Role.OWNER, now)
        log.info(
            "created the first admin %s", settings.admin_email, extra={"action": "admin_created"}
        )
        return
    log.warning(
        "no users yet: create the first admin with `conveyor users create --admin "
        "EMAIL` (or set CONVEYOR_ADMIN_EMAIL and CONVEYOR_ADMIN_PASSWORD)",
        extra={"action": "no_users"},
    )


def build(
    conveyor: Conveyor,
    settings: Settings,
    worker_settings: WorkerSettings | None,
) -> FastAPI:
    """The server app; with ``worker_settings`` it also runs an embedded worker."""
    worker_task: list[asyncio.Task[None]] = []
    housekeeping: list[asyncio.Task[None]] = []
    stop = asyncio.Event()

    async def on_start(app: FastAPI) -> None:
        await bootstrap_admin(conveyor, settings)
        if worker_settings is not None:
            worker = Worker(
                conveyor.store, conveyor.registry, SystemClock(), settings=worker_settings
            )
            app.state.worker = worker
            worker_task.append(asyncio.create_task(worker.serve(stop)))
        housekeeping.append(asyncio.create_task(retention(conveyor, settings)))

    async def on_stop(app: FastAPI) -> None:
        stop.set()  # the worker drains gracefully; housekeeping is simply cancelled
        for task in housekeeping:
            task.cancel()
        for task in worker_task + housekeeping:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return create_app(conveyor, on_start=on_start, on_stop=on_stop)
