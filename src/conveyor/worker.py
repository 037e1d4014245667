"""The worker: claims executions, runs them on slots, renews leases, notices cancellations."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from contextlib import suppress
from datetime import timedelta

from conveyor.engine.interfaces import ClaimedExecution, Clock
from conveyor.engine.runner import FOREVER, Runner
from conveyor.engine.state import ExecutionStatus
from conveyor.errors import ConveyorError, LeaseLost
from conveyor.nodes.registry import Registry
from conveyor.store import Store
from conveyor.store.database import new_id

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{new_id()[-6:]}"


class Worker:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: Clock,
        *,
        concurrency: int = 8,
        lease: timedelta = timedelta(seconds=30),
        heartbeat: timedelta = timedelta(seconds=10),
        poll: timedelta = timedelta(seconds=1),
        hold_timers_up_to: timedelta = timedelta(seconds=5),
        name: str | None = None,
    ) -> None:
        self.store = store
        self.name = name or worker_name()
        self.concurrency = concurrency
        self.lease = lease
        self.heartbeat_interval = heartbeat
        self.poll = poll
        self.runner = Runner(store, registry, clock, hold_timers_up_to=hold_timers_up_to)
        self.running: dict[str, asyncio.Task[ExecutionStatus | None]] = {}
        self._wake = asyncio.Event()

    async def run_one(self, execution_id: str) -> ExecutionStatus | None:
        """Claim one execution and run it in this process, holding its timers (CLI ``run``)."""
        self.runner.hold_timers_up_to = FOREVER
        claimed = await self.store.claim(
            self.name, lease_seconds=self._lease_seconds, execution_id=execution_id
        )
        if not claimed:
            return None
        beat = asyncio.create_task(self._heartbeats())
        try:
            return await self._run(claimed[0])
        finally:
            beat.cancel()
            with suppress(asyncio.CancelledError):
                await beat

    async def serve(self, stop: asyncio.Event) -> None:
        """Claim and run executions until ``stop`` is set."""
        beat = asyncio.create_task(self._heartbeats())
        try:
            while not stop.is_set():
                free = self.concurrency - len(self.running)
                if free > 0:
                    for execution in await self.store.claim(
                        self.name, lease_seconds=self._lease_seconds, limit=free
                    ):
                        self._start(execution)
                self._wake.clear()
                stopper = asyncio.create_task(stop.wait())
                waker = asyncio.create_task(self._wake.wait())
                try:
                    await asyncio.wait(
                        {stopper, waker},
                        timeout=self.poll.total_seconds(),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    stopper.cancel()
                    waker.cancel()
        finally:
            beat.cancel()
            with suppress(asyncio.CancelledError):
                await beat
            if self.running:
                await asyncio.gather(*self.running.values(), return_exceptions=True)

    def _start(self, execution: ClaimedExecution) -> None:
        task = asyncio.create_task(self._run(execution), name=f"execution:{execution.id}")
        self.running[execution.id] = task

        def done(_: asyncio.Task[ExecutionStatus | None]) -> None:
            self.running.pop(execution.id, None)
            self._wake.set()

        task.add_done_callback(done)

    async def _run(self, execution: ClaimedExecution) -> ExecutionStatus | None:
        try:
            return await self.runner.run(execution)
        except LeaseLost:
            log.warning("lease lost", extra={"action": "lease_lost", "execution": execution.id})
            return None

    @property
    def _lease_seconds(self) -> float:
        return self.lease.total_seconds()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval.total_seconds())
            try:
                for execution_id, cancel in await self.store.heartbeat(
                    self.name, self._lease_seconds
                ):
                    if cancel:
                        self.runner.request_cancel(execution_id)
            except ConveyorError:
                log.exception("heartbeat failed", extra={"action": "heartbeat_failed"})
