"""``conveyor worker``: serve (and fire due schedules) until SIGTERM or Ctrl-C, saying on
stderr when it starts and what it did when it stops."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

from conveyor.cli.base import open_waiting
from conveyor.engine.state import TERMINAL
from conveyor.store.executions import EventRecord
from conveyor.triggers.scheduler import Scheduler
from conveyor.worker import Worker, WorkerSettings

log = logging.getLogger(__name__)
# How long a worker that ran something stays idle before it hands the memory freed since
# back to the system (see give_back_memory).
TRIM_AFTER = timedelta(seconds=5)
_FINISHED = frozenset(f"execution.{status.value}" for status in TERMINAL)


class Tally:
    """What one worker process did, counted from the events its own commits publish (a
    count, not the ids: a worker that runs for months would keep every one)."""

    def __init__(self) -> None:
        self.finished = 0
        self.in_flight_at_stop: set[str] = set()
        self._finished_after_stop: set[str] = set()

    def on_events(self, records: list[EventRecord]) -> None:
        for record in records:
            if record.type in _FINISHED:
                self.finished += 1
                if record.execution_id in self.in_flight_at_stop:
                    self._finished_after_stop.add(record.execution_id)

    @property
    def released(self) -> int:
        """Executions running when the stop came that the worker gave back unfinished."""
        return len(self.in_flight_at_stop - self._finished_after_stop)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None elsewhere (musl, macOS)."""
    try:
        return cast("Callable[[int], int]", ctypes.CDLL(None).malloc_trim)
    except (AttributeError, OSError):
        return None


async def give_back_memory(worker: Worker, tally: Tally, stop: asyncio.Event) -> None:
    """Once a burst is over (nothing running for ``TRIM_AFTER``, something finished since
    the last time), return the C heap freed meanwhile to the system: glibc keeps what the
    database threads freed in their own arenas (5 MB after 2,000 executions on SQLite,
    bench/worker_memory.py), so an idle worker would otherwise keep its burst's size."""
    trim = _malloc_trim()
    if trim is None:
        return
    trimmed_at = tally.finished
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TRIM_AFTER.total_seconds())
        if not worker.running and tally.finished != trimmed_at and not stop.is_set():
            trimmed_at = tally.finished
            trim(0)


async def serve(
    database: str,
    registry: Any,
    settings: WorkerSettings,
    scheduler_poll: timedelta | None = None,
    wait_for_database: float = 0.0,
) -> None:
    """Run a worker, and with ``scheduler_poll`` the scheduler beside it, until a signal;
    a database server that does not answer yet is waited for up to ``wait_for_database``
    seconds."""
    conveyor = await open_waiting(database, registry, wait_for_database)
    try:
        worker = Worker(conveyor.store, registry, conveyor.store.clock, settings=settings)
        tally = Tally()
        conveyor.store.listeners.append(tally.on_events)
        stop = asyncio.Event()

        def on_signal() -> None:
            if not stop.is_set():
                tally.in_flight_at_stop = set(worker.running)
                stop.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        url = conveyor.store.db.url.render_as_string(hide_password=True)
        log.info(
            "worker %s started: database %s, concurrency %d, scheduler %s",
            worker.name,
            url,
            settings.concurrency,
            "off" if scheduler_poll is None else "on",
            extra={"action": "worker_started", "worker": worker.name},
        )
        scheduling = None
        if scheduler_poll is not None:
            scheduler = Scheduler(conveyor, poll=scheduler_poll)
            scheduling = asyncio.create_task(scheduler.serve(stop))
        trimming = asyncio.create_task(give_back_memory(worker, tally, stop))
        try:
            await worker.serve(stop)
        finally:
            trimming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trimming
            if scheduling is not None:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await scheduling
        log.info(
            "worker %s stopped: executions finished %d, released unfinished %d",
            worker.name,
            tally.finished,
            tally.released,
            extra={"action": "worker_stopped", "worker": worker.name},
        )
        log.info(
            "worker %s commits: %s",
            worker.name,
            conveyor.store.commits.summary(),
            extra={"action": "worker_commits", "worker": worker.name},
        )
    finally:
        conveyor.close()
