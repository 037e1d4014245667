"""Enqueueing executions (sync, on a Connection). Claiming lives in ``claims``, the runner's
lease-fenced writes in ``transitions``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    insert,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from conveyor.engine.interfaces import (
    EventRecord,
)

__all__ = ["EventRecord", "NewExecution"]
from conveyor.engine.state import TERMINAL, ExecutionStatus
from conveyor.store.database import new_id
from conveyor.store.prepared import prepared
from conveyor.store.tables import (
    dumps,
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


@dataclass
class Enqueued:
    """What :func:`enqueue_in_one` did: ``fresh`` false when the workflow's version (or
    status) is no longer the one the execution was built from (nothing was written);
    otherwise the execution's id and whether it was created (``None``: a concurrent enqueue
    with the same key committed first, look it up again)."""

    fresh: bool
    execution_id: str | None = None
    created: bool = False


def enqueue_in_one(
    conn: Connection,
    new: NewExecution,
    execution_id: str,
    workflow: str,
    version: int | None,
    status: str,
    notify: list[tuple[str, str]],
    now: datetime,
) -> Enqueued:
    """:func:`enqueue` as ONE statement (PostgreSQL, run in autocommit: one round trip,
    commit included), for an execution built from a version read earlier: it writes only
    if ``workflow`` at ``version`` (default: its latest) is still ``new.version_id`` with
    ``status``, as ``workflows.find_version`` would read it now. ``notify``: the (channel,
    payload) pairs sent when it is created."""
    row = _row(new, execution_id, now, None)
    row["user_limit_scope"] = new.created_by is not None and new.parent_execution_id is None
    event = queued_event(new, execution_id, now)
    params = {
        **row,
        "workflow": workflow,
        "version": version,
        "workflow_status": status,
        "input": dumps(new.input),
        "event_type": event.type,
        "event_data": dumps(event.data),
        "channels": [channel for channel, _ in notify],
        "payloads": [payload for _, payload in notify],
    }
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    dbapi = conn.dialect.loaded_dbapi
    try:
        cursor.execute(_ENQUEUE_IN_ONE, params)
        answer = cursor.fetchone()
    except dbapi.Error as exc:
        raise DBAPIError.instance(_ENQUEUE_IN_ONE, params, exc, dbapi.Error) from exc
    finally:
        cursor.close()
    fresh, created, existing, _notified = answer or (False, None, None, 0)
    if not fresh:
        return Enqueued(False)
    if created is not None:
        return Enqueued(True, created, True)
    return Enqueued(True, existing, False)


_SAMPLE = _row(NewExecution("", "", "", None, 0), "", datetime.now(UTC), None)
_COLUMNS = [c for c in _SAMPLE if c != "user_limit"]  # fixed names, never user data
# PostgreSQL. ``ref`` is workflows.find_version's lookup; a key already used gives the
# existing execution (``existing`` reads the statement's snapshot, so a concurrent enqueue
# that takes the key meanwhile gives neither: the caller looks again).
_ENQUEUE_IN_ONE = f"""
WITH ref AS (
  SELECT v.id AS version_id, w.status FROM workflows w
  JOIN workflow_versions v ON v.workflow_id = w.id
    AND v.version = coalesce(%(version)s::integer, w.latest_version)
  WHERE w.workspace_id = %(workspace_id)s AND (w.id = %(workflow)s OR w.name = %(workflow)s)
),
ok AS (
  SELECT 1 FROM ref WHERE ref.version_id = %(version_id)s AND ref.status = %(workflow_status)s
),
ins AS (
  INSERT INTO executions ({", ".join(_COLUMNS)}, user_limit)
  SELECT {", ".join(f"%({c})s" for c in _COLUMNS)},
    CASE WHEN %(user_limit_scope)s THEN
      (SELECT max_running_per_user FROM workspaces WHERE id = %(workspace_id)s) END
  FROM ok
  ON CONFLICT (workflow_id, idempotency_key) DO NOTHING
  RETURNING id
),
inp AS (
  INSERT INTO execution_inputs (execution_id, input)
  SELECT id, CAST(%(input)s AS JSONB) FROM ins
),
ev AS (
  INSERT INTO events (execution_id, workspace_id, seq, type, data, created_at)
  SELECT id, %(workspace_id)s, 1, %(event_type)s, CAST(%(event_data)s AS JSONB),
    %(created_at)s FROM ins
),
n AS (
  SELECT pg_notify(x.c, x.p) FROM ins,
    unnest(%(channels)s::text[], %(payloads)s::text[]) AS x(c, p)
)
SELECT EXISTS (SELECT 1 FROM ok), (SELECT id FROM ins), (SELECT id FROM executions
  WHERE workflow_id = %(workflow_id)s AND idempotency_key = %(idempotency_key)s),
  (SELECT count(*) FROM n)
"""  # noqa: S608 (fixed column names, never user data)
