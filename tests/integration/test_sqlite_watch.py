"""SQLite has no NOTIFY: workers hear other processes' commits from the database files."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.store import Database, Store
from conveyor.store import sqlite as sqlite_dialect
from conveyor.store.controls import EVENTS_CHANNEL

WRITE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("INSERT INTO workspaces (id, name, created_at) VALUES ('w', 'other', '2026')")
conn.commit()
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
        await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", WRITE, str(database)], check=True
        )
        async with asyncio.timeout(5):
            await heard.events["changed"].wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "conveyor.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.dispose()
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
    await _heard_after_commit(sqlite_dialect._poll(database, heard), database, heard)


def test_event_feeds_keep_polling_on_sqlite(database: Path) -> None:
    """Only workers use the file watch (they re-check the queue); event feeds need to know
    which execution changed, so they poll."""
    store = Store(Database(f"sqlite:///{database}"))
    try:
        assert store.listener(lambda _: None, EVENTS_CHANNEL) is None
    finally:
        store.close()
