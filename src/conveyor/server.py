"""Composition root of ``conveyor server``: the API and the dashboard, an embedded worker, the
scheduler, the first user, and retention of old executions."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Connection, delete, select, true, update
from sqlalchemy.exc import SQLAlchemyError

from conveyor import web
from conveyor.api.app import create_app
from conveyor.api.throttles import Throttles, ThrottleSettings
from conveyor.app import Conveyor
from conveyor.errors import ConveyorError, InputError
from conveyor.generate import GeneratorSettings
from conveyor.redaction import install_log_filter
from conveyor.settings import Settings
from conveyor.store import accounts
from conveyor.store.accounts import Role
from conveyor.store.controls import counted_duration_ms
from conveyor.store.tables import (
    events,
    execution_inputs,
    executions,
    schedule_fires,
    signals,
    step_checkpoints,
    steps,
    webhook_deliveries,
    workflows,
)
from conveyor.store.workflows import DEFAULT_WORKSPACE, workspace_id
from conveyor.triggers.scheduler import Scheduler
from conveyor.worker import Worker, WorkerSettings

log = logging.getLogger(__name__)
RETENTION_EVERY = timedelta(hours=1)
RETENTION_RETRY = timedelta(minutes=1)  # after a round that failed
RETENTION_BATCH = 1000


def prune(conn: Connection, status: str, older_than: timedelta, now: datetime) -> int:
    """Delete one batch of finished executions of ``status`` finished before the cutoff,
    with their steps, events, signals and step checkpoints, and take them off their
    workflows' counters in the same transaction (their counts and their durations): the
    counts by status, success rates and average durations that the monitor, the workflows
    list and ``/metrics`` read from the counters stay those of the executions that exist,
    the ones a filter lists and a bulk action touches. (Per-user usage, tokens and API
    calls, stays all-time.) Workflows are updated in sorted order, as finishing
    transactions update them, so the two never deadlock on PostgreSQL."""
    rows = conn.execute(
        select(
            executions.c.id,
            executions.c.workflow_id,
            executions.c.started_at,
            executions.c.finished_at,
        )
        .where(executions.c.status == status, executions.c.finished_at < now - older_than)
        .limit(RETENTION_BATCH)
    ).all()
    ids = [r.id for r in rows]
    if ids:
        for table in (events, steps, signals, execution_inputs, step_checkpoints):
            conn.execute(delete(table).where(table.c.execution_id.in_(ids)))
        conn.execute(delete(executions).where(executions.c.id.in_(ids)))
        taken: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r in rows:
            taken[r.workflow_id][0] += 1
            taken[r.workflow_id][1] += counted_duration_ms(r.started_at, r.finished_at)
        counter = workflows.c[f"executions_{status}"]
        finished, duration = workflows.c.executions_finished, workflows.c.duration_total_ms
        for workflow_id, (n, ms) in sorted(taken.items()):
            conn.execute(
                update(workflows)
                .where(workflows.c.id == workflow_id)
                .values({counter: counter - n, finished: finished - n, duration: duration - ms})
            )
    return len(ids)


def prune_trigger_history(conn: Connection, older_than: timedelta, now: datetime) -> int:
    """Delete one batch of schedule occurrences and webhook deliveries older than the cutoff
    (a buffered occurrence is kept: it still waits to start)."""
    cutoff = now - older_than
    deleted = 0
    for table, when, keep in (
        (schedule_fires, schedule_fires.c.created_at, schedule_fires.c.status != "buffered"),
        (webhook_deliveries, webhook_deliveries.c.received_at, true()),
    ):
        old = select(table.c.id).where(when < cutoff, keep).limit(RETENTION_BATCH)
        ids = conn.execute(old).scalars().all()
        if ids:
            conn.execute(delete(table).where(table.c.id.in_(ids)))
        deleted = max(deleted, len(ids))
    return deleted


async def retention(conveyor: Conveyor, settings: Settings) -> None:
    """Keep successes ``retention_succeeded_days`` and everything else that finished
    ``retention_failed_days``; 0 keeps forever. Schedule occurrences and webhook deliveries
    are kept ``retention_failed_days`` (the longer horizon)."""
    policy = {"succeeded": settings.retention_succeeded_days}
    for status in ("failed", "cancelled", "timed_out"):
        policy[status] = settings.retention_failed_days

    async def paced(*args: Any) -> int:
        # A long backlog (a first start on old data, a shortened retention) is deleted
        # batch by batch with a pause as long as the batch between them: the database's
        # writer stays at least half free for executions and pages meanwhile.
        began = time.perf_counter()
        deleted: int = await conveyor.store.write(*args)
        if deleted == RETENTION_BATCH:
            await asyncio.sleep(time.perf_counter() - began)
        return deleted

    async def one_round() -> None:
        for status, days in policy.items():
            deleted = RETENTION_BATCH if days > 0 else 0
            while deleted == RETENTION_BATCH:
                deleted = await paced(
                    prune, status, timedelta(days=days), conveyor.store.clock.now()
                )
        deleted = RETENTION_BATCH if settings.retention_failed_days > 0 else 0
        while deleted == RETENTION_BATCH:
            deleted = await paced(
                prune_trigger_history,
                timedelta(days=settings.retention_failed_days),
                conveyor.store.clock.now(),
            )

    while True:
        try:
            await one_round()
        except (ConveyorError, SQLAlchemyError) as exc:  # the database away, a deadlock
            log.warning(
                "retention failed, trying again in %d s: %s",
                RETENTION_RETRY.total_seconds(),
                exc,
                extra={"action": "retention_failed"},
            )
            await asyncio.sleep(RETENTION_RETRY.total_seconds())
            continue
        await asyncio.sleep(RETENTION_EVERY.total_seconds())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def first_start(conveyor: Conveyor, settings: Settings, host: str, port: int) -> str | None:
    """Make sure someone can sign in, before serving. Returns a one-time sign-in URL to
    print when the local owner (created on a fresh loopback server) has no password yet.

    On an empty database: the first admin from CONVEYOR_ADMIN_EMAIL/_PASSWORD if set; else,
    on a loopback address, a passwordless local owner of the default workspace who signs in
    through such links (as Jupyter prints its token URL); else refuse to start."""
    store = conveyor.store
    now = store.clock.now()
    if not await store.read(accounts.count_users):
        if settings.admin_email and settings.admin_password:
            user_id = await store.write(
                accounts.create_user,
                settings.admin_email,
                settings.admin_password,
                now,
                is_admin=True,
            )
            ws = await store.write(workspace_id, DEFAULT_WORKSPACE, now)
            await store.write(accounts.set_role, user_id, ws, Role.OWNER, now)
            log.info(
                "created the first admin %s",
                settings.admin_email,
                extra={"action": "admin_created"},
            )
        elif is_loopback(host):
            ws = await store.write(workspace_id, DEFAULT_WORKSPACE, now)
            await store.write(accounts.create_local_owner, ws, now)
        else:
            raise InputError(
                f"no users yet and {host} is not a loopback address: create an admin first "
                "(`conveyor users create EMAIL --admin`, or set CONVEYOR_ADMIN_EMAIL and "
                "CONVEYOR_ADMIN_PASSWORD)"
            )
    owner = await store.read(accounts.passwordless_owner)
    if owner is None or not is_loopback(host):
        return None
    token = await store.write(accounts.create_signin_link, owner, now)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/signin/link/{token}"


class EmbeddedWorker:
    """The server's worker on an event loop of its own, in a thread: node code, even code
    that blocks its loop, can never stall an API request. It shares the server's Store,
    whose subscribers hand commits between the two loops."""

    def __init__(self, conveyor: Conveyor, settings: WorkerSettings) -> None:
        self.conveyor = conveyor
        self.settings = settings
        self.worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="conveyor-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.worker = Worker(
            self.conveyor.store,
            self.conveyor.registry,
            self.conveyor.store.clock,
            settings=self.settings,
        )
        self._started.set()
        try:
            await self.worker.serve(self._stop)
        except Exception:
            log.exception("the embedded worker stopped", extra={"action": "worker_failed"})

    async def stop(self) -> None:
        """Drain gracefully (the worker's shutdown grace) and wait for the thread."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # its loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join)


async def scheduling(conveyor: Conveyor, settings: Settings) -> None:
    """The scheduler on the server's loop: its work is a few short transactions per tick,
    and the executions it starts run on workers."""
    scheduler = Scheduler(conveyor, poll=timedelta(seconds=settings.scheduler_poll_seconds))
    await scheduler.serve(asyncio.Event())


def build(
    conveyor: Conveyor,
    settings: Settings,
    worker_settings: WorkerSettings | None,
) -> FastAPI:
    """The server app; with ``worker_settings`` it also runs an embedded worker, and the
    scheduler unless ``settings.scheduler`` is false."""
    embedded: list[EmbeddedWorker] = []
    housekeeping: list[asyncio.Task[None]] = []

    async def on_start(app: FastAPI) -> None:
        # Here, after uvicorn configured its log handlers: every line they write is
        # scrubbed of the secrets this process decrypts.
        install_log_filter()
        # The API and the scheduler keep the database's time too (an embedded worker
        # measures again every minute).
        try:
            await conveyor.store.align_clock()
        except (ConveyorError, SQLAlchemyError) as exc:
            log.warning("clock alignment failed: %s", exc, extra={"action": "clock_failed"})
        if worker_settings is not None:
            worker = EmbeddedWorker(conveyor, worker_settings)
            worker.start()
            app.state.worker = worker.worker
            embedded.append(worker)
        housekeeping.append(asyncio.create_task(retention(conveyor, settings)))
        if settings.scheduler:
            housekeeping.append(asyncio.create_task(scheduling(conveyor, settings)))

    async def on_stop(app: FastAPI) -> None:
        for task in housekeeping:
            task.cancel()
        for task in housekeeping:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for worker in embedded:
            await worker.stop()

    app = create_app(
        conveyor,
        on_start=on_start,
        on_stop=on_stop,
        drafting=GeneratorSettings.of(settings),
        metrics_token=settings.metrics_token,
        throttles=Throttles(ThrottleSettings.of(settings)),
    )
    web.install(app)
    return app
