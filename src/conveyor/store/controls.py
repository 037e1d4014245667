"""Run controls that act without holding the lease: cancel, pause, resume, signal, and the
seeding of steps that lets retry and replay reuse outputs that were already committed."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.engine.interfaces import EventRecord
from conveyor.engine.state import TERMINAL, ExecutionStatus, StepStatus
from conveyor.errors import Conflict, NotFound
from conveyor.store.channels import EVENTS_CHANNEL, FINISHED_CHANNEL, WAKE_CHANNEL
from conveyor.store.database import StoreDialect
from conveyor.store.prepared import Call, prepared, run_together
from conveyor.store.tables import (
    UTCDateTime,
    events,
    executions,
    signals,
    steps,
    user_usage,
    workflows,
)

_TERMINAL = [s.value for s in TERMINAL]
__all__ = ["EVENTS_CHANNEL", "WAKE_CHANNEL"]


def _row(conn: Connection, workspace_id: str, execution_id: str) -> Any:
    """The execution, locked until the commit (on PostgreSQL; SQLite's write transaction
    holds the database): a control judged against a status that a worker's final write
    changes before the control commits would land after the end (a pause or signal event
    after ``execution.succeeded``), breaking "terminal is final" (G7)."""
    row = conn.execute(
        select(
            executions.c.id,
            executions.c.status,
            executions.c.workflow_id,
            executions.c.started_at,
            executions.c.workspace_id,
            executions.c.created_by,
            executions.c.usage_tokens,
            executions.c.usage_api_calls,
        )
        .where(executions.c.id == execution_id, executions.c.workspace_id == workspace_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"execution '{execution_id}' not found")
    return row


PENDING_EVENTS = "conveyor.pending_events"


def add_event(
    conn: Connection,
    dialect: StoreDialect,
    execution_id: str,
    workspace_id: str,
    kind: str,
    data: dict[str, Any],
    now: datetime,
) -> None:
    """Append an event to an execution nobody holds (its seq comes from the row itself).

    Like the runner's events, it is announced: NOTIFY on commit (other processes), and
    ``Store`` hands it to this process's listeners after the commit."""
    seq = conn.execute(
        update(executions)
        .where(executions.c.id == execution_id)
        .values(event_seq=executions.c.event_seq + 1)
        .returning(executions.c.event_seq)
    ).scalar_one()
    conn.execute(
        insert(events),
        {
            "execution_id": execution_id,
            "workspace_id": workspace_id,
            "seq": seq,
            "type": kind,
            "data": data,
            "created_at": now,
        },
    )
    dialect.notify(conn, EVENTS_CHANNEL, f"{workspace_id}:{execution_id}")
    record = EventRecord(execution_id, workspace_id, int(seq), kind, data, now)
    conn.info.setdefault(PENDING_EVENTS, []).append(record)


def control_message(execution_id: str, action: str) -> str:
    """What workers hear of a control: ``control:<id>:<cancel|pause|resume|signal>``."""
    return f"control:{execution_id}:{action}"


def cancel(
    conn: Connection, dialect: StoreDialect, workspace_id: str, execution_id: str, now: datetime
) -> str:
    """Cancel: at once when queued or waiting; a running one is flagged for its worker.

    Returns the status after the call (``running`` means the worker will finish the job).
    Cancelling twice, or cancelling a finished execution, changes nothing.
    """
    row = _row(conn, workspace_id, execution_id)
    if row.status in _TERMINAL:
        return str(row.status)
    error = {"type": "cancelled", "message": "cancelled by request"}
    done = conn.execute(
        update(executions)
        .where(executions.c.id == execution_id, executions.c.status.in_(["queued", "waiting"]))
        .values(
            status="cancelled",
            cancel_requested=True,
            finished_at=now,
            error=error,
            lease_owner=None,
            lease_expires_at=None,
        )
    ).rowcount
    if done:
        conn.execute(
            update(steps)
            .where(
                steps.c.execution_id == execution_id,
                steps.c.status.in_([StepStatus.WAITING.value, StepStatus.RUNNING.value]),
            )
            .values(status=StepStatus.CANCELLED.value, finished_at=now, wait_until=None)
        )
        add_event(
            conn,
            dialect,
            execution_id,
            workspace_id,
            "execution.cancelled",
            {"status": "cancelled", "error": error},
            now,
        )
        finished = [(_row(conn, workspace_id, execution_id), ExecutionStatus.CANCELLED, now)]
        calls = count_finished(conn, finished) + announce_finished(conn, dialect, finished)
        run_together(conn, calls)
        notify_parent(conn, dialect, execution_id, "cancelled", None, error, now)
        return "cancelled"
    conn.execute(
        update(executions).where(executions.c.id == execution_id).values(cancel_requested=True)
    )
    dialect.notify(conn, WAKE_CHANNEL, control_message(execution_id, "cancel"))
    return "running"


def set_paused(
    conn: Connection,
    dialect: StoreDialect,
    workspace_id: str,
    execution_id: str,
    paused: bool,
    now: datetime,
) -> str:
    row = _row(conn, workspace_id, execution_id)
    if row.status in _TERMINAL:
        raise Conflict(
            f"execution {execution_id} is {row.status}; it cannot be "
            f"{'paused' if paused else 'resumed'}"
        )
    conn.execute(update(executions).where(executions.c.id == execution_id).values(paused=paused))
    add_event(
        conn,
        dialect,
        execution_id,
        workspace_id,
        "execution.paused" if paused else "execution.unpaused",
        {},
        now,
    )
    dialect.notify(
        conn, WAKE_CHANNEL, control_message(execution_id, "pause" if paused else "resume")
    )
    return str(row.status)


def signal(
    conn: Connection,
    dialect: StoreDialect,
    workspace_id: str,
    execution_id: str,
    name: str,
    data: Any,
    now: datetime,
) -> int:
    """Record a signal for an execution and wake it; return the signal id."""
    row = _row(conn, workspace_id, execution_id)
    if row.status in _TERMINAL:
        raise Conflict(f"execution {execution_id} is {row.status}; it takes no more signals")
    return deliver(conn, dialect, execution_id, workspace_id, name, data, now)


def deliver(
    conn: Connection,
    dialect: StoreDialect,
    execution_id: str,
    workspace_id: str,
    name: str,
    data: Any,
    now: datetime,
) -> int:
    signal_id = conn.execute(
        insert(signals).returning(signals.c.id),
        {"execution_id": execution_id, "name": name, "data": data, "created_at": now},
    ).scalar_one()
    conn.execute(
        update(executions)
        .where(executions.c.id == execution_id, executions.c.status == "waiting")
        .values(available_at=now)
    )
    add_event(conn, dialect, execution_id, workspace_id, "execution.signal", {"name": name}, now)
    dialect.notify(conn, WAKE_CHANNEL, control_message(execution_id, "signal"))
    return int(signal_id)


def notify_parent(
    conn: Connection,
    dialect: StoreDialect,
    execution_id: str,
    status: str,
    result: Any,
    error: Any,
    now: datetime,
) -> None:
    """A child execution finished: signal its parent with the outcome."""
    parent = conn.execute(
        select(executions.c.parent_execution_id, executions.c.workspace_id).where(
            executions.c.id == execution_id
        )
    ).first()
    if parent is None or parent.parent_execution_id is None:
        return
    parent_status = conn.execute(
        select(executions.c.status).where(executions.c.id == parent.parent_execution_id)
    ).scalar()
    if parent_status is None or parent_status in _TERMINAL:
        return
    deliver(
        conn,
        dialect,
        parent.parent_execution_id,
        parent.workspace_id,
        f"child:{execution_id}",
        {"execution_id": execution_id, "status": status, "result": result, "error": error},
        now,
    )


Finished = tuple[Any, ExecutionStatus, datetime]
"""(row, final status, finished_at); ``row`` carries the execution's workspace_id,
workflow_id, started_at, created_by, usage_tokens and usage_api_calls."""


_STATISTICS = (
    "executions_finished",
    "executions_succeeded",
    "executions_failed",
    "executions_cancelled",
    "executions_timed_out",
    "duration_total_ms",
)


def _bump_workflow() -> Any:
    w = workflows.c
    return (
        update(workflows)
        .where(w.id == bindparam("x_id"))
        .values(
            {
                getattr(w, k): getattr(w, k) + bindparam(f"d_{k}", type_=Integer())
                for k in _STATISTICS
            }
            | {w.last_executed_at: bindparam("last", type_=UTCDateTime())}
        )
    )


def announce_finished(
    conn: Connection, dialect: StoreDialect, finished: list[Finished]
) -> list[Call]:
    """Waiters (``store/waits.py``) hear of each finish at commit: ``<id>:<status>`` on
    FINISHED_CHANNEL. Returns the statements for the caller to run with its others."""
    payloads = [f"{row.id}:{status.value}" for row, status, _ in finished]
    return dialect.notify_calls(conn, FINISHED_CHANNEL, payloads)


def counted_duration_ms(started_at: datetime | None, finished_at: datetime) -> int:
    """What an execution adds to its workflow's ``duration_total_ms`` when it finishes (and
    what retention takes off again)."""
    if started_at is None:
        return 0
    return max(int((finished_at - started_at).total_seconds() * 1000), 0)


def count_finished(conn: Connection, finished: list[Finished]) -> list[Call]:
    """Per-workflow and per-user statistics, kept O(1) in the finishing transaction: one
    update per workflow and per user however many executions finish together, in sorted
    order so concurrent finishing transactions never deadlock on these rows. Returns the
    workflow updates for the caller to run (with its other writes, in one round trip)."""
    per_workflow: dict[str, dict[str, Any]] = {}
    per_user: dict[tuple[str, str], dict[str, Any]] = {}
    for row, status, finished_at in finished:
        duration_ms = counted_duration_ms(row.started_at, finished_at)
        w = per_workflow.setdefault(row.workflow_id, defaultdict(int))
        w["executions_finished"] += 1
        w[f"executions_{status.value}"] += 1
        w["duration_total_ms"] += duration_ms
        w["last"] = max(w.get("last") or finished_at, finished_at)
        if row.created_by is not None:
            u = per_user.setdefault((row.workspace_id, row.created_by), defaultdict(int))
            u["executions"] += 1
            u["tokens"] += row.usage_tokens
            u["api_calls"] += row.usage_api_calls
            u["last"] = max(u.get("last") or finished_at, finished_at)
    for key in sorted(per_user):
        _count_usage(conn, key, per_user[key])
    bump = prepared(conn, "controls.bump_workflow", _bump_workflow)
    return [
        (
            bump,
            {"x_id": workflow_id, "last": per_workflow[workflow_id]["last"]}
            | {f"d_{k}": per_workflow[workflow_id][k] for k in _STATISTICS},
        )
        for workflow_id in sorted(per_workflow)
    ]


def _count_usage(conn: Connection, key: tuple[str, str], deltas: dict[str, Any]) -> None:
    u = user_usage.c
    workspace_id, user_id = key
    bump = (
        update(user_usage)
        .where(u.workspace_id == workspace_id, u.user_id == user_id)
        .values(
            executions=u.executions + deltas["executions"],
            tokens=u.tokens + deltas["tokens"],
            api_calls=u.api_calls + deltas["api_calls"],
            last_executed_at=deltas["last"],
        )
    )
    if conn.execute(bump).rowcount:
        return
    try:
        with conn.begin_nested():
            conn.execute(
                insert(user_usage),
                {
                    "workspace_id": workspace_id,
                    "user_id": user_id,
                    "executions": deltas["executions"],
                    "tokens": deltas["tokens"],
                    "api_calls": deltas["api_calls"],
                    "last_executed_at": deltas["last"],
                },
            )
    except IntegrityError:
        conn.execute(bump)


def pending_signals(conn: Connection, execution_id: str) -> list[tuple[int, str, Any]]:
    rows = conn.execute(
        select(signals.c.id, signals.c.name, signals.c.data)
        .where(signals.c.execution_id == execution_id, signals.c.consumed_by.is_(None))
        .order_by(signals.c.id)
    ).all()
    return [(r.id, r.name, r.data) for r in rows]


def seed_steps(
    conn: Connection, source_id: str, target_id: str, node_ids: set[str], now: datetime
) -> int:
    """Copy the succeeded steps of ``node_ids`` from one execution to a new one, so the new
    execution reuses their outputs instead of running them again (retry and replay)."""
    rows = (
        conn.execute(
            select(steps).where(
                steps.c.execution_id == source_id,
                steps.c.status == StepStatus.SUCCEEDED.value,
                steps.c.node_id.in_(node_ids),
            )
        )
        .mappings()
        .all()
    )
    copies = []
    for r in rows:
        copy = {k: v for k, v in r.items() if k != "id"}
        copy.update(
            execution_id=target_id,
            attempt=1,
            logs=[
                {
                    "ts": now.isoformat(),
                    "level": "info",
                    "message": f"output reused from execution {source_id}",
                }
            ],
        )
        copies.append(copy)
    if copies:
        conn.execute(insert(steps), copies)
        conn.execute(
            update(executions)
            .where(executions.c.id == target_id)
            .values(steps_succeeded=len(copies))
        )
    return len(copies)
