"""SQLite has no NOTIFY: a commit that gives workers work touches ``<database>-wake`` after it
committed, one that writes events ``<database>-events``, and workers and live feeds in other
processes watch those files."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from conveyor import Conveyor, build_registry
from conveyor.store import Database, Store
from conveyor.store import sqlite as sqlite_dialect
from conveyor.store.controls import EVENTS_CHANNEL

ENQUEUE = """
import asyncio, sys
from conveyor import Conveyor, build_registry

async def main():
    app = await Conveyor.open(sys.argv[1], build_registry())
    try:
        await app.execute("w", {})
    finally:
        app.close()

asyncio.run(main())
"""


class Heard:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.events = {"listening": asyncio.Event(), "changed": asyncio.Event()}

    def __call__(self, message: str) -> None:
        self.messages.append(message)
        if message in self.events:
            self.events[message].set()


async def _heard_after_commit(watch: object, database: Path, heard: Heard) -> None:
    task = asyncio.create_task(watch)  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(5):
            await heard.events["listening"].wait()
        assert "changed" not in heard.messages  # nothing wrote yet
        url = f"sqlite:///{database}"
        await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", ENQUEUE, url], check=True, timeout=60
        )
        async with asyncio.timeout(5):
            await heard.events["changed"].wait()
        # Heard only after the commit: the new execution is already there to be claimed.
        with sqlite3.connect(database) as conn:
            assert conn.execute("SELECT count(*) FROM executions").fetchone() == (1,)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.fixture
async def database(tmp_path: Path) -> Path:
    path = tmp_path / "conveyor.db"
    app = await Conveyor.open(f"sqlite:///{path}", build_registry())
    try:
        await app.apply(
            {"name": "w", "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}]}
        )
    finally:
        app.close()
    return path


async def test_a_commit_in_another_process_wakes_the_listener(database: Path) -> None:
    store = Store(Database(f"sqlite:///{database}"))
    heard = Heard()
    try:
        watch = store.listener(heard)
        assert watch is not None
        await _heard_after_commit(watch, database, heard)
    finally:
        store.close()


async def test_the_stat_poll_fallback_hears_the_commit_too(database: Path) -> None:
    heard = Heard()
    wake_file = sqlite_dialect._wake_file(database)
    await _heard_after_commit(sqlite_dialect._poll(wake_file, heard), database, heard)


async def test_a_commit_that_writes_events_wakes_the_event_feeds(database: Path) -> None:
    """Live feeds watch their own file, ``<database>-events``, touched by every commit that
    writes events (so workers are not woken by step commits of other processes)."""
    store = Store(Database(f"sqlite:///{database}"))
    heard = Heard()
    try:
        watch = store.listener(heard, EVENTS_CHANNEL)
        assert watch is not None
        await _heard_after_commit(watch, database, heard)
    finally:
        store.close()
    assert (database.parent / f"{database.name}-events").exists()


def test_a_writer_waits_for_another_connections_write_lock(tmp_path: Path) -> None:
    """BEGIN IMMEDIATE retries in short steps: the lock is taken soon after it is freed."""
    path = tmp_path / "locked.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release() -> None:
        holder.execute("COMMIT")
        released.set()

    timer = threading.Timer(0.2, release)
    timer.start()
    try:
        with db.write() as conn:
            assert released.is_set()  # it did wait for the other writer
            conn.execute(
                text("INSERT INTO workspaces (id, name, created_at) VALUES ('x', 'x', '')")
            )
        with db.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM workspaces")).scalar() == 1
    finally:
        timer.cancel()
        holder.close()
        db.dispose()
