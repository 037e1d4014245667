"""Enqueueing executions (sync, on a Connection). Claiming lives in ``claims``, the runner's
lease-fenced writes in ``transitions``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from conveyor.engine.interfaces import (
    EventRecord,
)

__all__ = ["EventRecord", "NewExecution"]
from conveyor.engine.state import TERMINAL, ExecutionStatus
from conveyor.store.database import new_id
from conveyor.store.prepared import prepared
from conveyor.store.tables import (
    events,
    execution_inputs,
    executions,
    workspaces,
)

_TERMINAL = [s.value for s in TERMINAL]
_COUNTERS = (
    "steps_succeeded",
    "steps_failed",
    "steps_skipped",
    "steps_running",
    "usage_tokens",
    "usage_api_calls",
)


@dataclass
class NewExecution:
    workspace_id: str
    workflow_id: str
    version_id: str
    input: Any
    steps_total: int
    trigger_type: str = "manual"
    priority: int = 0
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    key_limit: int | None = None
    workflow_limit: int | None = None
    rate_limit: int | None = None
    rate_period_seconds: float | None = None
    created_by: str | None = None
    parent_execution_id: str | None = None
    parent_node_id: str | None = None
    retry_of: str | None = None
    trigger_id: str | None = None


def enqueue(conn: Connection, new: NewExecution, now: datetime) -> tuple[str, bool]:
    """Insert an execution and its ``queued`` event; return (id, created).

    With an idempotency key, a second enqueue returns the first execution (created False).
    """
    if new.idempotency_key is not None:
        existing = _by_key(conn, new.workflow_id, new.idempotency_key)
        if existing is not None:
            return existing, False
    execution_id = new_id()
    row = _row(new, execution_id, now, _user_limit(conn, new))
    insert_execution = prepared(conn, "executions.insert", lambda: _insert(executions, row))
    if new.idempotency_key is None:
        insert_execution.run(conn, row)
    else:
        try:
            with conn.begin_nested():  # a concurrent enqueue with the same key may win
                insert_execution.run(conn, row)
        except IntegrityError:
            existing = _by_key(conn, new.workflow_id, new.idempotency_key)
            if existing is None:
                raise
            return existing, False
    stored = {"execution_id": execution_id, "input": new.input}
    prepared(conn, "execution_inputs.insert", lambda: _insert(execution_inputs, stored)).run(
        conn, stored
    )
    queued = queued_event(new, execution_id, now)
    event = {
        "execution_id": execution_id,
        "workspace_id": new.workspace_id,
        "seq": queued.seq,
        "type": queued.type,
        "data": queued.data,
        "created_at": now,
    }
    prepared(conn, "events.insert", lambda: _insert(events, event)).run(conn, event)
    return execution_id, True


def enqueue_batch(
    conn: Connection, news: list[NewExecution], now: datetime
) -> list[tuple[str, bool]]:
    """:func:`enqueue` for many executions of one workflow in three multi-row INSERTs (what
    makes a batch cheap: a handful of round trips instead of several per execution). A key
    already used, or used twice in the batch, gives the first execution (created False).
    A concurrent enqueue that takes a key first raises IntegrityError: the caller rolls
    this back and enqueues one by one."""
    keys = [n.idempotency_key for n in news if n.idempotency_key is not None]
    known: dict[str, str] = {}
    for first in range(0, len(keys), 500):
        chunk = keys[first : first + 500]
        known.update(
            (key, execution_id)
            for execution_id, key in conn.execute(
                select(executions.c.id, executions.c.idempotency_key).where(
                    executions.c.workflow_id == news[0].workflow_id,
                    executions.c.idempotency_key.in_(chunk),
                )
            )
        )
    limits: dict[tuple[str, str | None], int | None] = {}
    results: list[tuple[str, bool]] = []
    rows, inputs, queued = [], [], []
    for new in news:
        key = new.idempotency_key
        if key is not None and key in known:
            results.append((known[key], False))
            continue
        execution_id = new_id()
        if key is not None:
            known[key] = execution_id
        scope = (new.workspace_id, new.created_by)
        if new.parent_execution_id is not None:
            limit = _user_limit(conn, new)
        else:
            if scope not in limits:
                limits[scope] = _user_limit(conn, new)
            limit = limits[scope]
        rows.append(_row(new, execution_id, now, limit))
        inputs.append({"execution_id": execution_id, "input": new.input})
        event = queued_event(new, execution_id, now)
        queued.append(
            {
                "execution_id": execution_id,
                "workspace_id": new.workspace_id,
                "seq": event.seq,
                "type": event.type,
                "data": event.data,
                "created_at": now,
            }
        )
        results.append((execution_id, True))
    for table, values in ((executions, rows), (execution_inputs, inputs), (events, queued)):
        if values:
            conn.execute(insert(table), values)
    return results


def _row(
    new: NewExecution, execution_id: str, now: datetime, user_limit: int | None
) -> dict[str, Any]:
    return {
        "id": execution_id,
        "workspace_id": new.workspace_id,
        "workflow_id": new.workflow_id,
        "version_id": new.version_id,
        "status": ExecutionStatus.QUEUED.value,
        "trigger_type": new.trigger_type,
        "priority": new.priority,
        "available_at": now,
        "created_at": now,
        "idempotency_key": new.idempotency_key,
        "concurrency_key": new.concurrency_key,
        "key_limit": new.key_limit,
        "workflow_limit": new.workflow_limit,
        "rate_limit": new.rate_limit,
        "rate_period_seconds": new.rate_period_seconds,
        "created_by": new.created_by,
        "user_limit": user_limit,
        "parent_execution_id": new.parent_execution_id,
        "parent_node_id": new.parent_node_id,
        "retry_of": new.retry_of,
        "trigger_id": new.trigger_id,
        "steps_total": new.steps_total,
        "event_seq": 1,
    }


def queued_event(new: NewExecution, execution_id: str, now: datetime) -> EventRecord:
    """The first event of every execution, written by :func:`enqueue`."""
    data = {"trigger_type": new.trigger_type}
    return EventRecord(execution_id, new.workspace_id, 1, "execution.queued", data, now)


def _user_limit(conn: Connection, new: NewExecution) -> int | None:
    """The workspace's running limit per user, as it is now. A child execution is not held
    back by it: its parent (already counted) may be waiting for it."""
    if new.created_by is None or new.parent_execution_id is not None:
        return None
    limit: int | None = conn.execute(
        select(workspaces.c.max_running_per_user).where(workspaces.c.id == new.workspace_id)
    ).scalar()
    return limit


def _insert(table: Table, row: dict[str, Any]) -> Any:
    """An INSERT of exactly ``row``'s columns (rows of one kind always have the same keys)."""
    return insert(table).values({k: bindparam(k, type_=table.c[k].type) for k in row})


def _by_key(conn: Connection, workflow_id: str, key: str | None) -> str | None:
    return conn.execute(
        select(executions.c.id).where(
            executions.c.workflow_id == workflow_id, executions.c.idempotency_key == key
        )
    ).scalar()
