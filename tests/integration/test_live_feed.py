"""The live feed (``conveyor.live``): one read per batch of events however many subscribe,
gaps in PostgreSQL's ids held back until settled, and SQLite commits of other processes
delivered promptly through the ``<database>-events`` file."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, live
from conveyor.live import Delivery, Feed, Subscription
from conveyor.store import controls
from conveyor.store import feed as reads

ONE_STEP = {"name": "w", "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}]}


@contextlib.asynccontextmanager
async def running(feed: Feed) -> AsyncIterator[Feed]:
    await feed.start()
    try:
        yield feed
    finally:
        await feed.stop()


async def take(subscription: Subscription, until: Callable[[list[dict[str, Any]]], bool]) -> Any:
    """The rows delivered to ``subscription`` until ``until(rows)`` holds (10 s at most)."""
    rows: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while not until(rows):
            for delivery in await subscription.next(10) or []:
                rows.extend(delivery.rows)
    return rows


def types(rows: list[dict[str, Any]]) -> list[str]:
    return [r["type"] for r in rows]


async def test_fifty_subscribers_cost_one_read_per_batch(
    conveyor: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    await conveyor.apply(ONE_STEP)
    target = (await conveyor.execute("w")).execution_id
    calls: Counter[str] = Counter()
    read = conveyor.store.read

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls[fn.__name__] += 1
        return await read(fn, *args, **kwargs)

    def counting(name: str, real: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            calls[name] += 1
            return real(*args)

        return wrapper

    monkeypatch.setattr(conveyor.store, "read", counted)
    monkeypatch.setattr(reads, "counts", counting("counts", reads.counts))
    monkeypatch.setattr(reads, "progress", counting("progress", reads.progress))
    feed = Feed(conveyor.store, min_interval=0)
    async with running(feed), contextlib.AsyncExitStack() as stack:
        keys = [live.workspace(conveyor.workspace_id)] * 25 + [live.execution(target)] * 25
        subscriptions = [await stack.enter_async_context(feed.subscribe(k)) for k in keys]
        assert {s.start for s in subscriptions} == {subscriptions[0].start}
        calls.clear()
        await conveyor.signal(target, "one", {"n": 1})
        got: list[list[Delivery]] = []
        for subscription in subscriptions:
            deliveries = await subscription.next(10)
            assert deliveries is not None
            got.append(deliveries)
        reads_made = calls["read"]
    assert all(types(d[0].rows) == ["execution.signal"] for d in got), got
    # Each key's delivery is one object shared by its subscribers, with its snapshot.
    assert len({id(d[0]) for d in got[:25]}) == len({id(d[0]) for d in got[25:]}) == 1
    assert got[0][0].snapshot == {"queued": 1, "running": 0, "waiting": 0}
    assert got[25][0].snapshot["id"] == target
    # One read (a second may follow the commit's own notification), never one per
    # subscriber; nothing else read; counts and progress once per read that had events.
    assert 1 <= reads_made <= 3, calls
    assert set(calls) <= {"read", "counts", "progress", "signal"}, calls
    assert calls["counts"] == calls["progress"] == 1, calls


async def test_a_subscription_starts_where_the_database_catch_up_ends(
    conveyor: Conveyor,
) -> None:
    """Events up to ``start`` are in the database, everything after comes from the feed."""
    await conveyor.apply(ONE_STEP)
    target = (await conveyor.execute("w")).execution_id
    feed = Feed(conveyor.store, min_interval=0)
    async with running(feed), feed.subscribe(live.workspace(conveyor.workspace_id)) as sub:
        assert sub.start is not None
        stored, _ = await conveyor.store.read(
            reads.workspace_events, conveyor.workspace_id, 0, sub.start, 100
        )
        assert types(stored) == ["execution.queued"]
        await conveyor.signal(target, "later", {})
        rows = await take(sub, lambda rows: bool(rows))
        assert types(rows) == ["execution.signal"] and rows[0]["id"] > sub.start


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.parametrize("outcome", ["commit", "rollback"])
async def test_a_gap_in_the_ids_holds_delivery_back_until_it_is_settled(
    conveyor: Conveyor, outcome: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a transaction that took id N commits after the one that took N + 1.
    The feed must not deliver N + 1 before N (nor skip N); a rolled-back N is passed."""
    await conveyor.apply(ONE_STEP)
    held_for = (await conveyor.execute("w")).execution_id
    later_for = (await conveyor.execute("w")).execution_id
    store = conveyor.store
    feed_reads: asyncio.Queue[None] = asyncio.Queue()
    read = store.read

    async def noted(fn: Any, *args: Any) -> Any:
        result = await read(fn, *args)
        if fn is reads.read:
            feed_reads.put_nowait(None)
        return result

    monkeypatch.setattr(store, "read", noted)
    feed = Feed(store, min_interval=0)
    async with running(feed), feed.subscribe(live.workspace(conveyor.workspace_id)) as sub:
        with store.db.engine.connect() as held:
            transaction = held.begin()
            controls.add_event(
                held,
                store.db.dialect,
                held_for,
                conveyor.workspace_id,
                "test.held",
                {},
                datetime.now(UTC),
            )
            await conveyor.signal(later_for, "later", {})  # the next id, committed
            while not feed_reads.empty():
                feed_reads.get_nowait()
            async with asyncio.timeout(10):  # the feed re-reads while the gap is open
                for _ in range(3):
                    await feed_reads.get()
            assert await sub.next(0) is None  # the later event was held back
            transaction.commit() if outcome == "commit" else transaction.rollback()
        rows = await take(sub, lambda rows: "execution.signal" in types(rows))
    expected = ["test.held", "execution.signal"] if outcome == "commit" else ["execution.signal"]
    assert types(rows) == expected
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)


RUN_ELSEWHERE = """
import asyncio, sys, time
from conveyor import Conveyor, build_registry
from conveyor.engine.interfaces import SystemClock
from conveyor.worker import Worker

async def main():
    app = await Conveyor.open(sys.argv[1], build_registry())
    try:
        execution_id = (await app.execute("w", {})).execution_id
        worker = Worker(app.store, app.registry, SystemClock(), limits=app.limits)
        await worker.run_one(execution_id)
        print(execution_id, time.time(), flush=True)
    finally:
        app.close()

asyncio.run(main())
"""


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_events_committed_by_another_process_arrive_promptly(
    conveyor: Conveyor, database_url: str, tmp_path: Path
) -> None:
    """SQLite: no NOTIFY. Another process's commits (enqueue and every step) touch the
    events file, which the feed watches: with its polls an hour apart, only that file can
    bring the events (the 50 ms figure is measured by bench/streams.py)."""
    await conveyor.apply(ONE_STEP)
    feed = Feed(conveyor.store, poll_seconds=3600, safety_poll_seconds=3600)
    async with running(feed), feed.subscribe(live.workspace(conveyor.workspace_id)) as sub:
        elsewhere = asyncio.create_task(
            asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", RUN_ELSEWHERE, database_url],
                capture_output=True,
                text=True,
                timeout=60,
            )
        )
        rows: list[dict[str, Any]] = []
        async with asyncio.timeout(60):
            while "execution.succeeded" not in types(rows):
                for delivery in await sub.next(60) or []:
                    rows.extend(delivery.rows)
        arrived = time.time()
        done = await elsewhere
    assert done.returncode == 0, done.stderr
    execution_id, finished = done.stdout.split()
    assert types(rows) == [
        "execution.queued",
        "execution.started",
        "step.started",
        "step.succeeded",
        "execution.succeeded",
    ]
    assert {r["execution_id"] for r in rows} == {execution_id}
    assert arrived - float(finished) < 2.0
