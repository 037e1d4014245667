"""Live delivery of events: one tail of the events table per process, fanned out in memory
to every stream that subscribed (per execution or per workspace).

The cost of live delivery does not grow with the number of viewers. On a wake-up (a
commit in this process through ``Store.listeners``, PostgreSQL NOTIFY, or on SQLite the
``<database>-events`` file another process touched after committing) ONE task reads the
events after its frontier, once for everybody, together with the live counts of each
workspace and the progress of each execution that has subscribers and new events; it
reads nothing while nobody subscribes. A subscriber gets, in memory, the part of each
batch that concerns it.

Resuming without gaps or duplicates. A subscription starts at the frontier as it is when
it joins (``Subscription.start``): every event up to it is settled, so the stream catches
up from the database up to ``start`` and then takes the batches, all after ``start``. A
subscriber that falls too far behind is dropped from the fan-out and does the same again
(``Feed.restart``).

Why the tail reads by id up to a settled frontier. Workspace streams number their
messages with event ids and resume with ``id > Last-Event-ID``, so they must send ids in
increasing order and never send an id while a lower one may still appear. On PostgreSQL
ids come from a sequence and transactions commit in any order: a lower id can become
visible after a higher one. Remembering "max id seen" would skip it, and re-reading a
window behind it would send ids out of order. Reading per execution by ``seq`` is safe
for execution streams but not for the workspace order. So the tail stops at a gap until
it is settled (``store.feed``): the gap is filled by its commit, or shown to stay empty
once the transactions that held a lock on the events table when the gap was seen have
ended (``pg_locks``: only writers of this database's events table, never the whole
cluster's transactions as ``pg_current_snapshot()`` xmin would). Gaps are short-lived
(an in-flight commit) or rare (a rolled-back write), and contiguous ids, the usual case,
are delivered at once. On SQLite commits are serialized, so every visible id is settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from conveyor.store import Store
from conveyor.store import feed as reads
from conveyor.store.channels import LIVE_CHANNEL
from conveyor.store.controls import EVENTS_CHANNEL
from conveyor.store.executions import EventRecord
from conveyor.store.feed import Barrier, Batch
from conveyor.store.live_messages import LiveMessage

log = logging.getLogger(__name__)

Key = tuple[str, str]  # ("workspace", id) or ("execution", id)
MAX_PENDING = 10_000  # events queued for one subscriber before it must catch up itself
_RETRY_FIRST, _RETRY_MAX = 0.005, 0.25  # re-reads while a gap or the start is unsettled
_DOWN_FIRST, _DOWN_MAX = 0.5, 5.0  # re-reads while the database is away
_PER_SUBSCRIBER = 0.002  # seconds added to the interval between reads per subscriber
_STALL_WARNING = 10.0  # seconds a gap may hold delivery back before it is logged


def workspace(workspace_id: str) -> Key:
    return ("workspace", workspace_id)


def execution(execution_id: str) -> Key:
    return ("execution", execution_id)


@dataclass(eq=False)
class Delivery:
    """One batch's part for one key: its new events in id order, and the snapshot read with
    them (live counts for a workspace, progress for an execution). The same object goes to
    every subscriber of the key, so ``memo`` lets them share what they make of it."""

    rows: list[dict[str, Any]]
    snapshot: dict[str, Any]
    memo: dict[str, Any] = field(default_factory=dict)
    # A live-only message (progress, streamed text) in place of rows: never stored, so
    # never resumed; sent to those connected when it happens.
    live: LiveMessage | None = None


@dataclass
class Delivered:
    """What this process's streams sent live (``/metrics``). ``cpu_seconds`` is the event
    loop thread's CPU time spent rendering and writing those messages and fanning the
    batches out; ``read_seconds`` the wall time of the feed's reads (in a worker thread,
    waiting on the database included)."""

    writes: int = 0
    bytes: int = 0
    cpu_seconds: float = 0.0
    read_seconds: float = 0.0


class Subscription:
    """What one stream receives: deliveries after ``start``, in order."""

    def __init__(self, key: Key, delivered: Delivered | None = None) -> None:
        self.key = key
        self.delivered = delivered if delivered is not None else Delivered()
        self.start: int | None = None  # set once the feed knows its frontier
        self.lost = False  # fell behind: catch up from the database (Feed.restart)
        self._pending: list[Delivery] = []
        self._size = 0
        self._changed = asyncio.Event()
        self._started = asyncio.Event()

    def _begin(self, frontier: int) -> None:
        self.start, self.lost = frontier, False
        self._pending.clear()
        self._size = 0
        self._started.set()

    def _push(self, delivery: Delivery) -> None:
        if self.lost:
            return
        self._size += len(delivery.rows)
        if self._size > MAX_PENDING:
            self.lost = True
            self._pending.clear()
        else:
            self._pending.append(delivery)
        self._changed.set()

    async def next(self, within: float) -> list[Delivery] | None:
        """Everything delivered since the last call, waiting up to ``within`` seconds for
        something; None if nothing came. Empty when the subscription was ``lost``."""
        if not self._pending and not self.lost:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await self._changed.wait()
        self._changed.clear()
        if self.lost:
            return []
        taken, self._pending, self._size = self._pending, [], 0
        return taken or None


class Feed:
    """The process's tail of the events table; see the module docstring."""

    def __init__(
        self,
        store: Store,
        *,
        poll_seconds: float = 0.25,
        safety_poll_seconds: float = 5.0,
        min_interval: float = 0.01,
        max_interval: float = 0.25,
        page: int = 1000,
    ) -> None:
        self.store = store
        self.poll_seconds = poll_seconds  # without cross-process wake-ups
        self.safety_poll_seconds = safety_poll_seconds  # with them (NOTIFY may be missed)
        # Between two reads (only a busy feed waits): from min_interval, plus a little per
        # subscriber, up to max_interval. Each batch costs every subscriber a write to its
        # socket, so with many of them fewer, larger batches keep that cost bounded.
        self.min_interval = min_interval
        self.max_interval = max(min_interval, max_interval)
        self.page = page
        self.cross_process = False
        self.reads = 0  # batches read (tests and metrics)
        self.delivered = Delivered()
        self._subscribers: dict[Key, set[Subscription]] = defaultdict(set)
        self._frontier: int | None = None
        self._barrier: Barrier | None = None
        self._woken = asyncio.Event()
        self._reading = False  # a read is under way: subscriptions begin after its batch
        self._tasks: list[asyncio.Task[None]] = []
        self._stalled_since: float | None = None

    async def start(self) -> None:
        self.store.listeners.append(self._on_records)
        self.store.live_listeners.append(self._on_live)
        listener = self.store.listener(self._on_notify, EVENTS_CHANNEL)
        if listener is not None:
            self.cross_process = True
            self._tasks.append(asyncio.create_task(listener))
        if self.store.db.dialect.name == "postgresql":
            others = self.store.listener(self._on_live_notify, LIVE_CHANNEL)
            if others is not None:
                self._tasks.append(asyncio.create_task(others))
        self._tasks.append(asyncio.create_task(self._run()))

    async def stop(self) -> None:
        if self._on_records in self.store.listeners:
            self.store.listeners.remove(self._on_records)
        if self._on_live in self.store.live_listeners:
            self.store.live_listeners.remove(self._on_live)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # -- subscribing -----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def subscribe(self, key: Key) -> AsyncIterator[Subscription]:
        """A subscription to ``key``, started (``start`` set) before it is handed out."""
        subscription = Subscription(key, self.delivered)
        self._subscribers[key].add(subscription)
        try:
            await self.restart(subscription)
            yield subscription
        finally:
            self._subscribers[key].discard(subscription)
            if not self._subscribers[key]:
                del self._subscribers[key]
            if not self._subscribers:  # idle: read nothing, start afresh when needed
                self._frontier, self._barrier = None, None

    async def restart(self, subscription: Subscription) -> None:
        """(Re)start at the current frontier, between two batches, once the feed knows it:
        the caller then catches up from the database up to ``subscription.start``. (A
        batch read while it joined would lack its snapshot: counts or progress are read
        only for the keys subscribed when the read began.)"""
        subscription._started.clear()
        if self._frontier is not None and not self._reading:
            subscription._begin(self._frontier)
            return
        subscription.start = None
        self._wake()
        await subscription._started.wait()

    # -- wake-ups ----------------------------------------------------------------------------
    def _wake(self) -> None:
        self._woken.set()

    def _on_records(self, records: list[EventRecord]) -> None:
        if self._subscribers:
            self._wake()

    def _on_live(self, message: LiveMessage) -> None:
        """A live-only message: straight to the execution's subscribers, in memory."""
        for subscription in self._subscribers.get(execution(message.execution_id), ()):
            subscription._push(Delivery([], {}, live=message))

    def _on_live_notify(self, payload: str) -> None:
        decoded = LiveMessage.decode(payload)
        if decoded is not None and decoded[0] != self.store.origin:
            self._on_live(decoded[1])

    def _on_notify(self, payload: str) -> None:
        """``<workspace>:<execution>`` payloads (PostgreSQL), ``changed`` (SQLite), or the
        listener's state: any of them may mean events this feed has not read."""
        if payload == "not-listening":
            self.cross_process = False
        elif payload == "listening":
            self.cross_process = True
        if self._subscribers:
            self._wake()

    # -- the tail ----------------------------------------------------------------------------
    async def _run(self) -> None:
        retry = _RETRY_FIRST
        loop = asyncio.get_running_loop()
        last_read = -self.max_interval
        while True:
            await self._wait(retry if self._unsettled() else None)
            if not self._subscribers:
                self._woken.clear()
                continue
            await asyncio.sleep(max(0.0, last_read + self._interval() - loop.time()))
            self._woken.clear()
            last_read = loop.time()
            self._reading = True
            began = time.perf_counter()
            try:
                batch = await self._read()
            except Exception as exc:  # the database is away: streams wait, then go on
                self._reading = False
                retry = min(max(retry * 2, _DOWN_FIRST), _DOWN_MAX)
                log.warning("live feed read failed: %s", exc, extra={"action": "feed_failed"})
                self._woken.set()
                await asyncio.sleep(retry)
                continue
            self._reading = False
            self.delivered.read_seconds += time.perf_counter() - began
            cpu = time.thread_time()
            self._apply(batch)
            self.delivered.cpu_seconds += time.thread_time() - cpu
            retry = min(retry * 2, _RETRY_MAX) if self._unsettled() else _RETRY_FIRST
            if batch.more:
                self._woken.set()

    @property
    def subscribers(self) -> int:
        """Streams (and WebSocket subscriptions) following the feed now."""
        return sum(len(s) for s in self._subscribers.values())

    def _interval(self) -> float:
        count = self.subscribers
        return min(self.min_interval + _PER_SUBSCRIBER * count, self.max_interval)

    def _unsettled(self) -> bool:
        return self._barrier is not None and bool(self._subscribers)

    async def _wait(self, retry: float | None) -> None:
        if self._woken.is_set():
            return
        if retry is not None:
            limit: float | None = retry
        elif not self._subscribers:
            limit = None
        else:
            limit = self.safety_poll_seconds if self.cross_process else self.poll_seconds
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await self._woken.wait()

    async def _read(self) -> Batch:
        keys = list(self._subscribers)
        workspaces = [k for kind, k in keys if kind == "workspace"]
        watched = [k for kind, k in keys if kind == "execution"]
        self.reads += 1
        return await self.store.read(
            reads.read,
            self.store.db.dialect,
            self._frontier,
            self._barrier,
            workspaces,
            watched,
            self.page,
        )

    def _apply(self, batch: Batch) -> None:
        if not self._subscribers:  # all left while it read: start afresh when needed
            return
        self._barrier = batch.barrier
        self._note_stall()
        if batch.base is None or batch.frontier is None:
            return
        grouped: dict[Key, list[dict[str, Any]]] = defaultdict(list)
        for row in batch.rows:
            grouped[workspace(row["workspace_id"])].append(row)
            grouped[execution(row["execution_id"])].append(row)
        for key, rows in grouped.items():
            if key not in self._subscribers:
                continue
            source = batch.counts if key[0] == "workspace" else batch.progress
            delivery = Delivery(rows, source.get(key[1], {}))
            for subscription in self._subscribers[key]:
                if subscription.start is not None:
                    subscription._push(delivery)
        self._frontier = batch.frontier
        for subscribers in self._subscribers.values():  # those that joined meanwhile
            for subscription in subscribers:
                if subscription.start is None:
                    subscription._begin(batch.frontier)

    def _note_stall(self) -> None:
        """Log once when a gap has held delivery back for long (a stuck transaction)."""
        now = asyncio.get_running_loop().time()
        if self._barrier is None:
            self._stalled_since = None
        elif self._stalled_since is None:
            self._stalled_since = now
        elif now - self._stalled_since > _STALL_WARNING:
            log.warning(
                "live feed waits for transactions that may still write event ids <= %s",
                self._barrier.upto,
                extra={"action": "feed_stalled"},
            )
            self._stalled_since = now
