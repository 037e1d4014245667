"""Claiming executions under leases: claim (with flow control), load what the runner needs to
resume, heartbeats, release, and the control state workers poll (sync, on a Connection)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select, update

from conveyor.engine.interfaces import ClaimedExecution, Lease, Signal, StepRecord
from conveyor.engine.state import ExecutionStatus, StepStatus
from conveyor.store import flow
from conveyor.store.database import StoreDialect
from conveyor.store.tables import executions, signals, steps, workflow_versions, workflows

_CANDIDATE = (
    executions.c.id,
    executions.c.status,
    executions.c.workflow_id,
    executions.c.started_at,
    executions.c.concurrency_key,
    executions.c.key_limit,
    executions.c.workflow_limit,
    executions.c.rate_limit,
    executions.c.rate_period_seconds,
)


def _running_count(column: Any) -> Any:
    """Running executions sharing ``column`` with the candidate row (a correlated count)."""
    other = executions.alias("other")
    return (
        select(func.count())
        .where(getattr(other.c, column.name) == column, other.c.status == "running")
        .scalar_subquery()
    )


def claim(
    conn: Connection,
    dialect: StoreDialect,
    *,
    owner: str,
    lease_seconds: float,
    limit: int,
    now: datetime,
    execution_id: str | None = None,
) -> list[ClaimedExecution]:
    """Take up to ``limit`` ready executions (or the one given) under a new lease each.

    Ready: queued or waiting and due (by the worker's clock), not paused, or running with a
    lease the database clock says has expired (a recovery, counted in ``recoveries``).
    Priority first, then age. Concurrency limits are pre-filtered in SQL and then checked
    exactly under per-key locks (see :func:`conveyor.store.flow.admit`), so they hold across
    processes.
    """
    due = and_(executions.c.status.in_(["queued", "waiting"]), executions.c.available_at <= now)
    expired = and_(executions.c.status == "running", executions.c.lease_expires_at < dialect.now())
    query = (
        select(*_CANDIDATE)
        .where(or_(due, expired), executions.c.paused.is_(False))
        .where(
            or_(
                executions.c.key_limit.is_(None),
                executions.c.status == "running",  # a recovery keeps the slot it holds
                _running_count(executions.c.concurrency_key) < executions.c.key_limit,
            )
        )
        .where(
            or_(
                executions.c.workflow_limit.is_(None),
                executions.c.status == "running",
                _running_count(executions.c.workflow_id) < executions.c.workflow_limit,
            )
        )
        .order_by(executions.c.priority.desc(), executions.c.available_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=executions)
    )
    if execution_id is not None:
        query = query.where(executions.c.id == execution_id)
    candidates = conn.execute(query).mappings().all()
    chosen = flow.admit(conn, dialect, [dict(c) for c in candidates], now)
    if not chosen:
        return []
    ids = [c["id"] for c in chosen]
    conn.execute(
        update(executions)
        .where(executions.c.id.in_(ids))
        .values(
            status="running",
            lease_owner=owner,
            lease_number=executions.c.lease_number + 1,
            lease_expires_at=dialect.now_plus(lease_seconds),
            recoveries=executions.c.recoveries
            + case((executions.c.status == "running", 1), else_=0),
            started_at=func.coalesce(executions.c.started_at, now),
            wait_reason=None,
        )
    )
    first = {c["id"] for c in chosen if c["started_at"] is None}
    claimed = load_claimed(conn, ids, owner, first)
    recovered = {c["id"] for c in chosen if c["status"] == "running"}
    for execution in claimed:
        execution.lease_seconds = lease_seconds
        execution.recovered = execution.id in recovered
    return claimed


_STEP_STATE = (
    steps.c.execution_id,
    steps.c.node_id,
    steps.c.attempt,
    steps.c.status,
    steps.c.output,
    steps.c.error,
    steps.c.branch,
    steps.c.continued,
    steps.c.started_at,
    steps.c.finished_at,
    steps.c.wait_until,
    steps.c.wait_signal,
)


def load_claimed(
    conn: Connection, ids: list[str], owner: str, first: set[str] | None = None
) -> list[ClaimedExecution]:
    """Everything the runner needs to resume: the pinned definition, the latest attempt of
    every node, and the signals not yet consumed."""
    rows = (
        conn.execute(
            select(
                executions,
                workflow_versions.c.definition,
                workflow_versions.c.version,
                workflows.c.name.label("workflow_name"),
            )
            .join(workflow_versions, workflow_versions.c.id == executions.c.version_id)
            .join(workflows, workflows.c.id == executions.c.workflow_id)
            .where(executions.c.id.in_(ids), executions.c.lease_owner == owner)
        )
        .mappings()
        .all()
    )
    latest: dict[str, dict[str, StepRecord]] = {r["id"]: {} for r in rows}
    for s in conn.execute(
        select(*_STEP_STATE).where(steps.c.execution_id.in_(ids)).order_by(steps.c.attempt)
    ).mappings():
        latest[s["execution_id"]][s["node_id"]] = StepRecord(
            node_id=s["node_id"],
            attempt=s["attempt"],
            status=StepStatus(s["status"]),
            output=s["output"],
            error=s["error"],
            branch=s["branch"],
            continued=s["continued"],
            started_at=s["started_at"],
            finished_at=s["finished_at"],
            wait_until=s["wait_until"],
            wait_signal=s["wait_signal"],
        )
    pending: dict[str, list[Signal]] = {r["id"]: [] for r in rows}
    for g in conn.execute(
        select(signals.c.id, signals.c.execution_id, signals.c.name, signals.c.data)
        .where(signals.c.execution_id.in_(ids), signals.c.consumed_by.is_(None))
        .order_by(signals.c.id)
    ):
        pending[g.execution_id].append(Signal(g.id, g.name, g.data))
    return [
        ClaimedExecution(
            id=r["id"],
            workspace_id=r["workspace_id"],
            workflow_id=r["workflow_id"],
            workflow_name=r["workflow_name"],
            version=r["version"],
            definition=r["definition"],
            input=r["input"],
            status=ExecutionStatus(r["status"]),
            trigger_type=r["trigger_type"],
            lease=Lease(owner, r["lease_number"]),
            created_at=r["created_at"],
            started_at=r["started_at"],
            deadline_at=r["deadline_at"],
            cancel_requested=r["cancel_requested"],
            recoveries=r["recoveries"],
            steps=latest[r["id"]],
            first_claim=r["id"] in (first or set()),
            signals=pending[r["id"]],
            paused=r["paused"],
        )
        for r in rows
    ]


def heartbeat(
    conn: Connection, dialect: StoreDialect, owner: str, lease_seconds: float
) -> list[tuple[str, bool]]:
    """Renew every lease ``owner`` holds in one statement; return (id, cancel_requested)."""
    rows = conn.execute(
        update(executions)
        .where(executions.c.lease_owner == owner, executions.c.status == "running")
        .values(lease_expires_at=dialect.now_plus(lease_seconds))
        .returning(executions.c.id, executions.c.cancel_requested)
    ).all()
    return [(r.id, r.cancel_requested) for r in rows]


def release(conn: Connection, execution: ClaimedExecution) -> bool:
    """Give an execution back to the queue at once (graceful shutdown)."""
    result = conn.execute(
        update(executions)
        .where(
            executions.c.id == execution.id,
            executions.c.lease_owner == execution.lease.owner,
            executions.c.lease_number == execution.lease.number,
            executions.c.status == "running",
        )
        .values(lease_owner=None, lease_expires_at=None, status="queued")
    )
    return result.rowcount == 1


def control_state(conn: Connection, owner: str) -> list[tuple[str, bool, bool, int | None]]:
    """For each execution ``owner`` runs: (id, cancel requested, paused, newest pending
    signal id). One cheap read that lets a worker notice controls without NOTIFY."""
    newest = (
        select(func.max(signals.c.id))
        .where(signals.c.execution_id == executions.c.id, signals.c.consumed_by.is_(None))
        .scalar_subquery()
    )
    rows = conn.execute(
        select(executions.c.id, executions.c.cancel_requested, executions.c.paused, newest).where(
            executions.c.lease_owner == owner, executions.c.status == "running"
        )
    ).all()
    return [(r[0], bool(r[1]), bool(r[2]), r[3]) for r in rows]


def next_due(conn: Connection) -> datetime | None:
    """When the next waiting execution becomes due (lets an idle worker sleep until then)."""
    value: datetime | None = conn.execute(
        select(func.min(executions.c.available_at)).where(
            executions.c.status == "waiting", executions.c.paused.is_(False)
        )
    ).scalar()
    return value
