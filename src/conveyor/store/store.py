"""Store: the async face of the database. Each method is one transaction run on a small
thread pool, so the event loop never blocks on I/O and no connection is set up per step."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from conveyor.engine.interfaces import (
    Changes,
    ClaimedExecution,
    Clock,
    EventRecord,
    Signal,
)
from conveyor.engine.state import ExecutionStatus
from conveyor.errors import ConveyorError, LeaseLost, StoreUnavailable
from conveyor.store import claims, controls, history, transitions, triggers, workflows
from conveyor.store import executions as queue
from conveyor.store.channels import LIVE_CHANNEL
from conveyor.store.clock import DatabaseClock, measure_offset
from conveyor.store.commits import GroupCommits
from conveyor.store.database import Database, new_id
from conveyor.store.executions import NewExecution
from conveyor.store.history import ExecutionFilter
from conveyor.store.live_messages import LiveMessage
from conveyor.store.prepared import run_together
from conveyor.store.subscribers import Subscribers
from conveyor.store.waits import FinishWatch
from conveyor.store.workflows import VersionRef

T = TypeVar("T")
log = logging.getLogger(__name__)
_ACCOUNTS = "conveyor.store.accounts"
_MAX_BATCH = 256  # transitions per group commit
_MAX_VERSIONS = 1024  # versions remembered for one-statement enqueues


class Store:
    def __init__(self, db: Database, *, clock: Clock | None = None, threads: int = 4) -> None:
        self.db = db
        # The database's clock by default (aligned by a worker, see align_clock).
        self.clock: Clock = clock or DatabaseClock()
        # Each runs on the event loop it was added from (the server's embedded worker has
        # a loop of its own).
        self.listeners: Subscribers[list[EventRecord]] = Subscribers()
        # Called after a commit that may give workers in this process something to do.
        self.wake_listeners: Subscribers[str] = Subscribers()
        # Live-only messages about a step (``LiveMessage``): progress, streamed text.
        self.live_listeners: Subscribers[LiveMessage] = Subscribers()
        self.origin = new_id()  # tells this process's own NOTIFYs from others'
        self._notifying: set[asyncio.Task[None]] = set()
        # Reads and writes on threads of their own: writes that wait for a lock (SQLite's
        # one write lock held by a stopped process, for up to the busy timeout) must not
        # take every thread, or reads, and the claim loop's first look, would wait too.
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="conveyor-db")
        self._reads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="conveyor-read")
        self._batch: list[tuple[ClaimedExecution, Changes, asyncio.Future[None]]] = []
        # PostgreSQL: the version each (workspace, workflow, version) enqueue found last;
        # an enqueue of it is then one statement that checks it is still current.
        self._versions: dict[tuple[str, str, int | None], VersionRef] = {}
        self._committer: asyncio.Task[None] | None = None
        # Waits for finishes, one watch per event loop (the server's embedded worker has its own).
        self._finishes: dict[asyncio.AbstractEventLoop, FinishWatch] = {}
        # Writes to accounts (users, sessions, API keys, members, workspaces) made through
        # this store; a cache of what was read from them keeps the count it was read at.
        self.accounts_changes = 0
        self.commits = GroupCommits()

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(connection, *args, **kwargs)`` in one write transaction."""
        return await self._call(True, fn, *args, **kwargs)

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(connection, *args, **kwargs)`` in one read transaction."""
        return await self._call(False, fn, *args, **kwargs)

    async def _call(self, write: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def work() -> tuple[T, list[EventRecord]]:
            with self.db.write() if write else self.db.read() as conn:
                # Taken now: a connection that fails below may refuse any later access.
                info = conn.info
                try:
                    result = fn(conn, *args, **kwargs)
                finally:
                    # Always taken off: the info dict outlives this checkout of the connection.
                    added: list[EventRecord] = info.pop(controls.PENDING_EVENTS, [])
                    notified = {k: info.pop(k) for k in list(info) if k.startswith("conveyor.")}
            # Only reached once the transaction committed.
            self.db.dialect.after_commit(self.db.url, notified)
            return result, added

        pool = self._pool if write else self._reads
        if write:
            self.commits.write_transactions += 1
        try:
            result, added = await asyncio.get_running_loop().run_in_executor(pool, partial(work))
        finally:
            if write and getattr(fn, "__module__", None) == _ACCOUNTS:
                # Counted once the write is over (committed or not): what was read of
                # users, keys, members and workspaces before it may be stale now.
                self.accounts_changes += 1
        self._publish(added)
        return result

    def _wake(self, reason: str) -> None:
        self.wake_listeners(reason)

    def _publish(self, records: list[EventRecord]) -> None:
        if records:
            self.listeners(records)

    def publish_live(self, execution_id: str, kind: str, data: dict[str, Any]) -> None:
        """Hand a live-only message to this process's streams at once and, on PostgreSQL,
        to other processes' (NOTIFY, without waiting for it). Nothing is stored: a stream
        that connects later never sees it."""
        message = LiveMessage(execution_id, kind, data)
        self.live_listeners(message)
        if self.db.dialect.name != "postgresql":
            return
        payload = message.encode(self.origin)
        if payload is None:
            return
        task = asyncio.get_running_loop().create_task(self._notify_live(payload))
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    async def _notify_live(self, payload: str) -> None:
        try:
            await self.write(self.db.dialect.notify, LIVE_CHANNEL, payload)
        except Exception as exc:  # live-only: a lost message is not worth failing a step
            log.debug("live message not sent: %s", exc)

    # -- the runner's interface ------------------------------------------------------------
    async def apply(self, execution: ClaimedExecution, changes: Changes) -> None:
        """Commit one transition; returns once it is durable.

        Group commit: transitions that runners hand in while a commit is under way wait for
        the next one and share it, so a busy worker pays one transaction per batch instead of
        one per step, and an idle one adds no delay."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.append((execution, changes, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_batches())
        await done

    async def _commit_batches(self) -> None:
        while self._batch:
            batch, self._batch = _one_each(self._batch)
            pairs = [(execution, changes) for execution, changes, _ in batch]
            self.commits.record(len(batch))
            outcomes: list[list[EventRecord] | BaseException]
            try:
                if transitions.in_one_statement(self.db.dialect, pairs):
                    outcomes = await self._in_one(pairs)
                else:
                    outcomes = list(
                        await self.write(
                            transitions.apply_many, self.db.dialect, pairs, self.clock.now()
                        )
                    )
            except Exception as exc:
                if len(batch) == 1 or _outcome_unknown(exc):
                    # Lost during the commit, the batch may have been written: written
                    # again alone, each transition would repeat its events and counters.
                    # Each runner gives its execution up; whoever resumes it reads what
                    # was committed (G12).
                    outcomes = [exc] * len(batch)
                else:  # isolate: one execution's failure must not fail the others
                    outcomes = await asyncio.gather(
                        *(self._apply_alone(e, c) for e, c in pairs),
                        return_exceptions=True,
                    )
            for (execution, changes, done), outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    if not done.done():
                        done.set_exception(outcome)
                    continue
                self._publish(outcome)
                if changes.status is not None and changes.status.terminal:
                    self._wake(f"finished:{execution.id}")
                if not done.done():
                    done.set_result(None)

    async def _in_one(
        self, pairs: list[tuple[ClaimedExecution, Changes]]
    ) -> list[list[EventRecord] | BaseException]:
        """A batch written by one statement in autocommit (``transitions.apply_in_one``);
        the final writes it leaves alone are then made the usual way, in a transaction of
        their own (nothing of theirs was written)."""
        now = self.clock.now()
        self.commits.write_transactions += 1  # one statement in autocommit is one

        def work() -> list[list[EventRecord] | LeaseLost | None]:
            with self.db.autocommit() as conn:
                return transitions.apply_in_one(conn, self.db.dialect, pairs, now)

        written = await asyncio.get_running_loop().run_in_executor(self._pool, work)
        left = [pair for pair, outcome in zip(pairs, written, strict=True) if outcome is None]
        usual: list[list[EventRecord] | BaseException] = []
        if left:
            # The rest of the batch is committed: an error here is these writes' alone.
            try:
                usual = list(
                    await self.write(
                        transitions.apply_many, self.db.dialect, left, self.clock.now()
                    )
                )
            except Exception as exc:
                usual = [exc] * len(left)
        rest = iter(usual)
        return [next(rest) if outcome is None else outcome for outcome in written]

    async def _apply_alone(
        self, execution: ClaimedExecution, changes: Changes
    ) -> list[EventRecord]:
        return await self.write(
            transitions.apply, self.db.dialect, execution, changes, self.clock.now()
        )

    async def pending_signals(self, execution_id: str) -> list[Signal]:
        rows = await self.read(controls.pending_signals, execution_id)
        return [Signal(i, name, data) for i, name, data in rows]

    # -- the queue ---------------------------------------------------------------------------
    async def enqueue(
        self, new: NewExecution, seed_from: tuple[str, set[str]] | None = None
    ) -> tuple[str, bool]:
        """Enqueue; ``seed_from`` (execution id, node ids) reuses committed step outputs."""

        def write(conn: Connection) -> tuple[str, bool]:
            return self._enqueue(conn, new, seed_from)

        result = await self.write(write)
        self._wake("queued")
        return result

    async def enqueue_version(
        self,
        workspace_id: str,
        workflow: str,
        version: int | None,
        build: Callable[[VersionRef], NewExecution],
    ) -> tuple[VersionRef, str, bool]:
        """Find the workflow version and enqueue ``build(version)`` in ONE transaction (the
        API's and CLI's submit: one round of the database instead of two)."""

        key = (workspace_id, workflow, version)
        known = self._versions.get(key)
        if known is not None:
            done = await self._enqueue_known(known, workflow, version, build)
            if done is not None:
                return done
            self._versions.pop(key, None)

        def write(conn: Connection) -> tuple[VersionRef, str, bool]:
            ref = workflows.find_version(conn, workspace_id, workflow, version)
            return (ref, *self._enqueue(conn, build(ref), None))

        result = await self.write(write)
        self._wake("queued")
        if self.db.dialect.name == "postgresql":
            if len(self._versions) >= _MAX_VERSIONS:
                self._versions.clear()
            self._versions[key] = result[0]
        return result

    async def _enqueue_known(
        self,
        ref: VersionRef,
        workflow: str,
        version: int | None,
        build: Callable[[VersionRef], NewExecution],
    ) -> tuple[VersionRef, str, bool] | None:
        """PostgreSQL: enqueue ``build(ref)`` for a version read by an earlier enqueue, in
        ONE statement that writes only if the version is still the one ``find_version``
        gives (``executions.enqueue_in_one``). None: not written (the version or the
        workflow's status changed, ``build`` refused it, or a concurrent enqueue took the
        key); the caller enqueues the usual way, which reads everything afresh."""
        try:
            new = build(ref)
        except ConveyorError:  # perhaps from a stale status: the usual way says for sure
            return None
        execution_id = new_id()
        now = self.clock.now()
        notify = [
            (controls.WAKE_CHANNEL, "queued"),
            (controls.EVENTS_CHANNEL, f"{new.workspace_id}:{execution_id}"),
        ]

        self.commits.write_transactions += 1  # one statement in autocommit is one

        def work() -> queue.Enqueued:
            with self.db.autocommit() as conn:
                return queue.enqueue_in_one(
                    conn, new, execution_id, workflow, version, ref.status, notify, now
                )

        done = await asyncio.get_running_loop().run_in_executor(self._pool, work)
        if not done.fresh or done.execution_id is None:
            return None
        if done.created:
            self._publish([queue.queued_event(new, execution_id, now)])
            self._wake("queued")
        return ref, done.execution_id, done.created

    async def enqueue_many(
        self,
        workspace_id: str,
        workflow: str,
        version: int | None,
        build: Callable[[VersionRef, T], NewExecution],
        items: list[T],
    ) -> tuple[VersionRef, list[tuple[str, bool] | ConveyorError]]:
        """Find the workflow version once and enqueue ``build(version, item)`` for each item,
        all in ONE transaction (one commit for a whole batch); an item that raises a
        ConveyorError is rolled back alone and its error returned in its place."""

        def write(
            conn: Connection,
        ) -> tuple[VersionRef, list[tuple[str, bool] | ConveyorError]]:
            ref = workflows.find_version(conn, workspace_id, workflow, version)
            built = [_built(build, ref, item) for item in items]
            news = [b for b in built if isinstance(b, NewExecution)]
            now = self.clock.now()
            try:
                with conn.begin_nested():
                    enqueued = queue.enqueue_batch(conn, news, now) if news else []
            except IntegrityError:  # a concurrent enqueue took one of the keys: one by one
                return ref, each(conn, self._enqueue_built, built)
            pairs = zip(news, enqueued, strict=True)
            self._announce(conn, [(n, e) for n, (e, created) in pairs if created], now)
            done = iter(enqueued)
            return ref, [b if isinstance(b, ConveyorError) else next(done) for b in built]

        result = await self.write(write)
        self._wake("queued")
        return result

    async def enqueue_triggered(
        self,
        workspace_id: str,
        workflow_id: str,
        build: Callable[[VersionRef], NewExecution],
        record: Callable[[Connection, str, bool], None],
    ) -> tuple[VersionRef, str, bool]:
        """Enqueue ``build(latest version)`` and let ``record(conn, execution id, created)``
        write what the trigger keeps of it (a webhook delivery), in ONE transaction."""

        def write(conn: Connection) -> tuple[VersionRef, str, bool]:
            ref = workflows.find_version(conn, workspace_id, workflow_id, None)
            execution_id, created = self._enqueue(conn, build(ref), None)
            record(conn, execution_id, created)
            return ref, execution_id, created

        result = await self.write(write)
        self._wake("queued")
        return result

    def enqueue_in(self, conn: Connection, new: NewExecution) -> tuple[str, bool]:
        """Enqueue inside a transaction the caller runs with :meth:`write` (a schedule's
        occurrence with its fire row): other processes hear of it at commit; call
        :meth:`wake` after the commit for this process's workers."""
        return self._enqueue(conn, new, None)

    def wake(self, reason: str) -> None:
        """Tell this process's workers: ``queued``, or a control message."""
        self._wake(reason)

    def _enqueue(
        self, conn: Connection, new: NewExecution, seed_from: tuple[str, set[str]] | None
    ) -> tuple[str, bool]:
        now = self.clock.now()
        execution_id, created = queue.enqueue(conn, new, now)
        if created and seed_from is not None:
            controls.seed_steps(conn, seed_from[0], execution_id, seed_from[1], now)
        if created:
            self._announce(conn, [(new, execution_id)], now)
        return execution_id, created

    def _enqueue_built(
        self, conn: Connection, built: NewExecution | ConveyorError
    ) -> tuple[str, bool]:
        if isinstance(built, ConveyorError):
            raise built
        return self._enqueue(conn, built, None)

    def _announce(
        self, conn: Connection, created: list[tuple[NewExecution, str]], now: datetime
    ) -> None:
        """Workers hear of new work, live feeds of the new events: one round trip for both
        (on commit); this process's listeners get the events after the commit."""
        if not created:
            return
        dialect = self.db.dialect
        announce = [f"{new.workspace_id}:{execution_id}" for new, execution_id in created]
        run_together(
            conn,
            dialect.notify_calls(conn, controls.WAKE_CHANNEL, ["queued"])
            + dialect.notify_calls(conn, controls.EVENTS_CHANNEL, announce),
        )
        pending = conn.info.setdefault(controls.PENDING_EVENTS, [])
        pending.extend(queue.queued_event(new, execution_id, now) for new, execution_id in created)

    async def cancel_each(
        self, workspace_id: str, execution_ids: list[str]
    ) -> list[str | ConveyorError]:
        """Cancel each execution, all in one transaction but each alone: one that fails is
        rolled back by itself and its error is returned in its place."""
        now = self.clock.now()

        def cancel(conn: Connection, execution_id: str) -> str:
            return controls.cancel(conn, self.db.dialect, workspace_id, execution_id, now)

        results = await self.write(each, cancel, execution_ids)
        for execution_id, result in zip(execution_ids, results, strict=True):
            if result == "running":
                self._wake(controls.control_message(execution_id, "cancel"))
        return results

    async def enqueue_each(
        self, build: Callable[[Connection, T], NewExecution | Seeded], items: list[T]
    ) -> list[tuple[str, bool] | ConveyorError]:
        """Enqueue an execution built from each item (``build`` reads what it needs in the
        same transaction; a ``Seeded`` one reuses committed step outputs): one transaction
        for all, each item alone (see :meth:`cancel_each`)."""

        def enqueue(conn: Connection, item: T) -> tuple[str, bool]:
            built = build(conn, item)
            new, seed = built if isinstance(built, tuple) else (built, None)
            return self._enqueue(conn, new, seed)

        results = await self.write(each, enqueue, items)
        self._wake("queued")
        return results

    async def cancel(self, workspace_id: str, execution_id: str) -> str:
        status = await self.write(
            controls.cancel, self.db.dialect, workspace_id, execution_id, self.clock.now()
        )
        self._wake(controls.control_message(execution_id, "cancel"))
        return status

    async def set_paused(self, workspace_id: str, execution_id: str, paused: bool) -> str:
        status = await self.write(
            controls.set_paused,
            self.db.dialect,
            workspace_id,
            execution_id,
            paused,
            self.clock.now(),
        )
        self._wake(controls.control_message(execution_id, "pause" if paused else "resume"))
        return status

    async def signal(self, workspace_id: str, execution_id: str, name: str, data: Any) -> int:
        signal_id = await self.write(
            controls.signal,
            self.db.dialect,
            workspace_id,
            execution_id,
            name,
            data,
            self.clock.now(),
        )
        self._wake(controls.control_message(execution_id, "signal"))
        return signal_id

    def listener(
        self, on_message: Callable[[str], None], channel: str = controls.WAKE_CHANNEL
    ) -> Coroutine[Any, Any, None] | None:
        """A coroutine delivering cross-process notifications on ``channel``: PostgreSQL
        NOTIFY payloads, or on SQLite ``changed`` whenever another process committed
        something for the channel (its file). None where neither exists (then: poll)."""
        bus = self.db.dialect.listener(self.db.url, channel, on_message)
        if bus is None:
            return self.db.dialect.watch_changes(self.db.url, on_message, channel)
        return bus

    async def wait_finished(
        self, execution_id: str, workspace_id: str | None = None
    ) -> ExecutionStatus:
        """The terminal status of an execution, once it has one, heard from the finishing
        commit (see store/waits.py)."""
        loop = asyncio.get_running_loop()
        watch = self._finishes.get(loop)
        if watch is None:
            for closed in [known for known in self._finishes if known.is_closed()]:
                self._finishes.pop(closed).close()
            watch = self._finishes[loop] = FinishWatch(self)
        return await watch.wait(execution_id, workspace_id)

    async def control_state(self, owner: str) -> list[tuple[str, bool, bool, int | None]]:
        return await self.read(claims.control_state, owner)

    async def claim(
        self,
        owner: str,
        *,
        lease_seconds: float,
        limit: int = 1,
        execution_id: str | None = None,
    ) -> list[ClaimedExecution]:
        return await self.write(
            claims.claim,
            self.db.dialect,
            owner=owner,
            lease_seconds=lease_seconds,
            limit=limit,
            now=self.clock.now(),
            execution_id=execution_id,
        )

    async def claim_or_next_due(
        self,
        owner: str,
        *,
        lease_seconds: float,
        limit: int,
        idle: bool = False,
        family: set[str] | None = None,
    ) -> tuple[list[ClaimedExecution], datetime | None]:
        """Claim ready executions; when there are none, say when the next waiting one is due
        (one transaction either way, so an idle worker costs one round trip per poll).
        ``idle``: the worker runs nothing, so it may take a suspect to run alone;
        ``family``: only these executions and their children (``conveyor run``)."""

        if not self.db.dialect.supports_skip_locked and family is None:
            # SQLite: look before taking the write lock, which would stall other writers.
            ready, due = await self.read(claims.peek, self.db.dialect, self.clock.now(), idle)
            if not ready:
                return [], due

        def work(conn: Connection) -> tuple[list[ClaimedExecution], datetime | None]:
            claimed = claims.claim(
                conn,
                self.db.dialect,
                owner=owner,
                lease_seconds=lease_seconds,
                limit=limit,
                now=self.clock.now(),
                idle=idle,
                family=family,
            )
            return claimed, None if claimed else claims.next_due(conn)

        return await self.write(work)

    async def align_clock(self) -> None:
        """Measure this process's clock against the database's, when the store keeps the
        database's time (an injected clock, as in tests, is left alone)."""
        if isinstance(self.clock, DatabaseClock):
            self.clock.offset = await self.read(measure_offset, self.db.dialect)

    async def heartbeat(
        self, owner: str, lease_seconds: float, ids: list[str]
    ) -> list[tuple[str, bool]]:
        return await self.write(claims.heartbeat, self.db.dialect, owner, lease_seconds, ids)

    async def release(self, execution: ClaimedExecution) -> bool:
        return await self.write(claims.release, execution)

    # -- workflows ---------------------------------------------------------------------------
    async def workspace(self, name: str) -> str:
        return await self.write(workflows.workspace_id, name, self.clock.now())

    async def apply_definition(
        self, workspace_id: str, definition: dict[str, Any], seal: triggers.Seal
    ) -> VersionRef:
        """Store a new version and bring its declared triggers in step, in one transaction
        (``seal`` encrypts the webhook secrets generated meanwhile)."""

        def write(conn: Connection) -> VersionRef:
            now = self.clock.now()
            ref = workflows.apply_definition(conn, workspace_id, definition, now)
            if not ref.created:
                return ref
            declared = definition.get("triggers", [])
            changes = triggers.sync_declared(
                conn, workspace_id, ref.workflow_id, declared, now, seal
            )
            if changes:
                self.db.dialect.notify(conn, controls.WAKE_CHANNEL, "triggers")
            return dataclasses.replace(ref, triggers=tuple(changes))

        return await self.write(write)

    async def find_version(
        self, workspace_id: str, workflow: str, version: int | None = None
    ) -> VersionRef:
        return await self.read(workflows.find_version, workspace_id, workflow, version)

    async def list_workflows(self, workspace_id: str) -> list[dict[str, Any]]:
        return await self.read(workflows.list_workflows, workspace_id)

    # -- history -----------------------------------------------------------------------------
    async def get_execution(
        self, workspace_id: str, execution_id: str, *, max_payload_bytes: int | None = None
    ) -> dict[str, Any]:
        """An execution with its steps; step payloads over ``max_payload_bytes`` (if given)
        are replaced by ``{"truncated": true, "bytes": N}``."""
        payloads = None
        if max_payload_bytes is not None:
            payloads = history.Payloads(self.db.dialect, max_payload_bytes)
        return await self.read(
            history.get_execution, workspace_id, execution_id, self.clock.now(), payloads
        )

    async def execution_row(self, execution_id: str) -> dict[str, Any]:
        return await self.read(history.execution_row, execution_id)

    async def list_executions(self, f: ExecutionFilter) -> list[dict[str, Any]]:
        return await self.read(history.list_executions, f)

    async def events_after(self, execution_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        return await self.read(history.events_after, execution_id, after_seq)

    def close(self) -> None:
        for watch in self._finishes.values():
            watch.close()
        self._pool.shutdown(wait=True)
        self._reads.shutdown(wait=True)
        self.db.dispose()


def _built(
    build: Callable[[VersionRef, T], NewExecution], ref: VersionRef, item: T
) -> NewExecution | ConveyorError:
    try:
        return build(ref, item)
    except ConveyorError as exc:
        return exc


Seeded = tuple[NewExecution, tuple[str, set[str]]]
"""A new execution and what it reuses: (source execution id, node ids of its steps)."""
R = TypeVar("R")


def each(
    conn: Connection, fn: Callable[[Connection, T], R], items: list[T]
) -> list[R | ConveyorError]:
    """``fn(conn, item)`` for each item, each in a savepoint: an item that raises a
    ConveyorError is rolled back alone (its announced events too) and the error is
    returned in its place; any other error fails the whole transaction."""
    results: list[R | ConveyorError] = []
    for item in items:
        announced = len(conn.info.get(controls.PENDING_EVENTS, []))
        try:
            with conn.begin_nested():
                results.append(fn(conn, item))
        except ConveyorError as exc:
            del conn.info.get(controls.PENDING_EVENTS, [])[announced:]
            results.append(exc)
    return results


Pending = tuple[ClaimedExecution, Changes, "asyncio.Future[None]"]


def _outcome_unknown(exc: Exception) -> bool:
    """The connection failed, so whether the transaction committed is unknown."""
    return isinstance(exc, StoreUnavailable) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def _one_each(pending: list[Pending]) -> tuple[list[Pending], list[Pending]]:
    """The next batch (each execution at most once, at most _MAX_BATCH) and the rest."""
    batch: list[Pending] = []
    rest: list[Pending] = []
    seen: set[str] = set()
    for item in pending:
        if len(batch) < _MAX_BATCH and item[0].id not in seen:
            seen.add(item[0].id)
            batch.append(item)
        else:
            rest.append(item)
    return batch, rest
