"""The worker: claims executions into slots, renews their leases, notices controls (cancel,
pause, signals), dead-letters crash loops, and shuts down gracefully.

Wake-ups come from three places, cheapest first: commits in this process
(``Store.wake_listeners``), PostgreSQL NOTIFY from other processes, and a slow poll that is
only a safety net (and the cross-process path on SQLite).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from conveyor import failpoints
from conveyor.app import RuntimeServices
from conveyor.engine.execution_state import Control
from conveyor.engine.interfaces import ClaimedExecution, Clock
from conveyor.engine.limits import DEFAULT_LIMITS, Limits
from conveyor.engine.runner import FOREVER, Runner
from conveyor.engine.state import ExecutionStatus
from conveyor.errors import ConveyorError, LeaseLost
from conveyor.nodes.registry import Registry
from conveyor.secrets import Keyring
from conveyor.store import Store, claims
from conveyor.store.database import new_id

log = logging.getLogger(__name__)
# How often a worker measures its clock against the database's again (a clock stepped by NTP).
ALIGN_SECONDS = 60.0


def worker_name() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{new_id()[-6:]}"


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 8
    lease: timedelta = timedelta(seconds=30)
    heartbeat: timedelta = timedelta(seconds=10)
    poll: timedelta = timedelta(seconds=1)
    hold_timers_up_to: timedelta = timedelta(seconds=5)
    max_recoveries: int = 5
    shutdown_grace: timedelta = timedelta(seconds=10)
    limits: Limits = DEFAULT_LIMITS


class Worker:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: Clock,
        *,
        settings: WorkerSettings | None = None,
        name: str | None = None,
        keyring: Keyring | None = None,
        **overrides: Any,
    ) -> None:
        """``overrides`` replace single fields of ``settings`` (``concurrency=16``);
        ``keyring`` decrypts credentials (default: loaded on first use, see secrets.py)."""
        base = replace(settings or WorkerSettings(), **overrides)
        self.settings = base
        self.store = store
        self.name = name or worker_name()
        self.runner = Runner(
            store,
            registry,
            clock,
            RuntimeServices(store, keyring),
            hold_timers_up_to=base.hold_timers_up_to,
            on_innocent=self._on_innocent,
            limits=base.limits,
            publish_live=store.publish_live,
        )
        self.running: dict[str, asyncio.Task[ExecutionStatus | None]] = {}
        # A suspect this worker runs alone (see store/claims.py): nothing else is claimed
        # until a step of it finishes.
        self._isolating: str | None = None
        # ``run_one``: the executions this worker may claim (one and its children).
        self._family: set[str] | None = None
        self._wake = asyncio.Event()
        self._controls_due = asyncio.Event()
        self._signals_seen: dict[str, int] = {}
        self._listening = False
        self._clock_aligned = 0.0

    @property
    def _lease_seconds(self) -> float:
        return self.settings.lease.total_seconds()

    async def run_one(self, execution_id: str) -> ExecutionStatus | None:
        """Run one execution in this process, with the child executions it starts
        (``workflow.call``), holding its timers; return its final status (CLI ``run`` and
        ``execute --wait``). Controls from other processes reach it as they reach any
        worker. If another worker holds it, follow it (and take over if that one dies).
        Cancelled (Ctrl-C, SIGTERM): everything this worker runs is recorded cancelled."""
        self.runner.hold_timers_up_to = FOREVER
        self._family = {execution_id}
        never = asyncio.Event()
        helpers = self._start_helpers()
        try:
            while True:
                self._wake.clear()
                due = await self._claim()
                if execution_id not in self.running:
                    status = await self.store.read(claims.status_of, execution_id)
                    if status is None or status.terminal:
                        return status
                await self._idle(never, due)
        except asyncio.CancelledError:
            tasks = list(self.running.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            await self._shutdown()
            await self._stop_helpers(helpers)

    async def serve(self, stop: asyncio.Event) -> None:
        """Claim and run executions until ``stop`` is set, then shut down gracefully: claim
        nothing more, let running steps finish within the grace period, release the rest."""
        await self._align_clock()
        helpers = self._start_helpers()
        try:
            while not stop.is_set():
                # Clear before claiming: a wake-up that lands during the claim must not be
                # lost, or the worker would sleep a whole poll with work waiting.
                self._wake.clear()
                due = await self._claim()
                await self._idle(stop, due)
        finally:
            await self._shutdown()
            await self._stop_helpers(helpers)

    async def _claim(self) -> datetime | None:
        """Fill free slots; return when the next waiting execution is due, if known."""
        free = self.settings.concurrency - len(self.running)
        if free <= 0 or self._isolating is not None:
            return None
        await failpoints.reached("claim.before")
        try:
            claimed, due = await self.store.claim_or_next_due(
                self.name,
                lease_seconds=self._lease_seconds,
                limit=free,
                idle=not self.running and self._family is None,
                family=self._family,
            )
        except (ConveyorError, SQLAlchemyError) as exc:
            log.warning("claim failed: %s", exc, extra={"action": "claim_failed"})
            return None
        if claimed:
            await failpoints.reached("claim.after")
        for execution in claimed:
            if execution.isolated:
                self._isolating = execution.id
            if self._family is not None:
                self._family.add(execution.id)
            self._start(execution)
        return due

    def _on_innocent(self, execution_id: str) -> None:
        if self._isolating == execution_id:
            self._isolating = None
            self._wake.set()

    async def _idle(self, stop: asyncio.Event, due: datetime | None) -> None:
        """Sleep until woken, the next waiting execution is due, or the poll interval passes
        (longer while NOTIFY delivers wake-ups: polling is then only a safety net)."""
        timeout = self.settings.poll.total_seconds() * (5 if self._listening else 1)
        if due is not None:
            timeout = min(timeout, max((due - self.store.clock.now()).total_seconds(), 0))
        waiters = {asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _start(self, execution: ClaimedExecution) -> None:
        task = asyncio.create_task(self._run(execution), name=f"execution:{execution.id}")
        self.running[execution.id] = task

        def done(_: asyncio.Task[ExecutionStatus | None]) -> None:
            self.running.pop(execution.id, None)
            if self._isolating == execution.id:
                self._isolating = None
            self._signals_seen.pop(execution.id, None)
            self._wake.set()

        task.add_done_callback(done)

    async def _run(self, execution: ClaimedExecution) -> ExecutionStatus | None:
        try:
            if execution.crashes >= self.settings.max_recoveries:
                return await self.runner.dead_letter(
                    execution,
                    f"dead-lettered: its worker died {execution.crashes} times while "
                    f"running it alone (limit {self.settings.max_recoveries}); retry it by "
                    "hand once the cause is fixed",
                )
            return await self.runner.run(execution)
        except LeaseLost:
            log.warning(
                "lease lost on %s",
                execution.id,
                extra={"action": "lease_lost", "execution": execution.id},
            )
            return None
        except (ConveyorError, SQLAlchemyError) as exc:
            # The database is unreachable or refused a write: abandon the execution. Its
            # lease expires and a worker that can reach the database resumes it from the
            # last committed step (G12); nothing uncommitted is reported as done.
            log.error(
                "abandoning %s: %s",
                execution.id,
                exc,
                extra={"action": "abandon", "execution": execution.id},
            )
            return None

    async def _shutdown(self) -> None:
        if not self.running:
            return
        self.runner.drain()
        tasks = list(self.running.values())
        _done, pending = await asyncio.wait(
            tasks, timeout=self.settings.shutdown_grace.total_seconds()
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- helpers: heartbeats, controls, wake-ups -----------------------------------------------
    def _start_helpers(self) -> list[asyncio.Task[None]]:
        self.store.wake_listeners.append(self._on_wake)
        helpers = [asyncio.create_task(self._heartbeats()), asyncio.create_task(self._controls())]
        listener = self.store.listener(self._on_wake)
        if listener is not None:
            helpers.append(asyncio.create_task(listener))
        return helpers

    async def _stop_helpers(self, helpers: list[asyncio.Task[None]]) -> None:
        self.store.wake_listeners.remove(self._on_wake)
        for task in helpers:
            task.cancel()
        for task in helpers:
            with suppress(asyncio.CancelledError):
                await task

    def _on_wake(self, message: str) -> None:
        """Wake-ups: new work, listener state, and controls (``control:<id>:<action>``),
        which reach the runner at once; the control poll then confirms from the database."""
        if message in ("listening", "not-listening"):
            self._listening = message == "listening"
            self._wake.set()
        elif message.startswith("control:"):
            _, execution_id, action = [*message.split(":", 2), ""][:3]
            control = self.runner.control(execution_id)
            if control is not None:
                self._act(control, action)
                self._controls_due.set()
            self._wake.set()  # a resumed or signalled waiting execution can be claimed
        elif message == "changed":  # SQLite: another process queued, signalled or controlled
            self._controls_due.set()
            self._wake.set()
        elif not message.startswith("finished:"):
            self._wake.set()

    @staticmethod
    def _act(control: Control, action: str) -> None:
        if action == "cancel":
            control.cancel = True
        elif action in ("pause", "resume"):
            control.pause = action == "pause"
        elif action == "signal":
            control.signals_changed = True
        control.poke()

    async def _heartbeats(self) -> None:
        """Renew the leases of the executions this worker runs, in one statement. A worker
        that cannot renew for a whole lease stops starting steps: its executions may already
        belong to someone else."""
        last_renewal = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.settings.heartbeat.total_seconds())
            if not self.running:  # no lease to renew (nor a write lock to take for nothing)
                last_renewal = asyncio.get_running_loop().time()
                continue
            try:
                await failpoints.reached("lease.renew")
                renewed = await self.store.heartbeat(
                    self.name, self._lease_seconds, list(self.running)
                )
            except (ConveyorError, SQLAlchemyError) as exc:
                log.warning("heartbeat failed: %s", exc, extra={"action": "heartbeat_failed"})
                if asyncio.get_running_loop().time() - last_renewal > self._lease_seconds:
                    self.runner.drain()
                continue
            last_renewal = asyncio.get_running_loop().time()
            if last_renewal > self._clock_aligned + ALIGN_SECONDS:
                await self._align_clock()
            for execution_id, cancel in renewed:
                if cancel:
                    self.runner.request_cancel(execution_id)

    async def _align_clock(self) -> None:
        """Keep this process's time on the database's (timers, deadlines and due checks
        agree with every other process even when this machine's clock is off)."""
        before = getattr(self.store.clock, "offset", None)
        try:
            await self.store.align_clock()
        except (ConveyorError, SQLAlchemyError) as exc:
            log.warning("clock alignment failed: %s", exc, extra={"action": "clock_failed"})
        self._clock_aligned = asyncio.get_running_loop().time()
        offset = getattr(self.store.clock, "offset", None)
        if offset and offset != before:
            log.warning(
                "this machine's clock is %.3fs ahead of the database's; using the database's",
                -offset.total_seconds(),
                extra={"action": "clock_offset"},
            )

    async def _controls(self) -> None:
        """Notice cancel, pause and signals for running executions: at once on a wake-up,
        else every poll interval (only while something runs)."""
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    self._controls_due.wait(), self.settings.poll.total_seconds()
                )
            self._controls_due.clear()
            if not self.running:
                continue
            try:
                states = await self.store.control_state(self.name)
            except (ConveyorError, SQLAlchemyError) as exc:
                # As for claims and heartbeats: one line, and the loop goes on (a database
                # outage would otherwise log a traceback every poll, or end this loop).
                log.warning("control poll failed: %s", exc, extra={"action": "control_failed"})
                continue
            for execution_id, cancel, paused, newest_signal in states:
                self._apply_control(execution_id, cancel, paused, newest_signal)

    def _apply_control(
        self, execution_id: str, cancel: bool, paused: bool, newest_signal: int | None
    ) -> None:
        control = self.runner.control(execution_id)
        if control is None:
            return
        changed = False
        if cancel and not control.cancel:
            control.cancel = changed = True
        if paused != control.pause:
            control.pause, changed = paused, True
        if newest_signal is not None and newest_signal > self._signals_seen.get(execution_id, 0):
            self._signals_seen[execution_id] = newest_signal
            control.signals_changed = changed = True
        if changed:
            control.poke()
