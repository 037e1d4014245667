"""Node types for the e2e worker processes (``conveyor worker --plugin tests.e2e.nodes``).

Every call is recorded in the side table ``e2e_calls`` of the same database the worker uses
(``CONVEYOR_DATABASE_URL``): one row inserted when the call starts and updated when it ends,
with the outcome, so the tests can compute overlaps, repeats and what a node saw. The node
opens its own connection per write (psycopg on PostgreSQL, sqlite3 with a busy timeout on
SQLite) so it shares nothing with the engine it is testing.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from typing import Any

import psycopg
from pydantic import BaseModel

from conveyor.errors import NodeError
from conveyor.nodes.base import NodeContext, node

CALLS_TABLE = "e2e_calls"
FLAGS_TABLE = "e2e_flags"


def _database_url() -> str:
    return os.environ["CONVEYOR_DATABASE_URL"]


def _write(sql: str, params: tuple[Any, ...]) -> Any:
    """Run one statement in its own transaction; return the first column of the first row."""
    url = _database_url()
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            row = conn.execute(sql.replace("%s", "?"), params).fetchone()
            return None if row is None else row[0]
        finally:
            conn.close()
    with psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as pg:
        cursor = pg.execute(sql, params)  # type: ignore[arg-type]
        row = cursor.fetchone() if cursor.description else None
        return None if row is None else row[0]


def record_start(ctx: NodeContext) -> int:
    call_id = _write(
        f"INSERT INTO {CALLS_TABLE} (execution_id, node_id, attempt, idem_key, pid, started_at)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (ctx.execution_id, ctx.node_id, ctx.attempt, ctx.idempotency_key, os.getpid(), time.time()),
    )
    return int(call_id)


def record_end(call_id: int, outcome: str) -> None:
    _write(
        f"UPDATE {CALLS_TABLE} SET ended_at = %s, outcome = %s WHERE id = %s",
        (time.time(), outcome, call_id),
    )


def has_flag(name: str) -> bool:
    return _write(f"SELECT count(*) FROM {FLAGS_TABLE} WHERE name = %s", (name,)) > 0


class WorkConfig(BaseModel):
    sleep: float = 0.03
    # A different sleep for attempt 1 only (a long first attempt that a recovery cuts short).
    first_attempt_sleep: float | None = None
    # Fail (non-retryable) unless this flag is in e2e_flags when the sleep ends.
    fail_unless_flag: str | None = None
    # Kill the worker process running the step, on every attempt (a poison execution).
    die: bool = False


@node("e2e.work", config=WorkConfig)
async def work(ctx: NodeContext, config: WorkConfig) -> dict[str, Any]:
    """Record the call, sleep, maybe fail, record how it ended."""
    call_id = await asyncio.to_thread(record_start, ctx)
    if config.die:
        os._exit(137)
    delay = config.sleep
    if ctx.attempt == 1 and config.first_attempt_sleep is not None:
        delay = config.first_attempt_sleep
    try:
        await asyncio.sleep(delay)
        if config.fail_unless_flag is not None and not await asyncio.to_thread(
            has_flag, config.fail_unless_flag
        ):
            raise NodeError(f"flag {config.fail_unless_flag} is not set", non_retryable=True)
    except asyncio.CancelledError:
        # Synchronous on purpose: the write lands before the runner records the cancel.
        record_end(call_id, "cancelled")
        raise
    except NodeError:
        await asyncio.to_thread(record_end, call_id, "failed")
        raise
    await asyncio.to_thread(record_end, call_id, "ok")
    return {"node": ctx.node_id, "key": ctx.idempotency_key, "pid": os.getpid()}


class BlockConfig(BaseModel):
    seconds: float


@node("e2e.block", config=BlockConfig)
async def block(ctx: NodeContext, config: BlockConfig) -> dict[str, Any]:
    """Blocks its event loop (a badly written node: time.sleep inside async code)."""
    started = time.time()
    time.sleep(config.seconds)  # noqa: ASYNC251 (the point of this node)
    return {"started": started, "ended": time.time()}
