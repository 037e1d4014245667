"""An audit entry whose change is committed but whose own write meets an unavailable
database (SQLite's write lock held past the busy timeout here, a PostgreSQL restart in
tests/e2e/test_postgres_restart.py): retried until the database is back, and if it stays
away, one log line saying who did what, never a traceback."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from conveyor import Conveyor, build_registry
from conveyor.api import audit as audit_middleware
from conveyor.store.accounts import Principal
from conveyor.store.tables import audit_log


def _scope(conveyor: Conveyor) -> dict[str, Any]:
    """What the middleware sees of ``POST .../workflows/{workflow}/execute`` by a user."""
    principal = Principal("u1", "ada@example.com", False)
    return {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/workspaces/default/workflows/w/execute",
        "route": SimpleNamespace(path="/api/v1/workspaces/{ws}/workflows/{workflow}/execute"),
        "path_params": {"ws": "default", "workflow": "w"},
        "state": {
            "audit_principal": principal,
            "audit_workspace_id": conveyor.workspace_id,
        },
        "app": SimpleNamespace(state=SimpleNamespace(conveyor=conveyor)),
        "headers": [],
        "client": ("127.0.0.1", 5000),
    }


def _hold_write_lock(path: Path, seconds: float) -> threading.Timer:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")

    def release() -> None:
        holder.execute("COMMIT")
        holder.close()

    timer = threading.Timer(seconds, release)
    timer.start()
    return timer


async def _entries(conveyor: Conveyor) -> list[str]:
    def read(conn: Any) -> list[str]:
        return list(conn.execute(select(audit_log.c.action)).scalars())

    return await conveyor.store.read(read)


async def _record_while_locked(
    database_url: str, locked_for: float, caplog: pytest.LogCaptureFixture
) -> tuple[list[str], list[logging.LogRecord]]:
    """Record an entry while another connection holds the write lock for ``locked_for``
    seconds (a busy timeout of 0.1 s); the entries then in the table, and the middleware's
    log records."""
    path = Path(database_url.removeprefix("sqlite:///"))
    conveyor = await Conveyor.open(f"{database_url}?timeout=0.1", build_registry())
    try:
        timer = _hold_write_lock(path, locked_for)
        with caplog.at_level(logging.ERROR):
            await audit_middleware._record(_scope(conveyor), 202)
        timer.join()
        logged = [r for r in caplog.records if r.name == audit_middleware.__name__]
        return await _entries(conveyor), logged
    finally:
        conveyor.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_an_audit_entry_waits_for_the_database_then_lands(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    entries, logged = await _record_while_locked(database_url, 0.6, caplog)
    assert entries == ["workflow.execute"]
    assert logged == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_an_audit_entry_the_database_never_takes_is_one_log_line(
    database_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_middleware, "RETRY_SECONDS", 0.3)
    entries, logged = await _record_while_locked(database_url, 2.0, caplog)
    (line,) = logged
    assert line.exc_info is None  # one line, no traceback
    message = line.getMessage()
    assert "workflow.execute by ada@example.com" in message, message
    assert "from 127.0.0.1" in message, message
    assert entries == []
