"""The execution queue's writes: enqueue, and the lease-fenced transitions of the runner
(sync, on a Connection). Claiming lives in ``claims``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Integer,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from conveyor.engine.interfaces import (
    Changes,
    ClaimedExecution,
    EventRecord,
)

__all__ = ["EventRecord", "NewExecution"]
from conveyor.engine.state import TERMINAL, ExecutionStatus, StepStatus
from conveyor.errors import LeaseLost
from conveyor.store import controls
from conveyor.store.database import StoreDialect, new_id
from conveyor.store.tables import (
    events,
    executions,
    signals,
    steps,
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


def enqueue(conn: Connection, new: NewExecution, now: datetime) -> tuple[str, bool]:
    """Insert an execution and its ``queued`` event; return (id, created).

    With an idempotency key, a second enqueue returns the first execution (created False).
    """
    if new.idempotency_key is not None:
        existing = _by_key(conn, new.workflow_id, new.idempotency_key)
        if existing is not None:
            return existing, False
    execution_id = new_id()
    row = {
        "id": execution_id,
        "workspace_id": new.workspace_id,
        "workflow_id": new.workflow_id,
        "version_id": new.version_id,
        "status": ExecutionStatus.QUEUED.value,
        "trigger_type": new.trigger_type,
        "input": new.input,
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
        "parent_execution_id": new.parent_execution_id,
        "parent_node_id": new.parent_node_id,
        "retry_of": new.retry_of,
        "steps_total": new.steps_total,
        "event_seq": 1,
    }
    try:
        with conn.begin_nested():
            conn.execute(insert(executions), row)
    except IntegrityError:
        existing = _by_key(conn, new.workflow_id, new.idempotency_key)
        if existing is None:
            raise
        return existing, False
    conn.execute(
        insert(events),
        {
            "execution_id": execution_id,
            "workspace_id": new.workspace_id,
            "seq": 1,
            "type": "execution.queued",
            "data": {"trigger_type": new.trigger_type},
            "created_at": now,
        },
    )
    return execution_id, True


def _by_key(conn: Connection, workflow_id: str, key: str | None) -> str | None:
    return conn.execute(
        select(executions.c.id).where(
            executions.c.workflow_id == workflow_id, executions.c.idempotency_key == key
        )
    ).scalar()


_FENCED: dict[str, Any] = {}


def _fenced_update(dialect: StoreDialect) -> Any:
    if dialect.name not in _FENCED:
        _FENCED[dialect.name] = _build_fenced_update(dialect.now_plus_param("x_lease_seconds"))
    return _FENCED[dialect.name]


def _build_fenced_update(lease_sql: Any) -> Any:
    """The one statement every runner write starts with, built once so SQLAlchemy compiles it
    once: counters move by bound deltas, fields change only when a value is bound, and the
    WHERE clause is the lease fence."""
    c = executions.c
    keep = {
        name: func.coalesce(bindparam(name, type_=getattr(c, name).type), getattr(c, name))
        for name in ("started_at", "deadline_at", "finished_at", "available_at", "wait_reason")
    }
    final = bindparam("final", type_=Boolean())
    release = bindparam("release", type_=Boolean())
    return (
        update(executions)
        .where(
            c.id == bindparam("x_id"),
            c.lease_owner == bindparam("x_owner"),
            c.lease_number == bindparam("x_lease"),
            c.status.not_in(_TERMINAL),
        )
        .values(
            **{
                name: getattr(c, name) + bindparam(f"d_{name}", type_=Integer())
                for name in _COUNTERS
            },
            event_seq=c.event_seq + bindparam("d_events", type_=Integer()),
            # A cancel that lands between the last step and the final write still wins (G9).
            status=case(
                (and_(final, c.cancel_requested), "cancelled"),
                else_=func.coalesce(bindparam("status", type_=c.status.type), c.status),
            ),
            result=case((final, bindparam("result", type_=c.result.type)), else_=c.result),
            error=case((final, bindparam("error", type_=c.error.type)), else_=c.error),
            lease_owner=case((release, None), else_=c.lease_owner),
            # Every write renews the lease: a runner that is making progress never loses its
            # execution to heartbeats queued behind other writers.
            lease_expires_at=case((release, None), else_=lease_sql),
            **keep,
        )
        .returning(
            c.event_seq,
            c.workflow_id,
            c.workspace_id,
            c.started_at,
            c.status,
            c.parent_execution_id,
            c.created_by,
            c.usage_tokens,
            c.usage_api_calls,
        )
    )


Transition = tuple[ClaimedExecution, Changes]


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
    """Write the transitions of many executions in one transaction (group commit).

    Each one is fenced by its own lease: one whose lease is gone gets ``LeaseLost`` and
    writes nothing, the others go on. Rows of a kind are written in one statement for the
    whole batch; rows other writers may also lock (a parent, the statistics) come last."""
    statement = _fenced_update(dialect)
    outcomes: list[list[EventRecord] | LeaseLost] = []
    held: list[tuple[ClaimedExecution, Changes, Any]] = []
    for execution, changes in transitions:
        row = conn.execute(statement, _fence_params(execution, changes)).first()
        if row is None:
            outcomes.append(LeaseLost(execution.id))
            continue
        held.append((execution, changes, row))
        outcomes.append([])
    if not held:
        return outcomes
    _write_steps(conn, held)
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
    records: list[EventRecord] = []
    for outcome, (execution, changes, row) in zip(
        (o for o in outcomes if not isinstance(o, LeaseLost)), held, strict=True
    ):
        first_seq = row.event_seq - len(changes.events) + 1
        outcome.extend(
            EventRecord(execution.id, execution.workspace_id, first_seq + i, kind, data, now)
            for i, (kind, data) in enumerate(changes.events)
        )
        records.extend(outcome)
    if records:
        conn.execute(insert(events), [_event_row(r, now) for r in records])
        dialect.notify_many(
            conn,
            controls.EVENTS_CHANNEL,
            [f"{e.workspace_id}:{e.id}" for e, changes, _ in held if changes.events],
        )
    if finished:
        controls.count_finished(conn, finished)
    return outcomes


def _fence_params(execution: ClaimedExecution, changes: Changes) -> dict[str, Any]:
    final = changes.status is not None and changes.status.terminal
    params: dict[str, Any] = {f"d_{name}": changes.counters.get(name, 0) for name in _COUNTERS}
    params.update(
        x_id=execution.id,
        x_owner=execution.lease.owner,
        x_lease=execution.lease.number,
        x_lease_seconds=execution.lease_seconds,
        d_events=len(changes.events),
        final=final,
        release=changes.release,
        status=changes.status.value if changes.status is not None else None,
        result=changes.result if final else None,
        error=changes.error if final else None,
        started_at=changes.started_at,
        deadline_at=changes.deadline_at,
        finished_at=changes.finished_at,
        available_at=changes.available_at,
        wait_reason=changes.wait_reason,
    )
    return params


def _event_row(r: EventRecord, now: datetime) -> dict[str, Any]:
    return {
        "execution_id": r.execution_id,
        "workspace_id": r.workspace_id,
        "seq": r.seq,
        "type": r.type,
        "data": r.data,
        "created_at": now,
    }


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


_FINISH_STEP = (
    update(steps)
    .where(
        steps.c.execution_id == bindparam("x_id"),
        steps.c.node_id == bindparam("x_node"),
        steps.c.attempt == bindparam("x_attempt"),
    )
    .values(
        status=bindparam("status"),
        output=bindparam("output"),
        error=bindparam("error"),
        logs=bindparam("logs"),
        branch=bindparam("branch"),
        continued=bindparam("continued"),
        finished_at=bindparam("finished_at"),
        wait_until=bindparam("wait_until"),
        wait_signal=bindparam("wait_signal"),
        usage_tokens=bindparam("usage_tokens"),
        usage_api_calls=bindparam("usage_api_calls"),
    )
)


def _write_steps(conn: Connection, held: list[tuple[ClaimedExecution, Changes, Any]]) -> None:
    finished = [
        {
            "x_id": execution.id,
            "x_node": f.node_id,
            "x_attempt": f.attempt,
            "status": f.status.value,
            "output": f.output,
            "error": f.error,
            "logs": f.logs,
            "branch": f.branch,
            "continued": f.continued,
            "finished_at": f.finished_at,
            "wait_until": f.wait_until,
            "wait_signal": f.wait_signal,
            "usage_tokens": f.usage.get("tokens", 0),
            "usage_api_calls": f.usage.get("api_calls", 0),
        }
        for execution, changes, _ in held
        for f in changes.finished
    ]
    if finished:
        conn.execute(_FINISH_STEP, finished)
    rows = [
        {
            "execution_id": execution.id,
            "node_id": s.node_id,
            "node_type": s.node_type,
            "attempt": s.attempt,
            "status": StepStatus.RUNNING.value,
            "input": s.input,
            "started_at": s.started_at,
        }
        for execution, changes, _ in held
        for s in changes.started
    ]
    rows += [
        {
            "execution_id": execution.id,
            "node_id": node_id,
            "node_type": node_type,
            "attempt": 0,
            "status": StepStatus.SKIPPED.value,
            "input": None,
            "started_at": None,
        }
        for execution, changes, _ in held
        for node_id, node_type in changes.skipped
    ]
    if rows:
        conn.execute(insert(steps), rows)
