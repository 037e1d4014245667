"""How long Conveyor's own write transactions hold SQLite's single write lock under a small
load (enqueues beside two workers running short executions): from the moment BEGIN
IMMEDIATE has the lock to the end of COMMIT. Every other writer, in every process, waits
that long; a long hold is what makes the busy timeout (and a 503) reachable.

Printed: the count, median, p99 and maximum, and the transactions that held it longest.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, event, select

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.nodes.builtin import build_registry
from conveyor.store.database import Database
from conveyor.store.sqlite import WRITE_OPTION
from conveyor.store.tables import executions
from conveyor.worker import Worker, WorkerSettings

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

EXECUTIONS = 60
# Generous for a loaded 2-core machine (an fsync alone may take tens of milliseconds); a
# write transaction that waits on anything but the disk (a network call, a sleep, another
# lock) goes far past it.
MAX_HOLD = 1.0
WORKFLOW = {
    "name": "hold",
    "nodes": [
        {"id": "a", "type": "transform", "config": {"output": 1}},
        {"id": "b", "type": "transform", "needs": ["a"], "config": {"output": 2}},
        {"id": "c", "type": "transform", "needs": ["a"], "config": {"output": 3}},
        {"id": "d", "type": "transform", "needs": ["b", "c"], "config": {"output": 4}},
    ],
}


class Holds:
    """Times every write transaction of one engine, lock taken to COMMIT done."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seconds: list[tuple[float, str]] = []

        def locked(conn: Connection) -> None:
            # After the dialect's own listener: BEGIN IMMEDIATE has returned.
            if conn.get_execution_options().get(WRITE_OPTION):
                conn.info["locked_at"] = time.perf_counter()

        event.listen(db.engine, "begin", locked)

    @contextmanager
    def write(self, original: Any) -> Iterator[Connection]:
        with original(self.db) as conn:
            info = conn.info
            yield conn
        started = info.pop("locked_at", None)
        if started is not None:
            self.seconds.append((time.perf_counter() - started, _caller()))


def _caller() -> str:
    """The store function that ran in the transaction (``fn`` of Store._call's ``work``)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "work" and "fn" in frame.f_locals:
            fn = frame.f_locals["fn"]
            return str(getattr(fn, "__qualname__", fn))
        frame = frame.f_back  # type: ignore[assignment]
    return "?"


@pytest.mark.timeout(120)
async def test_write_transactions_hold_the_sqlite_lock_briefly(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = build_registry()
    app = await Conveyor.open(database_url, registry)
    holds = Holds(app.store.db)
    original = Database.write
    monkeypatch.setattr(
        Database, "write", lambda db: holds.write(original) if db is app.store.db else original(db)
    )
    settings = WorkerSettings(
        concurrency=4, lease=timedelta(seconds=5), heartbeat=timedelta(seconds=0.2)
    )
    stop = asyncio.Event()
    workers = [Worker(app.store, registry, SystemClock(), settings=settings) for _ in range(2)]
    serving = [asyncio.create_task(w.serve(stop)) for w in workers]
    try:
        await app.apply(WORKFLOW)
        ids = []
        for n in range(EXECUTIONS):
            ids.append((await app.execute("hold", {"n": n})).execution_id)
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 60
        while not await _all_succeeded(app, ids):
            assert time.monotonic() < deadline, "the executions did not finish"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*serving)
        app.close()
    seconds = sorted(s for s, _ in holds.seconds)
    p99 = seconds[int(len(seconds) * 0.99) - 1]
    longest = sorted(holds.seconds, reverse=True)[:5]
    print(
        f"\n{len(seconds)} write transactions: median {statistics.median(seconds) * 1000:.1f} ms,"
        f" p99 {p99 * 1000:.1f} ms, max {seconds[-1] * 1000:.1f} ms; longest: "
        + ", ".join(f"{name} {s * 1000:.1f} ms" for s, name in longest)
    )
    assert seconds[-1] < MAX_HOLD, longest


async def _all_succeeded(app: Conveyor, ids: list[str]) -> bool:
    with app.store.db.read() as conn:
        statuses = conn.execute(
            select(executions.c.status).where(executions.c.id.in_(ids))
        ).scalars()
        return set(statuses) == {"succeeded"}
