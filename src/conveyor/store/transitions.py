"""The runner's writes: lease-fenced transitions, many executions per transaction (group
commit), each kind of row written by ONE set-based statement whatever the batch size.

A batch's rows of a kind travel as one JSON array bound to one parameter and are read back
as a table (``StoreDialect.json_rows``), so every statement here is compiled once per
dialect and costs one round trip, instead of one statement (and its Python overhead) per
execution or per step.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Float,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    column,
    false,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)

from conveyor.engine.interfaces import Changes, ClaimedExecution, EventRecord
from conveyor.engine.state import TERMINAL, ExecutionStatus, StepStatus
from conveyor.errors import LeaseLost
from conveyor.store import controls
from conveyor.store.channels import FINISHED_CHANNEL
from conveyor.store.database import StoreDialect
from conveyor.store.prepared import Call, prepared, run_together
from conveyor.store.tables import UTCDateTime, dumps, events, executions, signals, steps

Transition = tuple[ClaimedExecution, Changes]
_TERMINAL = [s.value for s in TERMINAL]
_COUNTERS = (
    "steps_succeeded",
    "steps_failed",
    "steps_skipped",
    "steps_running",
    "usage_tokens",
    "usage_api_calls",
)
_TIMES = ("started_at", "deadline_at", "finished_at", "available_at")


def _call(conn: Connection, dialect: StoreDialect, name: str, rows: list[dict[str, Any]]) -> Call:
    """Statement ``name`` over ``rows`` (one JSON array parameter), ready to run."""
    statement = prepared(conn, f"transitions.{name}", lambda: _BUILDERS[name](dialect))
    return statement, {"rows": orjson.dumps(rows).decode(), "n": len(rows)}


def _run(conn: Connection, dialect: StoreDialect, name: str, rows: list[dict[str, Any]]) -> Any:
    statement, params = _call(conn, dialect, name, rows)
    return statement.rows(conn, params)


def _fence(dialect: StoreDialect, guarded: bool = False) -> Any:
    """Counters move by deltas, fields change only when given, and the WHERE clause is the
    lease fence: a row whose lease is gone is simply not updated (and not returned).

    ``guarded`` (apply_in_one): a final write is also left alone, to be made the usual way,
    when it needs more than one statement can do: a cancel landed meanwhile (the status and
    last event change), a parent waits for it, or a user's usage is counted."""
    c = executions.c
    v = dialect.json_rows(
        column("id", String()),
        column("owner", String()),
        column("lease", BigInteger()),
        column("lease_seconds", Float()),
        *(column(f"d_{name}", BigInteger()) for name in (*_COUNTERS, "events")),
        column("final", Boolean()),
        column("release", Boolean()),
        column("innocent", Boolean()),
        column("status", String()),
        column("result", Text()),
        column("error", Text()),
        *(column(name, UTCDateTime()) for name in _TIMES),
        column("wait_reason", Text()),
    ).c
    return (
        update(executions)
        .where(
            c.id == v.id,
            c.lease_owner == v.owner,
            c.lease_number == v.lease,
            c.status.not_in([literal_column(f"'{s}'") for s in _TERMINAL]),
            *(
                [
                    ~and_(
                        v.final,
                        or_(
                            c.cancel_requested,
                            c.parent_execution_id.is_not(None),
                            c.created_by.is_not(None),
                        ),
                    )
                ]
                if guarded
                else []
            ),
        )
        .values(
            {getattr(c, name): getattr(c, name) + getattr(v, f"d_{name}") for name in _COUNTERS}
            | {
                c.event_seq: c.event_seq + v.d_events,
                # A cancel that lands between the last step and the final write still wins.
                c.status: case(
                    (and_(v.final, c.cancel_requested), "cancelled"),
                    else_=func.coalesce(v.status, c.status),
                ),
                c.result: case((v.final, dialect.json_value(v.result)), else_=c.result),
                c.error: case((v.final, dialect.json_value(v.error)), else_=c.error),
                c.lease_owner: case((v.release, None), else_=c.lease_owner),
                # A write renews the lease once half of it is gone: a runner that is making
                # progress never loses its execution to heartbeats queued behind other
                # writers, and most writes leave every indexed column alone (on PostgreSQL a
                # heap-only update, without touching the executions table's indexes).
                c.lease_expires_at: case(
                    (v.release, None),
                    (
                        c.lease_expires_at < dialect.now_plus_seconds(v.lease_seconds / 2),
                        dialect.now_plus_seconds(v.lease_seconds),
                    ),
                    else_=c.lease_expires_at,
                ),
                c.wait_reason: func.coalesce(v.wait_reason, c.wait_reason),
                # A suspect whose step finished did not kill its worker (see claims.py);
                # a finished execution is nobody's suspect.
                c.suspect: and_(c.suspect, ~func.coalesce(v.innocent, false()), ~v.final),
            }
            | {getattr(c, n): func.coalesce(getattr(v, n), getattr(c, n)) for n in _TIMES}
        )
        .returning(
            c.id,
            c.event_seq,
            c.workflow_id,
            c.workspace_id,
            c.started_at,
            c.status,
            c.parent_execution_id,
            c.created_by,
            c.usage_tokens,
            c.usage_api_calls,
            c.finished_at,
        )
    )


def _finish_steps(dialect: StoreDialect) -> Any:
    v = dialect.json_rows(
        column("execution_id", String()),
        column("node_id", String()),
        column("attempt", Integer()),
        column("status", String()),
        column("output", Text()),
        column("error", Text()),
        column("logs", Text()),
        column("branch", String()),
        column("continued", Boolean()),
        column("finished_at", UTCDateTime()),
        column("wait_until", UTCDateTime()),
        column("wait_signal", String()),
        column("usage_tokens", BigInteger()),
        column("usage_api_calls", BigInteger()),
    ).c
    return (
        update(steps)
        .where(
            steps.c.execution_id == v.execution_id,
            steps.c.node_id == v.node_id,
            steps.c.attempt == v.attempt,
        )
        .values(
            {
                steps.c.status: v.status,
                steps.c.output: dialect.json_value(v.output),
                steps.c.error: dialect.json_value(v.error),
                steps.c.logs: dialect.json_value(v.logs),
                steps.c.branch: v.branch,
                steps.c.continued: v.continued,
                steps.c.finished_at: v.finished_at,
                steps.c.wait_until: v.wait_until,
                steps.c.wait_signal: v.wait_signal,
                steps.c.usage_tokens: v.usage_tokens,
                steps.c.usage_api_calls: v.usage_api_calls,
            }
        )
    )


def _insert_steps(dialect: StoreDialect) -> Any:
    rows = dialect.json_rows(
        column("execution_id", String()),
        column("node_id", String()),
        column("node_type", String()),
        column("attempt", Integer()),
        column("status", String()),
        column("input", Text()),
        column("started_at", UTCDateTime()),
        column("step_index", Integer()),
    )
    v = rows.c
    names = [
        "execution_id",
        "node_id",
        "node_type",
        "attempt",
        "status",
        "input",
        "started_at",
        "step_index",
    ]
    values = [getattr(v, n) for n in names]
    values[5] = dialect.json_value(v.input)
    return insert(steps).from_select(names, select(*values).select_from(rows))


def _insert_events(dialect: StoreDialect) -> Any:
    rows = dialect.json_rows(
        column("execution_id", String()),
        column("workspace_id", String()),
        column("seq", BigInteger()),
        column("type", String()),
        column("data", Text()),
        column("created_at", UTCDateTime()),
    )
    v = rows.c
    names = ["execution_id", "workspace_id", "seq", "type", "data", "created_at"]
    values = [getattr(v, n) for n in names]
    values[4] = dialect.json_value(v.data)
    return insert(events).from_select(names, select(*values).select_from(rows))


_BUILDERS: dict[str, Callable[[StoreDialect], Any]] = {
    "fence": _fence,
    "finish_steps": _finish_steps,
    "insert_steps": _insert_steps,
    "insert_events": _insert_events,
}


def _json(value: Any) -> str | None:
    return None if value is None else dumps(value)


def apply(
    conn: Connection,
    dialect: StoreDialect,
    execution: ClaimedExecution,
    changes: Changes,
    now: datetime,
) -> list[EventRecord]:
    """Write one transition, fenced by the lease; raise LeaseLost when it is not held."""
    (outcome,) = apply_many(conn, dialect, [(execution, changes)], now)
    if isinstance(outcome, LeaseLost):
        raise outcome
    return outcome


def apply_many(
    conn: Connection, dialect: StoreDialect, transitions: list[Transition], now: datetime
) -> list[list[EventRecord] | LeaseLost]:
    """Write the transitions of many executions (each at most once) in one transaction.

    Each one is fenced by its own lease: one whose lease is gone gets ``LeaseLost`` and
    writes nothing, the others go on. Rows other writers may also lock (a parent, the
    statistics) come last, in sorted order."""
    time = dialect.time_value
    fence = [_fence_row(execution, changes, time) for execution, changes in transitions]
    returned = {r.id: r for r in _run(conn, dialect, "fence", fence)}
    held = [(e, c, returned[e.id]) for e, c in transitions if e.id in returned]
    if held:
        # Rare rows first (each its own statement), then everything else in one round trip.
        consumed = [
            {"x_id": i, "node": n} for _, changes, _ in held for i, n in changes.consumed_signals
        ]
        if consumed:
            conn.execute(_CONSUME_SIGNAL, consumed)
        finished: list[controls.Finished] = []
        for execution, changes, row in held:
            if changes.status is not None and changes.status.terminal:
                finished.append(_finished(conn, dialect, execution, changes, row, now))
            elif changes.status == ExecutionStatus.WAITING:
                _wake_if_already_signalled(conn, execution.id, changes.wake_signals, now)
        records = {e.id: _records(e, c, row, now) for e, c, row in held}
        calls = _step_calls(conn, dialect, held, time)
        written = [r for rs in records.values() for r in rs]
        if written:
            calls.append(
                _call(conn, dialect, "insert_events", [_event_row(r, time) for r in written])
            )
            calls += dialect.notify_calls(
                conn,
                controls.EVENTS_CHANNEL,
                [f"{e.workspace_id}:{e.id}" for e, _, _ in held if records[e.id]],
            )
        if finished:
            calls += controls.count_finished(conn, finished)
            calls += controls.announce_finished(conn, dialect, finished)
        run_together(conn, calls)
    return [records[e.id] if e.id in returned else LeaseLost(e.id) for e, _ in transitions]


def in_one_statement(dialect: StoreDialect, transitions: list[Transition]) -> bool:
    """Whether :func:`apply_in_one` can write this batch: PostgreSQL, no parking as waiting
    (which looks for signals already there) and no signal consumed, final writes of at most
    one workflow (its statistics row is the only other row the statement locks, so two
    batches never take such rows in opposite orders), and the notification within one
    NOTIFY payload."""
    if dialect.name != "postgresql":
        return False
    size = 0
    finishing: set[str] = set()
    for execution, changes in transitions:
        if changes.consumed_signals or changes.status == ExecutionStatus.WAITING:
            return False
        if changes.status is not None and changes.status.terminal:
            finishing.add(execution.workflow_id)
        size += len(execution.workspace_id) + len(execution.id) + 2
    return size < _NOTIFY_ROOM and len(finishing) <= 1


_NOTIFY_ROOM = 7000  # bytes of one NOTIFY payload (PostgreSQL's limit is 8000)


def apply_in_one(
    conn: Connection, dialect: StoreDialect, transitions: list[Transition], now: datetime
) -> list[list[EventRecord] | LeaseLost | None]:
    """:func:`apply_many` as ONE statement (PostgreSQL, see :func:`in_one_statement`): the
    fence, the step finishes and starts, the events and their NOTIFY are data-modifying
    CTEs joined to the fence's rows, so an execution whose lease is gone writes nothing.
    Run in autocommit, the statement is its own transaction: one round trip in all,
    commit included, instead of BEGIN, the fence, the batch and COMMIT (four).

    A final write also counts the workflow's statistics in the statement; one the guarded
    fence leaves alone (see :func:`_fence`) wrote nothing and gets None: the caller makes
    it the usual way (:func:`apply_many`), which also tells a lost lease."""
    time = dialect.time_value
    fence = prepared(conn, "transitions.fence_guarded", lambda: _fence(dialect, guarded=True))
    rows: list[dict[str, Any]] = []
    for execution, changes in transitions:
        last = len(changes.events) - 1
        rows += [
            {
                "execution_id": execution.id,
                "back": last - i,
                "type": kind,
                "data": dumps(data),
                "created_at": time(now),
            }
            for i, (kind, data) in enumerate(changes.events)
        ]
    finished = _finished_rows(transitions, time)
    started = _started_rows(transitions, time)
    fence_rows = [_fence_row(execution, changes, time) for execution, changes in transitions]
    params = fence._params({"rows": orjson.dumps(fence_rows).decode(), "n": len(fence_rows)}) | {
        "finished": orjson.dumps(finished).decode(),
        "finished_n": len(finished),
        "started": orjson.dumps(started).decode(),
        "started_n": len(started),
        "events": orjson.dumps(rows).decode(),
        "events_n": len(rows),
        "channel": controls.EVENTS_CHANNEL,
        "finished_channel": FINISHED_CHANNEL,
    }
    sql = _ONE_STATEMENT.get(fence.sql)
    if sql is None:
        sql = _ONE_STATEMENT[fence.sql] = f"WITH f AS ({fence.sql}){_IN_ONE_TAIL}"
    returned = {r.id: r for r in fence.rows_of(conn, sql, params)}
    records = {
        e.id: _records(e, c, returned[e.id], now) for e, c in transitions if e.id in returned
    }
    return [
        records[e.id]
        if e.id in returned
        else None
        if c.status is not None and c.status.terminal
        else LeaseLost(e.id)
        for e, c in transitions
    ]


_ONE_STATEMENT: dict[str, str] = {}
# The rest of apply_in_one's statement, after the fence ``f`` (PostgreSQL). Each batch of
# rows is read with LIMIT n, as json_rows does, so the planner expects a few rows and
# reaches steps through their primary key.
_IN_ONE_TAIL = """,
fs AS (
  UPDATE steps SET status = v.status, output = CAST(v.output AS JSONB),
    error = CAST(v.error AS JSONB), logs = CAST(v.logs AS JSONB), branch = v.branch,
    continued = v.continued, finished_at = v.finished_at, wait_until = v.wait_until,
    wait_signal = v.wait_signal, usage_tokens = v.usage_tokens,
    usage_api_calls = v.usage_api_calls
  FROM (SELECT * FROM jsonb_to_recordset(CAST(%(finished)s AS JSONB)) AS r(
      execution_id VARCHAR, node_id VARCHAR, attempt INTEGER, status VARCHAR, output TEXT,
      error TEXT, logs TEXT, branch VARCHAR, continued BOOLEAN,
      finished_at TIMESTAMP WITH TIME ZONE, wait_until TIMESTAMP WITH TIME ZONE,
      wait_signal VARCHAR, usage_tokens BIGINT, usage_api_calls BIGINT)
    LIMIT %(finished_n)s) AS v
  JOIN f ON f.id = v.execution_id
  WHERE steps.execution_id = v.execution_id AND steps.node_id = v.node_id
    AND steps.attempt = v.attempt
),
si AS (
  INSERT INTO steps (execution_id, node_id, node_type, attempt, status, input, started_at,
    step_index)
  SELECT v.execution_id, v.node_id, v.node_type, v.attempt, v.status,
    CAST(v.input AS JSONB), v.started_at, v.step_index
  FROM (SELECT * FROM jsonb_to_recordset(CAST(%(started)s AS JSONB)) AS r(
      execution_id VARCHAR, node_id VARCHAR, node_type VARCHAR, attempt INTEGER,
      status VARCHAR, input TEXT, started_at TIMESTAMP WITH TIME ZONE, step_index INTEGER)
    LIMIT %(started_n)s) AS v
  JOIN f ON f.id = v.execution_id
),
ev AS (
  INSERT INTO events (execution_id, workspace_id, seq, type, data, created_at)
  SELECT v.execution_id, f.workspace_id, f.event_seq - v.back, v.type,
    CAST(v.data AS JSONB), v.created_at
  FROM (SELECT * FROM jsonb_to_recordset(CAST(%(events)s AS JSONB)) AS r(
      execution_id VARCHAR, back BIGINT, type VARCHAR, data TEXT,
      created_at TIMESTAMP WITH TIME ZONE)
    LIMIT %(events_n)s) AS v
  JOIN f ON f.id = v.execution_id
  RETURNING execution_id, workspace_id
),
n AS (
  SELECT pg_notify(%(channel)s, string_agg(DISTINCT ev.workspace_id || ':' || ev.execution_id,
    ' ')) FROM ev HAVING count(*) > 0
),
nf AS (
  SELECT pg_notify(%(finished_channel)s, string_agg(f.id || ':' || f.status, ' '))
  FROM f WHERE f.status IN ('succeeded', 'failed', 'cancelled', 'timed_out')
  HAVING count(*) > 0
),
st AS (
  UPDATE workflows SET
    executions_finished = workflows.executions_finished + s.n,
    executions_succeeded = workflows.executions_succeeded + s.succeeded,
    executions_failed = workflows.executions_failed + s.failed,
    executions_cancelled = workflows.executions_cancelled + s.cancelled,
    executions_timed_out = workflows.executions_timed_out + s.timed_out,
    duration_total_ms = workflows.duration_total_ms + s.duration,
    last_executed_at = s.last
  FROM (
    SELECT f.workflow_id, count(*) AS n,
      count(*) FILTER (WHERE f.status = 'succeeded') AS succeeded,
      count(*) FILTER (WHERE f.status = 'failed') AS failed,
      count(*) FILTER (WHERE f.status = 'cancelled') AS cancelled,
      count(*) FILTER (WHERE f.status = 'timed_out') AS timed_out,
      sum(CASE WHEN f.started_at IS NULL THEN 0 ELSE greatest(
        trunc(extract(epoch FROM f.finished_at - f.started_at) * 1000), 0) END) AS duration,
      max(f.finished_at) AS last
    FROM f WHERE f.status IN ('succeeded', 'failed', 'cancelled', 'timed_out')
    GROUP BY f.workflow_id
  ) AS s
  WHERE workflows.id = s.workflow_id
)
SELECT f.*, (SELECT count(*) FROM n) + (SELECT count(*) FROM nf) AS notified FROM f"""


def _fence_row(execution: ClaimedExecution, changes: Changes, time: Any) -> dict[str, Any]:
    final = changes.status is not None and changes.status.terminal
    counters = changes.counters
    row: dict[str, Any] = {f"d_{name}": counters.get(name, 0) for name in _COUNTERS}
    row.update(
        id=execution.id,
        owner=execution.lease.owner,
        lease=execution.lease.number,
        lease_seconds=execution.lease_seconds,
        d_events=len(changes.events),
        final=final,
        release=changes.release,
        innocent=changes.innocent,
        status=changes.status.value if changes.status is not None else None,
        result=_json(changes.result) if final else None,
        error=_json(changes.error) if final else None,
        started_at=time(changes.started_at),
        deadline_at=time(changes.deadline_at),
        finished_at=time(changes.finished_at),
        available_at=time(changes.available_at),
        wait_reason=changes.wait_reason,
    )
    return row


def _records(
    execution: ClaimedExecution, changes: Changes, row: Any, now: datetime
) -> list[EventRecord]:
    first_seq = row.event_seq - len(changes.events) + 1
    return [
        EventRecord(execution.id, execution.workspace_id, first_seq + i, kind, data, now)
        for i, (kind, data) in enumerate(changes.events)
    ]


def _event_row(r: EventRecord, time: Any) -> dict[str, Any]:
    return {
        "execution_id": r.execution_id,
        "workspace_id": r.workspace_id,
        "seq": r.seq,
        "type": r.type,
        "data": dumps(r.data),
        "created_at": time(r.created_at),
    }


def _step_calls(
    conn: Connection,
    dialect: StoreDialect,
    held: list[tuple[ClaimedExecution, Changes, Any]],
    time: Any,
) -> list[Call]:
    calls: list[Call] = []
    pairs = [(execution, changes) for execution, changes, _ in held]
    finished = _finished_rows(pairs, time)
    if finished:
        calls.append(_call(conn, dialect, "finish_steps", finished))
    started = _started_rows(pairs, time)
    if started:
        calls.append(_call(conn, dialect, "insert_steps", started))
    return calls


def _finished_rows(transitions: list[Transition], time: Any) -> list[dict[str, Any]]:
    # One row per step: of two finishes of the same step in a batch (a wait, then its
    # cancel) the later wins, as it would in sequence; a set-based UPDATE would pick either.
    finished = {
        (execution.id, f.node_id, f.attempt): {
            "execution_id": execution.id,
            "node_id": f.node_id,
            "attempt": f.attempt,
            "status": f.status.value,
            "output": _json(f.output),
            "error": _json(f.error),
            "logs": _json(f.logs),
            "branch": f.branch,
            "continued": f.continued,
            "finished_at": time(f.finished_at),
            "wait_until": time(f.wait_until),
            "wait_signal": f.wait_signal,
            "usage_tokens": f.usage.get("tokens", 0),
            "usage_api_calls": f.usage.get("api_calls", 0),
        }
        for execution, changes in transitions
        for f in changes.finished
    }
    return list(finished.values())


def _started_rows(transitions: list[Transition], time: Any) -> list[dict[str, Any]]:
    started = [
        {
            "execution_id": execution.id,
            "node_id": s.node_id,
            "node_type": s.node_type,
            "attempt": s.attempt,
            "status": StepStatus.RUNNING.value,
            "input": _json(s.input),
            "started_at": time(s.started_at),
            "step_index": s.index,
        }
        for execution, changes in transitions
        for s in changes.started
    ]
    started += [
        {
            "execution_id": execution.id,
            "node_id": node_id,
            "node_type": node_type,
            "attempt": 0,
            "status": StepStatus.SKIPPED.value,
            "input": None,
            "started_at": None,
            "step_index": None,
        }
        for execution, changes in transitions
        for node_id, node_type in changes.skipped
    ]
    return started


_CONSUME_SIGNAL = (
    update(signals).where(signals.c.id == bindparam("x_id")).values(consumed_by=bindparam("node"))
)


def _wake_if_already_signalled(
    conn: Connection, execution_id: str, names: list[str], now: datetime
) -> None:
    """Close the gap between the runner's last look and parking: a signal it waits for, or
    a cancel request, that landed meanwhile makes the execution due at once."""
    pending = (
        select(signals.c.id)
        .where(
            signals.c.execution_id == execution_id,
            signals.c.consumed_by.is_(None),
            signals.c.name.in_(names),
        )
        .exists()
    )
    conn.execute(
        update(executions)
        .where(executions.c.id == execution_id, or_(executions.c.cancel_requested, pending))
        .values(available_at=now)
    )


def _finished(
    conn: Connection,
    dialect: StoreDialect,
    execution: ClaimedExecution,
    changes: Changes,
    row: Any,
    now: datetime,
) -> controls.Finished:
    """The parent's signal, in the finishing transaction; returns what the statistics
    count."""
    status = ExecutionStatus(row.status)
    error = changes.error
    if status != changes.status:
        error = {"type": "cancelled", "message": "cancelled by request"}
        conn.execute(
            update(executions)
            .where(executions.c.id == execution.id)
            .values(error=error, result=None)
        )
        changes.events[-1] = ("execution.cancelled", {"status": "cancelled", "error": error})
    assert changes.finished_at is not None
    if row.parent_execution_id is not None:
        controls.notify_parent(
            conn, dialect, execution.id, status.value, None if error else changes.result, error, now
        )
    return (row, status, changes.finished_at)
